"""Stack Exchange data dumps -> (title or body, top answer) candidates per site (LIMA sec. 1).

`iter_rows` streams `Posts.xml` with `xml.etree.ElementTree.iterparse`, clearing the root after every row,
so memory stays flat whatever the file size (benchmarks/curate_stream.py measures it). `site_candidates`
keeps only a bounded pool of the site's highest-scoring eligible questions (a min-heap of
`candidates_per_site`) with each one's current top answer, then applies the answer filters.
"""
from __future__ import annotations

import contextlib
from collections import deque
import heapq
import random
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Iterator

from . import DataError, StepLog, make_example, require_file
from .se_sites import site_name
from .text import first_person_count, html_to_markdown, refers_to_others

FABRICATED_IDS = {"1000000001", "1000000010"}  # FORMATS.md: planted fake posts in recent dumps
_FIX_XML = "re-download or re-extract the dump (`7z t <site>.7z` checks an archive); a cut-off copy cannot be read"


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
            raise DataError(path, None, f"no {table} in this folder",
                            "extract the site's full .7z archive here (it holds Posts.xml and Comments.xml)")
        require_file(found, table, config_key)
        with open(found, "rb") as fh:
            yield fh, found
    elif path.suffix.lower() == ".7z":
        try:
            import py7zr
        except ImportError as e:
            raise DataError(path, None, "reading .7z archives needs py7zr",
                            f"`pip install py7zr`, or extract the archive and point {config_key} at the folder") from e
        tmp = Path(tempfile.mkdtemp(prefix="lima-se-"))
        try:
            with py7zr.SevenZipFile(path) as z:
                names = [n for n in z.getnames() if n.rsplit("/", 1)[-1].lower() == table.lower()]
                if not names:
                    raise DataError(path, None, f"archive holds no {table}", "use the site's full dump archive")
                z.extract(path=tmp, targets=names[:1])
            with open(tmp / names[0], "rb") as fh:
                yield fh, path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        with open(path, "rb") as fh:
            yield fh, path


def open_posts(path: Path):
    """Open a site's Posts.xml from its folder, a Posts.xml file, or a .7z archive (needs py7zr)."""
    return open_table(path, "Posts.xml", "stackexchange.dumps")


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


def iter_rows(fh: IO[bytes], path: Path) -> Iterator[dict[str, str]]:
    """Yield each `<row>`'s attributes; a malformed or truncated file raises DataError with line and column."""
    it = ET.iterparse(fh, events=("start", "end"))
    root = None
    try:
        for event, el in it:
            if root is None:
                root = el
            if event == "end" and el.tag == "row":
                yield el.attrib
                root.clear()  # drop the finished rows: memory stays flat
    except ET.ParseError as e:
        line, col = e.position
        what = "file ends before the XML is closed (truncated?)" if "no element found" in str(e) else str(e)
        raise DataError(path, f"line {line}, column {col}", f"XML error: {what}", _FIX_XML) from e


def int_field(row: dict, key: str) -> int | None:
    v = row.get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def title_is_self_contained(title: str, min_words: int, context_phrases: list[str]) -> bool:
    """A title that is a question in itself: long enough, not pointing at the body ("this code", "below")."""
    low = " ".join(title.lower().split())
    if len(low.split()) < min_words:
        return False
    if re.search(r"\b(this|that|it|these)( (work|mean|do|happen|correct|right|possible|true))?\s*\??$", low):
        return False
    return not any(p in low for p in context_phrases)


def answer_filters(answer: str, cfg, log: StepLog, prefix: str) -> bool:
    """LIMA sec. 1 answer rules on the cleaned text, each a counted step; True = kept."""
    n = len(answer)
    if not log.count(f"{prefix}answer_length", cfg.min_answer_chars <= n <= cfg.max_answer_chars):
        return False
    if not log.count(f"{prefix}not_first_person", first_person_count(answer) <= cfg.max_first_person):
        return False
    return log.count(f"{prefix}no_reference_to_other_answers",
                     refers_to_others(answer, cfg.reference_phrases) is None)


def site_candidates(dump: str | Path, cfg, log: StepLog, rng: random.Random, *, name: str | None = None,
                    group: str = "") -> tuple[str, int, list[dict]]:
    """Stream one site's dump. Returns (site name, number of questions, candidates by question score desc)."""
    path = Path(dump)
    site = name or site_name(path.parent.name if path.name.lower() == "posts.xml" else path.name)
    heap: list[tuple[int, int, str]] = []  # (score, -id, id): the lowest-scoring candidate on top
    cands: dict[str, dict] = {}
    n_questions = n_eligible = 0
    with open_posts(path) as (fh, shown):
        for i, row in enumerate(iter_rows(fh, shown)):
            ptype, pid, score = row.get("PostTypeId"), row.get("Id"), int_field(row, "Score")
            if ptype not in ("1", "2"):
                continue
            if pid is None or score is None or not pid.isdigit():
                log.skip("stackexchange: row without a numeric Id or Score", shown, f"row {i + 1}")
                continue
            if pid in FABRICATED_IDS:
                log.skip("stackexchange: fabricated post id", shown, f"row {i + 1}")
                continue
            if ptype == "1":
                n_questions += 1
                title = row.get("Title") or ""
                if not log.count("se.self_contained_title",
                                 title_is_self_contained(title, cfg.min_title_words, cfg.title_context_phrases)):
                    continue
                n_eligible += 1
                if not keep_top(heap, cands, (score, -int(pid), pid), cfg.candidates_per_site):
                    continue
                cands[pid] = {"id": pid, "score": score, "title": title, "body": row.get("Body") or "",
                              "accepted": row.get("AcceptedAnswerId"), "answer": None}
            else:
                q = cands.get(row.get("ParentId") or "")
                if q is None:
                    continue
                best = q["answer"]
                # top answer: highest score; ties go to the accepted answer, then the earliest
                rank = (score, pid == q["accepted"], -int(pid))
                if best is None or rank > best[0]:
                    q["answer"] = (rank, pid, row.get("Body") or "")
    log.add("se.top_scoring_questions", len(cands), n_eligible - len(cands))
    out = []
    for q in sorted(cands.values(), key=lambda q: (-q["score"], int(q["id"]))):
        ans = q["answer"]
        if not log.count("se.top_answer_score", ans is not None and ans[0][0] >= cfg.min_answer_score):
            continue
        answer = html_to_markdown(ans[2])
        if not answer_filters(answer, cfg, log, "se."):
            continue
        body = html_to_markdown(q["body"])
        use_title = rng.random() < cfg.title_prompt_prob or not body  # LIMA sec. 1: title or body at random
        prompt = q["title"].strip() if use_title else body
        out.append(make_example(f"se-{site}-{q['id']}", f"stackexchange_{group}" if group else "stackexchange",
                                prompt, answer, [f"site:{site}"],
                                {"site": site, "score": q["score"], "prompt_kind": "title" if use_title else "body"}))
    return site, n_questions, out


def tau_sample(pools: dict[str, list], sizes: dict[str, int], n: int, tau: float, rng: random.Random) -> list:
    """Draw n items: pick an exchange with p proportional to size^(1/tau) among those with items left (LIMA
    sec. 1: tau = 3), then take its best remaining item (pools are ranked)."""
    left = {k: deque(v) for k, v in pools.items() if v}
    out = []
    while len(out) < n and left:
        names = sorted(left)
        site = rng.choices(names, weights=[max(sizes.get(s, 1), 1) ** (1.0 / tau) for s in names])[0]
        out.append(left[site].popleft())
        if not left[site]:
            del left[site]
    return out
