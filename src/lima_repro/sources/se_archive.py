"""A Stack Exchange site's .7z archive: one table (`Posts.xml`, `Comments.xml`) extracted for `se_dump.open_table`.

Hostile or damaged archives fail with a DataError, never by writing or reading elsewhere: the member is written
into our own scratch file (never to a path named by the archive, never through a link), and no bigger than
MAX_RATIO times the archive (a "7z bomb" stops while it is written, before it fills the disk).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from . import DataError

_FIX_7Z = (
    "re-download the site's archive (`7z t <site>.7z` checks it), or extract it and point the config at the folder"
)
# ours: a dump's XML compresses about 5x in its .7z; a table over 100x its archive is a decompression bomb
MAX_RATIO, MIN_TABLE_CAP = 100, 256 << 20
SCRATCH_PREFIX = "lima-7z-"  # + "<pid>-": a folder whose process is gone is removed by the next archive read


def _remove_stale_scratch() -> None:
    """Remove scratch folders of archive reads whose process is gone (killed before it could clean up)."""
    for d in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = d.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not (pid.isascii() and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:  # alive under another user, or cannot tell: leave it
            pass


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or bool(re.match(r"^[A-Za-z]:", name))


class _CappedTable:
    """py7zr's writer factory and writer in one (duck-typed `py7zr.io.WriterFactory` / `Py7zIO`): the one table
    goes to our own scratch file, whatever the member is called, and may not grow past `cap` bytes while written."""

    def __init__(self, target: Path, cap: int, archive: Path):
        self.target, self.cap, self.archive, self.fh, self.written = target, cap, archive, None, 0

    def create(self, filename: str) -> _CappedTable:
        self.fh = open(self.target, "wb")  # noqa: SIM115 (closed by py7zr's close(), or archive_table's finally)
        return self

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > self.cap:
            raise DataError(
                self.archive,
                None,
                f"the table decompresses to more than {self.cap >> 20} MiB, over {MAX_RATIO}x the archive's size "
                "(a dump compresses about 5x; this looks like a decompression bomb)",
                _FIX_7Z,
            )
        return self.fh.write(data)

    def read(self, size=None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def flush(self) -> None:
        self.fh.flush()

    def size(self) -> int:
        return self.written

    def close(self) -> None:
        self.fh.close()


@contextlib.contextmanager
def archive_table(path: Path, table: str, config_key: str) -> Iterator[IO[bytes]]:
    """One table of a site's .7z, extracted alone into our own scratch file (never a path named by the archive),
    capped at MAX_RATIO times the archive's size (at least MIN_TABLE_CAP) while it is written, and removed on exit.
    The extracted copy is unlinked as soon as it is open (the handle keeps it readable), so a killed process leaves
    nothing behind from then on; a kill during extraction leaves a folder the next read removes
    (`_remove_stale_scratch`)."""
    try:
        import py7zr
    except ImportError as e:
        raise DataError(
            path,
            None,
            "reading .7z archives needs py7zr",
            f"`pip install py7zr`, or extract the archive and point {config_key} at the folder",
        ) from e
    _remove_stale_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as tmp:
        target = Path(tmp) / table
        factory = _CappedTable(target, max(MIN_TABLE_CAP, MAX_RATIO * path.stat().st_size), path)
        try:
            with py7zr.SevenZipFile(path) as z:
                members = [
                    f for f in z.files if f.filename.replace("\\", "/").rsplit("/", 1)[-1].lower() == table.lower()
                ]
                if not members:
                    raise DataError(path, None, f"archive holds no {table}", "use the site's full dump archive")
                name = members[0].filename
                if _unsafe_member(name):
                    raise DataError(
                        path,
                        f"member {name!r}",
                        "the member's path is absolute or climbs out with '..' (a hostile or broken archive)",
                        _FIX_7Z,
                    )
                if members[0].is_symlink or members[0].is_directory:
                    raise DataError(
                        path, f"member {name!r}", f"{table} in the archive is not one plain file (a link?)", _FIX_7Z
                    )
                z.extract(targets=[name], factory=factory)
        except DataError:
            raise
        except Exception as e:  # py7zr and its codecs raise many types (Bad7zFile, LZMAError, EOFError, ...)
            raise DataError(path, None, f"cannot read the .7z archive ({type(e).__name__}: {e})", _FIX_7Z) from e
        finally:
            if factory.fh is not None:
                factory.fh.close()
        if factory.fh is None:
            raise DataError(
                path, f"member {name!r}", f"{table} in the archive holds no data py7zr could extract", _FIX_7Z
            )
        with open(target, "rb") as fh:
            with contextlib.suppress(OSError):  # POSIX: the open handle keeps the data; elsewhere cleanup at exit
                target.unlink()
            yield fh
