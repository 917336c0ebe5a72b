"""wikiHow article CSV -> (title as a question, article body) candidates per category (LIMA sec. 1).

Reads Koupaee & Wang's `wikihowAll.csv` (`headline,title,text`) or any CSV with `title` and `text` columns,
or their `wikihowSep.csv` (`overview,headline,text,sectionLabel,title`, one row per step paragraph, an
article's rows consecutive), told apart by the header; and, where present, a `category` / `categories`
column. Without one, every article is in one category.
Rows stream through `csv`; each category keeps a seeded reservoir of at most `n` articles, so memory is
bounded by categories x n, not by the file.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

from . import DataError, StepLog, make_example, require_file
from .text import strip_links

CATEGORY_COLUMNS = ("category", "categories")
# ours: the longest wikiHow article is ~100 KB; a bigger cell is a broken quote swallowing the rest of the file
MAX_FIELD_CHARS = 4 << 20
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


SEP_COLUMNS = ("overview", "headline", "text", "sectionlabel", "title")  # wikihowSep.csv, one row per step
_KNOWN = "`headline,title,text` (wikihowAll.csv) or `overview,headline,text,sectionLabel,title` (wikihowSep.csv)"


def _rows(reader, path: Path, width: int, log: StepLog):
    """Data rows with their line; dirty rows (wrong field count) are counted skips, bad bytes a DataError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as e:
            raise DataError(
                path,
                f"near line {reader.line_num + 1}",
                f"not valid UTF-8 ({e.reason})",
                "re-save the CSV as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            ) from e
        except csv.Error as e:  # a cell over MAX_FIELD_CHARS: an unclosed quote, or not a wikiHow CSV
            raise DataError(
                path,
                f"line {reader.line_num}",
                f"unreadable CSV ({e}; cells are limited to {MAX_FIELD_CHARS >> 20} MiB)",
                "look for an unclosed quote there, or re-download the CSV",
            ) from e
        where = f"line {reader.line_num}"
        if len(row) != width:
            log.skip("wikihow: row with the wrong number of fields", path, where)
            continue
        yield row, reader.line_num


def _step_paragraph(headline: str, text: str) -> str:
    h, t = headline.strip(), text.strip()
    if h and t and h[-1] not in ".!?:;":
        h += "."
    return " ".join(x for x in (h, t) if x)


def sep_body(rows: list[tuple[str, str, str, str]]) -> str:
    """One wikihowSep article from its (overview, headline, text, sectionLabel) rows: the overview first, then
    each step's headline + text in file order; section labels become their own lines when there are several."""
    labels = list(dict.fromkeys(r[3].strip() for r in rows if r[3].strip()))
    parts = [next((r[0].strip() for r in rows if r[0].strip()), "")]
    prev = None
    for _, headline, text, label in rows:
        label = label.strip()
        if len(labels) > 1 and label and label != prev:
            parts.append(label)
            prev = label
        parts.append(_step_paragraph(headline, text))
    return "\n\n".join(p for p in parts if p)


def _articles(rows, header: list[str], icat: int | None):
    """(title, body text, category cell, first line) per article. wikihowAll: one row each. wikihowSep:
    consecutive rows with the same title form one article (the file lists an article's steps together)."""
    if "overview" not in header:
        it, ix = header.index("title"), header.index("text")
        for row, line in rows:
            yield row[it], row[ix], row[icat] if icat is not None else "", line
        return
    io_, ih, ix, il, it = (header.index(c) for c in SEP_COLUMNS)
    title, group, cat, first = None, [], "", 0
    for row, line in rows:
        if row[it] != title or not group:
            if group:
                yield title, sep_body(group) if any(g[1].strip() or g[2].strip() for g in group) else "", cat, first
            title, group, first = row[it], [], line
            cat = row[icat] if icat is not None else ""
        group.append((row[io_], row[ih], row[ix], row[il]))
    if group:
        yield title, sep_body(group) if any(g[1].strip() or g[2].strip() for g in group) else "", cat, first


def read_candidates(spec: str | Path, cfg, log: StepLog, rng: random.Random) -> dict[str, list[dict]]:
    """Stream one CSV (wikihowAll or wikihowSep layout, told apart by the header); returns {category:
    reservoir of at most cfg.n candidate examples}."""
    path = Path(spec)
    require_file(path, "wikiHow CSV", "wikihow.files")
    csv.field_size_limit(MAX_FIELD_CHARS)
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
        except csv.Error as e:
            raise DataError(path, "line 1", f"unreadable CSV header ({e})", "re-download the CSV") from e
        sep_like = "overview" in header or "sectionlabel" in header
        required = SEP_COLUMNS if sep_like else ("title", "text")
        missing = [c for c in required if c not in header]
        if missing:
            layout = " of the wikihowSep.csv layout" if sep_like else ""
            raise DataError(
                path,
                "line 1",
                f"missing column(s) {missing}{layout}; the header is {header}",
                f"use the dump's own header, {_KNOWN}, or rename the columns to `title` and `text`",
            )
        want = cfg.category_column.lower() if cfg.category_column else None
        if want and want not in header:
            raise DataError(
                path,
                "line 1",
                f"no column {want!r}; the header is {header}",
                "fix curate.wikihow.category_column, or set it to null to auto-detect",
            )
        icat = header.index(want) if want else next((header.index(c) for c in CATEGORY_COLUMNS if c in header), None)
        for title, text, cat_cell, line in _articles(_rows(reader, path, len(header), log), header, icat):
            title, text = title.strip(), text.strip()
            if not log.count("wikihow.has_title_and_text", bool(title and text)):
                continue
            cat = cat_cell.split(",")[0].strip("[]'\" ") or "uncategorized"
            body = clean_body(text, cfg.rewrite_opening)
            if not log.count("wikihow.min_response_chars", len(body) >= cfg.min_response_chars):
                continue
            k = seen[cat] = seen.get(cat, 0) + 1
            pool = pools.setdefault(cat, [])
            slug = re.sub(r"\W+", "-", title.lower()).strip("-")[:60]
            ex = make_example(
                f"wikihow-{slug}-{line}", "wikihow", clean_title(title), body, [f"category:{cat}"], {"category": cat}
            )
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
