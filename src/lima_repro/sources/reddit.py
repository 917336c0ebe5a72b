"""Pushshift Reddit dumps (zstandard NDJSON) -> r/WritingPrompts prompt/story pairs and r/AskReddit titles.

Accepts per-subreddit files (`WritingPrompts_submissions.zst`) and monthly dumps (`RS_2019-05.zst`), filtering
on the `subreddit` field. Decompression streams with a 2 GiB window (the dumps use --long=31). Lines that are
not valid UTF-8 or JSON, and rows whose text fields are not strings, are dirty rows: skipped and counted; a
corrupt zstd frame, or a line longer than MAX_LINE_BYTES, is an error.
"""

from __future__ import annotations

import heapq
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import zstandard

from . import DataError, StepLog, make_example, require_file

# ours: a Pushshift row is a few KB (selftext is capped at 40,000 characters), so a longer line is not a row
MAX_LINE_BYTES = 4 << 20
FEED_BYTES = 1 << 10  # compressed bytes per decompress call (`_zst_chunks`); costs ~1.5x in speed at most
_LINE = re.compile(rb"[^\n]+")
_TAG = re.compile(r"^\s*[\[(]\s*(\w{2,3})\s*[\])]\s*")  # docs/formats.md: [WP], ( wp ), [ EU ] ...
_GONE = {"[removed]", "[deleted]", ""}


_FIX_ZST = (
    "re-download the file (`zstd -t --long=31 FILE` checks it); a damaged or incomplete torrent piece is the "
    "usual cause"
)


def _zst_chunks(raw, path: Path, pos: list[int]) -> Iterator[bytes]:
    """Decompressed chunks of a (possibly multi-frame) zstd file; a corrupt or cut-off frame raises DataError.
    `pos[0]` tracks the compressed byte offset for error messages. The decompressor is fed FEED_BYTES at a time:
    zstd expands a byte to at most ~43,000 (a run of one byte), so a chunk stays under ~44 MB even for a file of
    nothing but newlines, where one 64 KiB read would decompress to gigabytes."""
    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)  # Pushshift dumps use a 2 GiB window
    dobj, fed = dctx.decompressobj(), False
    while block := raw.read(1 << 16):
        view = memoryview(block)
        for i in range(0, len(block), FEED_BYTES):
            chunk = view[i : i + FEED_BYTES]
            while chunk:
                fed = True
                try:
                    out = dobj.decompress(chunk)
                except zstandard.ZstdError as e:
                    raise DataError(
                        path, f"compressed bytes {pos[0]}-{pos[0] + len(block)}", f"corrupt zstd data ({e})", _FIX_ZST
                    ) from e
                if out:
                    yield out
                if dobj.eof:  # frame finished: the rest of the chunk starts the next frame
                    chunk, dobj, fed = dobj.unused_data, dctx.decompressobj(), False
                else:
                    chunk = b""
        pos[0] = raw.tell()
    if fed and not dobj.eof:
        raise DataError(
            path,
            f"end of file (compressed byte {pos[0]})",
            "the last zstd frame is cut off (truncated download?)",
            _FIX_ZST,
        )


def iter_ndjson_zst(path: str | Path, log: StepLog) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a .zst NDJSON file (or plain .ndjson/.jsonl), streamed: memory holds one
    decompressed chunk and at most one unfinished line of MAX_LINE_BYTES; blank lines are counted, not split out."""
    path = Path(path)
    require_file(path, "Reddit dump", "writingprompts/askreddit files")
    done, rest, seen = 0, b"", False  # lines finished before `rest`; the unfinished line
    with open(path, "rb") as raw:
        chunks = _zst_chunks(raw, path, [0]) if path.suffix == ".zst" else iter(lambda: raw.read(1 << 16), b"")
        for chunk in chunks:
            seen = True
            buf = rest + chunk
            end = buf.rfind(b"\n") + 1
            newlines, at = 0, 0
            for m in _LINE.finditer(buf, 0, end):
                newlines += buf.count(b"\n", at, m.start())
                at = m.start()
                lineno = done + newlines + 1
                _check_length(m.group(), path, lineno)
                obj = _parse_line(m.group(), path, lineno, log)
                if obj is not None:
                    yield lineno, obj
            done += newlines + buf.count(b"\n", at, end)
            rest = buf[end:]
            _check_length(rest, path, done + 1)  # an unfinished line grows across chunks: bound it as it grows
        if rest.strip():
            obj = _parse_line(rest, path, done + 1, log)
            if obj is not None:
                yield done + 1, obj
    if not seen:
        raise DataError(path, None, "decompresses to nothing", "re-download the dump; this file holds no rows")


def _check_length(line: bytes, path: Path, lineno: int) -> None:
    if len(line) > MAX_LINE_BYTES:
        raise DataError(
            path,
            f"line {lineno}",
            f"a line longer than {MAX_LINE_BYTES >> 20} MiB (Pushshift rows are a few KB)",
            "remove that line, or re-download the dump",
        )


def _parse_line(line: bytes, path: Path, lineno: int, log: StepLog) -> dict | None:
    """One NDJSON line; dirty lines (bad UTF-8, bad JSON, not an object) are counted skips."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        log.skip("reddit: line is not valid UTF-8", path, f"line {lineno}")
        return None
    except (json.JSONDecodeError, RecursionError):
        log.skip("reddit: line is not valid JSON", path, f"line {lineno}")
        return None
    if not isinstance(obj, dict):
        log.skip("reddit: line is not a JSON object", path, f"line {lineno}")
        return None
    return obj


def text_fields_ok(
    obj: dict, required: tuple[str, ...], optional: tuple[str, ...], log: StepLog, path, where: str, kind: str
) -> bool:
    """The row's text fields are strings (`optional` ones may also be null or absent); else a counted skip."""
    bad = next((k for k in required if not isinstance(obj.get(k), str)), None) or next(
        (k for k in optional if obj.get(k) is not None and not isinstance(obj[k], str)), None
    )
    if bad is not None:
        log.skip(f"reddit: {kind} whose `{bad}` is not a string", path, where)
    return bad is None


def _score(obj: dict) -> int | None:
    try:
        return int(float(obj.get("score", 0)))
    except (TypeError, ValueError, OverflowError):  # a dict, "abc", NaN, 1e999
        return None


def prompt_tag(title: str) -> str | None:
    m = _TAG.match(title or "")
    return m.group(1).upper() if m else None


def _top_submissions(files: list[str], sub: str, k: int, log: StepLog, prefix: str, keep) -> dict[str, dict]:
    """Bounded pool of the k highest-scoring submissions of `sub` that pass `keep(obj)`."""
    heap: list[tuple[int, str]] = []
    pool: dict[str, dict] = {}
    n_seen = 0
    for f in files:
        for lineno, obj in iter_ndjson_zst(f, log):
            if str(obj.get("subreddit", "")).lower() != sub.lower():
                continue
            if not text_fields_ok(obj, ("id", "title"), ("selftext",), log, f, f"line {lineno}", "submission"):
                continue
            if not keep(obj):
                continue
            sid, score = obj["id"], _score(obj)
            if score is None:
                log.skip("reddit: submission with a non-numeric score", f, f"line {lineno}")
                continue
            if not sid or sid in pool:
                continue
            n_seen += 1
            if len(heap) < k:
                heapq.heappush(heap, (score, sid))
            elif (score, sid) > heap[0]:
                pool.pop(heapq.heapreplace(heap, (score, sid))[1], None)
            else:
                continue
            pool[sid] = {"id": sid, "score": score, "title": obj["title"], "selftext": obj.get("selftext", "") or ""}
    log.add(f"{prefix}top_posts", len(pool), n_seen - len(pool))
    return pool


def writingprompts(cfg, log: StepLog) -> list[dict]:
    """Top r/WritingPrompts prompts with their top story (LIMA sec. 1), ranked by submission score."""
    tags = {t.upper() for t in cfg.prompt_tags}

    def keep(obj):
        if not log.count("wp.prompt_tag", prompt_tag(obj.get("title", "")) in tags):
            return False
        return log.count(
            "wp.not_removed",
            obj.get("selftext", "") not in ("[removed]", "[deleted]") and not obj.get("over_18", False),
        )

    pool = _top_submissions(cfg.submissions, cfg.subreddit, cfg.candidates, log, "wp.", keep)
    best: dict[str, tuple[int, str]] = {}
    for f in cfg.comments:
        for lineno, c in iter_ndjson_zst(f, log):
            sid = str(c.get("link_id", ""))[3:]
            if sid not in pool or c.get("parent_id") != f"t3_{sid}":
                continue  # stories are top-level comments
            if not text_fields_ok(c, (), ("body",), log, f, f"line {lineno}", "comment"):
                continue
            body = html.unescape(c.get("body") or "").strip()
            if body in _GONE or c.get("stickied") or c.get("author") == "AutoModerator":
                continue
            score = _score(c)
            if score is None:
                log.skip("reddit: comment with a non-numeric score", f, f"line {lineno}")
                continue
            if sid not in best or score > best[sid][0]:
                best[sid] = (score, body)
    out = []
    for s in sorted(pool.values(), key=lambda s: (-s["score"], s["id"])):
        if not log.count("wp.has_story", s["id"] in best):
            continue
        story = best[s["id"]][1]
        if not log.count("wp.min_story_chars", len(story) >= cfg.min_story_chars):
            continue
        prompt = _TAG.sub("", html.unescape(s["title"])).strip()
        extra = html.unescape(s["selftext"]).strip()
        if extra and extra not in _GONE:
            prompt = f"{prompt}\n\n{extra}"
        out.append(
            make_example(
                f"wp-{s['id']}",
                "writingprompts",
                prompt,
                story,
                [],
                {"score": s["score"], "story_score": best[s["id"]][0]},
            )
        )
    return out


def askreddit_titles(cfg, log: StepLog) -> list[dict]:
    """Top r/AskReddit titles as test prompts (LIMA sec. 1: 70 of the 300 test prompts)."""

    def keep(obj):
        title = (obj.get("title") or "").strip()
        return log.count(
            "askreddit.usable_title",
            bool(title)
            and not obj.get("over_18", False)
            and obj.get("selftext", "") not in ("[removed]", "[deleted]")
            and len(title.split()) >= cfg.min_title_words,
        )

    pool = _top_submissions(cfg.submissions, cfg.subreddit, cfg.candidates, log, "askreddit.", keep)
    return [
        make_example(
            f"askreddit-{s['id']}", "askreddit", html.unescape(s["title"]).strip(), None, [], {"score": s["score"]}
        )
        for s in sorted(pool.values(), key=lambda s: (-s["score"], s["id"]))
    ]
