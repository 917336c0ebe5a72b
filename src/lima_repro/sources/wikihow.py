"""wikiHow article CSV -> (title as a question, article body) candidates per category (LIMA sec. 1).

Reads Koupaee & Wang's `wikihowAll.csv` (`headline,title,text`) or any CSV with `title` and `text` columns
and, where present, a `category` / `categories` column. Without one, every article is in one category.
Rows stream through `csv`; each category keeps a seeded reservoir of at most `n` articles, so memory is
bounded by categories x n, not by the file.
"""
from __future__ import annotations

import csv
import random
import re
import sys
from pathlib import Path

from . import DataError, StepLog, make_example, require_file
from .text import strip_links

CATEGORY_COLUMNS = ("category", "categories")
_OPENING = re.compile(r"^(\s*)This article\b", re.I)


def clean_title(title: str) -> str:
    """`How to Cook Adzuki Beans2` -> `How to cook adzuki beans?`-style prompt (method index dropped)."""
    t = re.sub(r"(?<=[A-Za-z)])\d+$", "", title.strip()).strip()
    return t if t.endswith("?") else t + "?"


def clean_body(text: str, rewrite_opening: bool = True) -> str:
    """Koupaee join artifacts undone, links/images removed, "This article..." -> "The following answer..."."""
    t = text.replace("\r\n", "\n")
    t = re.sub(r"\.?\n,", ".\n\n", t)  # paragraphs were joined as ".\n,"
    t = re.sub(r"(?<=[a-z])\.(?=[A-Z][a-z])", ". ", t)  # glued sentences "egg.Then"
    t = strip_links(t)
    if rewrite_opening:
        t = _OPENING.sub(r"\1The following answer", t)
    t = re.sub(r"\n{3,}", "\n\n", t)
    return "\n".join(line.strip() for line in t.strip().split("\n"))


def read_candidates(spec: str | Path, cfg, log: StepLog, rng: random.Random) -> dict[str, list[dict]]:
    """Stream one CSV; returns {category: reservoir of at most cfg.n candidate examples}."""
    path = Path(spec)
    require_file(path, "wikiHow CSV", "wikihow.files")
    csv.field_size_limit(sys.maxsize)
    pools: dict[str, list[dict]] = {}
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(path, None, "file is empty", "point curate.wikihow.files at wikihowAll.csv") from None
        except UnicodeDecodeError as e:
            raise DataError(path, "line 1", f"not valid UTF-8 ({e.reason})", "re-save the CSV as UTF-8") from e
        missing = [c for c in ("title", "text") if c not in header]
        if missing:
            raise DataError(path, "line 1", f"missing column(s) {missing}; the header is {header}",
                            "use the dump's own header (`headline,title,text` for wikihowAll.csv) or rename the "
                            "columns to `title` and `text`")
        it, ix = header.index("title"), header.index("text")
        want = cfg.category_column.lower() if cfg.category_column else None
        if want and want not in header:
            raise DataError(path, "line 1", f"no column {want!r}; the header is {header}",
                            "fix curate.wikihow.category_column, or set it to null to auto-detect")
        icat = header.index(want) if want else next((header.index(c) for c in CATEGORY_COLUMNS if c in header), None)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as e:
                raise DataError(path, f"near line {reader.line_num + 1}", f"not valid UTF-8 ({e.reason})",
                                "re-save the CSV as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from e
            where = f"line {reader.line_num}"
            if len(row) != len(header):
                log.skip("wikihow: row with the wrong number of fields", path, where)
                continue
            title, text = row[it].strip(), row[ix].strip()
            if not log.count("wikihow.has_title_and_text", bool(title and text)):
                continue
            cat = (row[icat].split(",")[0].strip("[]'\" ") if icat is not None else "") or "uncategorized"
            body = clean_body(text, cfg.rewrite_opening)
            if not log.count("wikihow.min_response_chars", len(body) >= cfg.min_response_chars):
                continue
            k = seen[cat] = seen.get(cat, 0) + 1
            pool = pools.setdefault(cat, [])
            slug = re.sub(r"\W+", "-", title.lower()).strip("-")[:60]
            ex = make_example(f"wikihow-{slug}-{reader.line_num}", "wikihow", clean_title(title), body,
                              [f"category:{cat}"], {"category": cat})
            if len(pool) < cfg.n:  # reservoir sampling keeps a uniform sample per category
                pool.append(ex)
            else:
                j = rng.randrange(k)
                if j < cfg.n:
                    pool[j] = ex
    return pools


def category_first_sample(pools: dict[str, list[dict]], n: int, rng: random.Random) -> list[dict]:
    """LIMA sec. 1: pick a category uniformly, then an article in it, without replacement."""
    left = {k: list(v) for k, v in pools.items() if v}
    out = []
    while len(out) < n and left:
        cat = rng.choice(sorted(left))
        out.append(left[cat].pop(rng.randrange(len(left[cat]))))
        if not left[cat]:
            del left[cat]
    return out
