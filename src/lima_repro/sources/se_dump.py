"""Stack Exchange data dumps: one reader for both Stack Exchange sources (LIMA sec. 1, docs/paper.md sec. 1).

A site's tables (`Posts.xml`, `Comments.xml`; docs/formats.md sec. 1) are opened from the site's folder, the file
itself, or the site's .7z archive (`open_table`). `iter_rows` streams a table with
`xml.etree.ElementTree.iterparse`, dropping every element once it is closed, so memory stays flat whatever the file size
(benchmarks/curate_stream.py measures it). `question_pool` keeps only a bounded pool of a site's highest-scoring
questions (a min-heap of `cap`) with each one's current top answer; `site_name` names the site from its path.

Hostile or damaged dumps fail with a DataError, never by reading elsewhere or hanging (archives: `se_archive.py`):
a row longer than MAX_ROW_BYTES, or a tag or text as long, stops the parse (expat re-scans an unfinished tag
whenever more bytes arrive, so one 50 MB attribute would take hours).
"""

from __future__ import annotations

import contextlib
import heapq
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from . import DataError, StepLog, require_file
from .se_archive import archive_table
from .se_sites import ALIASES

FABRICATED_IDS = {"1000000001", "1000000010"}  # docs/formats.md sec. 1: planted fake posts in recent dumps
_FIX_XML = "re-download or re-extract the dump (`7z t <site>.7z` checks an archive); a cut-off copy cannot be read"
# ours: a dump puts one <row> per line and a post is at most 30,000 characters of Markdown (a few hundred KB as
# escaped HTML), so a longer line is not a real row; parsing up to 4 MiB of one tag takes ~0.25 s
MAX_ROW_BYTES = 4 << 20


def site_name(path: str | Path) -> str:
    """The site's name from its dump's path: `math.stackexchange.com.7z` / `askubuntu.com` / `mathoverflow.net` /
    `stackoverflow.com-Posts.7z` / `math.stackexchange.com/Posts.xml` -> `math` / `askubuntu` / `mathoverflow` /
    `stackoverflow` / `math` (a table file is named after its folder; old domains by `se_sites.ALIASES`)."""
    path = Path(path)
    name = (path.parent.name if path.suffix.lower() == ".xml" else path.name).lower()
    name = re.sub(r"\.7z$", "", name)
    name = re.sub(r"-(posts|comments|users|tags|votes|badges|posthistory|postlinks)$", "", name)
    name = re.sub(r"\.stackexchange\.com$|\.com$|\.net$", "", name)
    return ALIASES.get(name, name)


def find_table(folder: Path, table: str) -> Path | None:
    """`table` (e.g. "Posts.xml") inside a site folder; some dumps use lowercase file names."""
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == table.lower()), None)


@contextlib.contextmanager
def open_table(path: Path, table: str, config_key: str) -> Iterator[tuple[IO[bytes], Path]]:
    """Open one table of a site's dump (`Posts.xml`, `Comments.xml`) from the site's folder, the file itself,
    or the site's .7z archive (needs py7zr; the one table is extracted to a temporary folder)."""
    require_file(path, "Stack Exchange dump", config_key)
    if path.is_dir():
        found = find_table(path, table)
        if found is None:
            raise DataError(
                path,
                None,
                f"no {table} in this folder",
                "extract the site's full .7z archive here (it holds Posts.xml and Comments.xml)",
            )
        require_file(found, table, config_key)
        with open(found, "rb") as fh:
            yield fh, found
    elif path.suffix.lower() == ".7z":
        with archive_table(path, table, config_key) as fh:
            yield fh, path
    else:
        with open(path, "rb") as fh:
            yield fh, path


def keep_top(heap: list, cands: dict, key: tuple, cap: int) -> bool:
    """Keep the `cap` best questions in a min-heap of (score, -id, id) keys (ties: the older question); a
    question pushed out also leaves `cands`. False = `key` is not among the best so far."""
    if len(heap) < cap:
        heapq.heappush(heap, key)
    elif key > heap[0]:
        cands.pop(heapq.heapreplace(heap, key)[2], None)
    else:
        return False
    return True


class _RowBound:
    """A binary file for iterparse that raises DataError once one line (one `<row>`) passes `limit` bytes, or at
    a DOCTYPE or ENTITY declaration: dumps have none, and declared entities can multiply text (a "bomb")."""

    def __init__(self, fh: IO[bytes], path: Path, limit: int = MAX_ROW_BYTES):
        self.fh, self.path, self.limit = fh, path, limit
        self.line, self.run, self.open = 1, 0, 0  # the current line's number, its bytes so far, bytes since a '>'
        self.tail = b""  # the end of the previous chunk, so a declaration split between two chunks is seen

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(n)
        window = self.tail + chunk
        if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
            raise DataError(
                self.path,
                f"near line {self.line}",
                "a DOCTYPE or ENTITY declaration, which a Stack "
                "Exchange dump never has (declared entities can expand without bound)",
                _FIX_XML,
            )
        self.tail = window[-8:]
        parts = chunk.split(b"\n")
        lengths = [self.run + len(parts[0]), *map(len, parts[1:])]
        for i, length in enumerate(lengths):
            if length > self.limit:
                raise DataError(
                    self.path,
                    f"line {self.line + i}",
                    f"a row longer than {self.limit >> 20} MiB "
                    "(a dump has one <row> per line, and real posts are a few hundred KB at most)",
                    "remove that row, or re-download the dump; a file without line breaks is not a Stack Exchange dump",
                )
        self.line += len(parts) - 1
        self.run = lengths[-1]
        close = chunk.rfind(b">")  # a tag's newlines escape the line bound (expat re-scans an open tag): bound tags too
        self.open = len(chunk) - close - 1 if close >= 0 else self.open + len(chunk)
        if self.open > self.limit:
            raise DataError(
                self.path,
                f"line {self.line}",
                f"an XML tag or text longer than {self.limit >> 20} MiB (a row keeps its newlines as &#xA;)",
                "remove that row, or re-download the dump",
            )
        return chunk


def iter_rows(fh: IO[bytes], path: Path) -> Iterator[dict[str, str]]:
    """Yield each `<row>`'s attributes; a malformed or truncated file raises DataError with line and column,
    a row longer than MAX_ROW_BYTES one with its line, a DOCTYPE one too."""
    it = ET.iterparse(_RowBound(fh, path), events=("start", "end"))
    open_: list[ET.Element] = []  # the elements not yet closed, outermost first
    try:
        for event, el in it:
            if event == "start":
                open_.append(el)
                continue
            open_.pop()
            if el.tag == "row":
                yield el.attrib
            if open_:  # drop every finished element, row or not: memory stays flat whatever the file holds
                open_[-1].remove(el)
    except ET.ParseError as e:
        line, col = e.position
        what = (
            "file ends before the XML is closed (truncated?)"
            if "no element found" in str(e)
            else re.sub(r": line \d+, column \d+$", "", str(e))
        )  # the position is in `where` already
        raise DataError(path, f"line {line}, column {col}", f"XML error: {what}", _FIX_XML) from e


def is_id(value: str | None) -> bool:
    """A post or comment id: 1-18 ASCII digits (`"²".isdigit()` is true, but int() rejects it; so does int() of
    5,000 digits)."""
    return value is not None and len(value) <= 18 and value.isascii() and value.isdigit()


def int_field(row: dict, key: str) -> int | None:
    """An integer attribute (ASCII digits, optional minus sign), else None."""
    v = row.get(key)
    return int(v) if v is not None and re.fullmatch(r"-?[0-9]{1,18}", v.strip()) else None


def author(row: dict, id_key: str, name_key: str) -> str | None:
    """UserId when present (deleted users have none), else the display name; None = unknown."""
    uid = (row.get(id_key) or "").strip()
    if uid:
        return f"id:{uid}"
    name = (row.get(name_key) or "").strip()
    return f"name:{name.lower()}" if name else None


def question_pool(
    path: Path,
    cap: int,
    log: StepLog,
    config_key: str,
    skip_reasons: tuple[str, str],
    eligible: Callable[[dict], bool] | None = None,
) -> tuple[int, int, list[dict]]:
    """One streamed pass over a site's Posts.xml: the `cap` highest-scoring `eligible` questions (ties: the older),
    each with its top answer (highest score; ties go to the accepted answer, then the earliest) and both authors.

    Returns (questions seen, eligible questions, the pool by question score desc). Rows without a numeric Id or
    Score and the fabricated posts are skipped and counted under `skip_reasons` (bad row, fabricated)."""
    heap: list[tuple[int, int, str]] = []  # (score, -id, id): the lowest-scoring candidate on top
    cands: dict[str, dict] = {}
    n_questions = n_eligible = 0
    with open_table(path, "Posts.xml", config_key) as (fh, shown):
        for i, row in enumerate(iter_rows(fh, shown)):
            ptype, pid, score = row.get("PostTypeId"), row.get("Id"), int_field(row, "Score")
            if ptype not in ("1", "2"):
                continue
            if score is None or not is_id(pid):
                log.skip(skip_reasons[0], shown, f"row {i + 1}")
                continue
            if pid in FABRICATED_IDS:
                log.skip(skip_reasons[1], shown, f"row {i + 1}")
                continue
            if ptype == "1":
                n_questions += 1
                if eligible is not None and not eligible(row):
                    continue
                n_eligible += 1
                if not keep_top(heap, cands, (score, -int(pid), pid), cap):
                    continue
                cands[pid] = {
                    "id": pid,
                    "score": score,
                    "title": row.get("Title") or "",
                    "body": row.get("Body") or "",
                    "accepted": row.get("AcceptedAnswerId"),
                    "asker": author(row, "OwnerUserId", "OwnerDisplayName"),
                    "answer": None,
                }
            else:
                q = cands.get(row.get("ParentId") or "")
                if q is None:
                    continue
                rank = (score, pid == q["accepted"], -int(pid))
                if q["answer"] is None or rank > q["answer"]["rank"]:
                    q["answer"] = {
                        "rank": rank,
                        "id": pid,
                        "score": score,
                        "body": row.get("Body") or "",
                        "author": author(row, "OwnerUserId", "OwnerDisplayName"),
                    }
    return n_questions, n_eligible, sorted(cands.values(), key=lambda q: (-q["score"], int(q["id"])))
