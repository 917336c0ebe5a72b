"""File helpers every stage uses: atomic writes, JSONL read/append, SHA-256.

Files are written atomically (temporary name, fsync, rename) so an interrupted run never leaves a file that
looks complete but is not; appended log rows are flushed and fsynced one by one so a killed process loses none.
Every writer passes what it writes through `redaction.redact_value`, so a key pasted anywhere never reaches a file.
A path fault (a symlink loop, a dangling symlink, a read-only folder, a full disk) is a `PathFaultError`: one line
naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .config.base import UserError
from .redaction import redact, redact_value


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


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(redact_value(row, content=True), ensure_ascii=False) + "\n")
    return Path(path)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row and flush it to disk (logs that must survive a killed process)."""
    with path_faults(), open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(redact_value(row, content=True), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class CorruptFileError(UserError, ValueError):
    """A file this package wrote was changed or cut short (e.g. a torn line after a full disk)."""


def read_jsonl_plain(path: str | Path) -> list[dict]:
    """Read a JSONL file this package wrote (metrics, generations); blank lines are ignored. A line that is not
    JSON is a CorruptFileError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CorruptFileError(
                    f"{path}:{n}: not a JSON line ({e.msg}); this file is written by lima_repro: rerun the stage "
                    f"that writes it, or delete that line if the rest is wanted"
                ) from None
    return rows


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
