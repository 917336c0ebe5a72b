"""File helpers every stage uses: atomic writes, JSONL read/append, SHA-256.

Files are written atomically (temporary name, fsync, rename) so an interrupted run never leaves a file that
looks complete but is not; appended log rows are flushed and fsynced one by one so a killed process loses none.
Every writer passes what it writes through `redaction.redact_value` (a CSV: `redact_table`), so a key pasted anywhere
never reaches a file. A path fault (a symlink loop, a dangling symlink, a read-only folder, a full disk) is a
`PathFaultError`: one line naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .config.base import UserError
from .redaction import environment_secrets, redact, redact_table, redact_value


class PathFaultError(UserError, OSError):
    """A folder or file of a run cannot be made or written for a reason outside the package (a symlink loop, a
    dangling symlink, a read-only folder, a full disk); the message names the path and the fix."""


_READ_ONLY, _FULL = (errno.EACCES, errno.EPERM, errno.EROFS), (errno.ENOSPC, errno.EDQUOT)


def path_fault(e: OSError) -> PathFaultError | None:
    """The one-line error for an OSError that is a fault of the file system the user gave, or None (a bug)."""
    if isinstance(e, PathFaultError) or not e.filename:
        return e if isinstance(e, PathFaultError) else None
    path = Path(e.filename)
    for p in (path, *path.parents):
        if p.is_symlink():
            try:
                p.stat()
            except OSError as err:
                what = (
                    "loops back on itself" if err.errno == errno.ELOOP else f"points to {os.readlink(p)}, which is gone"
                )
                return PathFaultError(
                    f"{p}: this symlink {what}; remove it or point it at a folder, or give another run directory "
                    "(--run-dir, output_root)"
                )
    if e.errno == errno.ELOOP:
        return PathFaultError(f"{path}: a symlink loop on this path; remove the loop or give another run directory")
    if e.errno in _READ_ONLY:
        return PathFaultError(
            f"{path}: not writable ({e.strerror}); give a writable run directory (--run-dir, output_root) or make "
            "this folder writable"
        )
    if e.errno in _FULL:
        return PathFaultError(
            f"{path}: no space left on the device ({e.strerror}); free space or give a run directory on another disk"
        )
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and not path.is_dir():
        return PathFaultError(f"{path}: a file where a folder is needed; move it away or give another run directory")
    return None


# how a full disk reads when a library that does not raise OSError hits it (safetensors' Rust writer: "IoError(Os {
# code: 28, kind: StorageFull, message: \"No space left on device\" })")
_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull")


@contextlib.contextmanager
def folder_written_whole(tmp: Path, kept: str) -> Iterator[None]:
    """Write a folder (a checkpoint, a resumable state) under its temporary name `tmp`: if the block fails, `tmp`
    is removed so no half-written folder is left; a full disk, whatever library met it, is a PathFaultError naming
    the folder, what is `kept` and the fix; any other error is raised as it is."""
    try:
        with path_faults():
            yield
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, PathFaultError) and any(t in str(e) for t in _FULL_TEXT):
            raise PathFaultError(
                f"{tmp}: no space left on the device while writing it; {kept} kept; free space (or give a run "
                "directory on another disk) and rerun the same command to continue"
            ) from e
        raise


@contextlib.contextmanager
def path_faults() -> Iterator[None]:
    """Raise a file-system fault inside the block as its one-line PathFaultError (`path_fault`); others as they are."""
    try:
        yield
    except OSError as e:
        fault = path_fault(e)
        if fault is None or fault is e:
            raise
        raise fault from e


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync it and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with path_faults():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        text = json.dumps(redact_value(obj), indent=2, ensure_ascii=False, default=lambda o: redact(str(o)))
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def write_csv(path: str | Path, frame) -> Path:
    """A pandas DataFrame as CSV (no index), atomically, redacted as `write_json` redacts (`redact_table`)."""
    with atomic_path(path) as tmp:
        redact_table(frame).to_csv(tmp, index=False)
    return Path(path)


def read_json(path: str | Path, fix: str | None = None, keys: dict[str, type | tuple] | None = None) -> Any:
    """A whole-file JSON this package wrote (or `fix` names who did), checked as `loads_checked`; with `keys`, an
    object holding each key with its type. A bad file is a CorruptFileError naming the file and the fix."""
    fix = fix or FIX_OURS
    if Path(path).stat().st_size > MAX_JSON_BYTES:
        raise CorruptFileError(path, None, f"larger than {MAX_JSON_BYTES >> 20} MiB, not a file a stage writes", fix)
    obj = loads_checked(
        _decode(Path(path).read_bytes(), path, None, fix, CorruptFileError), path, None, fix, CorruptFileError
    )
    if keys is not None:
        if not isinstance(obj, dict):
            raise CorruptFileError(path, None, f"expected a JSON object, got {type(obj).__name__}", fix)
        require_fields(obj, keys, path, None, fix, CorruptFileError)
    return obj


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    secrets = environment_secrets()  # once per file, not once per row (curate writes thousands)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(redact_value(row, content=True, secrets=secrets), ensure_ascii=False) + "\n")
    return Path(path)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row and flush it to disk (logs that must survive a killed process). A write that fails half-way
    (a full disk) is rolled back before the error propagates, so the next append never lands on a torn line."""
    data = (json.dumps(redact_value(row, content=True), ensure_ascii=False) + "\n").encode("utf-8")
    with path_faults(), open(path, "ab") as fh:
        size = fh.seek(0, 2)
        try:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):  # best effort; repair_tail moves whatever is left aside
                fh.truncate(size)
            raise


class DataError(UserError, ValueError):
    """Bad input data; str() names the file, the line (or item) and how to fix it."""

    def __init__(self, path: str | Path, where: str | int | None, reason: str, fix: str):
        loc = f"{path}:{where}" if where is not None else str(path)
        super().__init__(f"{loc}: {reason}. Fix: {fix}")
        self.path, self.where, self.reason, self.fix = str(path), where, reason, fix


class CorruptFileError(DataError):
    """A file this package wrote was changed or cut short (e.g. a torn line after a full disk)."""


# ours: the largest line a stage writes is one generation row (a few KB) or one conversation (MAX_EXAMPLE_CHARS,
# 500,000 characters, ~2 MB as escaped JSON); a longer line is not a row, and reading it whole would cost its size
MAX_LINE_BYTES = 16 << 20
MAX_INT_DIGITS = 30  # ours: no count, id or seed has more; Python refuses int() of 4,300+ digits (a ValueError)
MAX_JSON_BYTES = 256 << 20  # ours: a whole-file JSON (an array of rows, results.json) read at once
FIX_OURS = "rerun the stage that writes this file (lima_repro wrote it; it was cut short or edited by hand)"
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongInt(len(text.lstrip("-")))
    return int(text)


class _LongInt(Exception):
    def __init__(self, digits: int):
        self.digits = digits


def _lone_surrogate(obj: Any) -> bool:
    """True when a string (or key) in `obj` holds half of a UTF-16 surrogate pair, which no UTF-8 can encode."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def loads_checked(text: str, path: str | Path, where: str | int | None, fix: str, error: type = DataError) -> Any:
    """`json.loads` that raises `error` (file, position, what, fix) instead of a JSONDecodeError, RecursionError or
    int() ValueError, and refuses integers over MAX_INT_DIGITS digits and lone surrogates (`"\\ud800"`)."""
    try:
        obj = json.loads(text, parse_int=_short_int)
    except json.JSONDecodeError as e:
        at = where if where is not None else f"line {e.lineno}"
        raise error(path, at, f"malformed JSON ({e.msg}, column {e.colno})", fix) from None
    except RecursionError:
        raise error(path, where, "JSON nested too deeply to read", fix) from None
    except _LongInt as e:
        raise error(path, where, f"an integer of {e.digits:,} digits (more than {MAX_INT_DIGITS})", fix) from None
    if _SURROGATE.search(text) and _lone_surrogate(obj):
        raise error(path, where, "a lone UTF-16 surrogate escape (e.g. \\ud800), which is not text", fix)
    return obj


def _decode(raw: bytes, path: str | Path, where: str | int | None, fix: str, error: type) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            path, where, f"not valid UTF-8 ({e.reason} at byte {e.start})", f"re-save the file as UTF-8; {fix}"
        ) from None


def iter_jsonl(path: str | Path, fix: str, *, error: type = DataError) -> Iterator[tuple[int, dict]]:
    """Stream (line number, object) of a JSONL file, checked line by line: a line over MAX_LINE_BYTES, bytes that
    are not UTF-8, bad JSON (`loads_checked`) or a value that is not an object raises `error` naming the file, the
    line and `fix`. Blank lines are skipped. Memory: one line at a time."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:  # a line of exactly the cap ends in its newline
                raise error(path, n, f"a line longer than {MAX_LINE_BYTES >> 20} MiB", f"split or shorten it; {fix}")
            if not raw.strip():
                continue
            obj = loads_checked(_decode(raw, path, n, fix, error), path, n, fix, error)
            if not isinstance(obj, dict):
                raise error(path, n, f"expected a JSON object, got {type(obj).__name__}", fix)
            yield n, obj


def read_jsonl_plain(path: str | Path) -> list[dict]:
    """Read a JSONL file this package wrote (metrics, generations); blank lines are ignored. A bad line
    (`iter_jsonl`) is a CorruptFileError naming the file and line."""
    return [obj for _, obj in iter_jsonl(path, FIX_OURS, error=CorruptFileError)]


def require_fields(obj: dict, fields: dict[str, type | tuple], path, where, fix: str, error: type = DataError) -> None:
    """Each of `fields` is in `obj` with its type (`MESSAGES`: a list of {role, content} strings)."""
    for key, kind in fields.items():
        value = obj.get(key)
        ok = _is_messages(value) if kind is MESSAGES else isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            what = "missing" if key not in obj else f"a {type(value).__name__}"
            want = "a list of {role, content} strings" if kind is MESSAGES else _type_name(kind)
            raise error(path, where, f"`{key}` is {what}, expected {want}", fix)


MESSAGES = object()  # a `require_fields` type: a list of {"role": str, "content": str}


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def _type_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "dict": "an object", "list": "a list"}.get(k.__name__, k.__name__) for k in kinds
    )


def repair_tail(path: str | Path, what: str) -> None:
    """Before appending to a log: a complete last line without its newline gets one; a last line cut short (a full
    disk, a kill mid-write) is moved to `<file>.torn` (kept, never lost) with a warning, so the next row starts on a
    line of its own. Reads only the tail."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 1))
        if size == 0 or fh.read(1) == b"\n":
            return
        cut = size
        while cut > 0:  # back to the last newline, a block at a time
            start = max(0, cut - (1 << 16))
            fh.seek(start)
            i = fh.read(cut - start).rfind(b"\n")
            cut = start + i + 1 if i >= 0 else start
            if i >= 0:
                break
        fh.seek(cut)
        tail = fh.read()
        try:
            complete = isinstance(json.loads(tail.decode("utf-8")), dict)
        except (ValueError, RecursionError):
            complete = False
        if complete:
            fh.seek(0, 2)
            fh.write(b"\n")
            return
        torn = path.with_name(path.name + ".torn")
        with open(torn, "ab") as out:
            out.write(tail + b"\n")
            out.flush()
            os.fsync(out.fileno())
        fh.truncate(cut)
        os.fsync(fh.fileno())
    warnings.warn(
        f"{path}: moved {what} cut short ({len(tail)} bytes, e.g. disk full) to {torn.name}; the rest is read",
        stacklevel=2,
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
