"""Readers for the raw sources LIMA was curated from (docs/paper.md sec. 1), one module per source.

Every reader streams its input (memory bounded by the candidate pool, not the file size), applies the paper's
rules as named steps counted in a `StepLog`, and returns candidate examples in the canonical format of
`data.py`. Bad input raises `data.DataError` naming file, position and fix; rows that are dirty in the dump
itself are skipped and counted (`StepLog.skip`), so the data card shows them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from ..data import DataError

__all__ = ["DataError", "StepLog", "make_example", "require_file"]

MAX_SKIP_EXAMPLES = 20  # skipped rows listed verbatim in the card per source; the rest are only counted


class StepLog:
    """Ordered kept/dropped counts per named step, plus counted skips of dirty rows."""

    def __init__(self) -> None:
        self.steps: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.skips: dict[str, int] = {}
        self.skip_examples: list[dict] = []

    def count(self, step: str, kept: bool, n: int = 1) -> bool:
        row = self.steps.setdefault(step, {"kept": 0, "dropped": 0})
        row["kept" if kept else "dropped"] += n
        return kept

    def add(self, step: str, kept: int, dropped: int) -> None:
        row = self.steps.setdefault(step, {"kept": 0, "dropped": 0})
        row["kept"] += kept
        row["dropped"] += dropped

    def skip(self, reason: str, path: str | Path, where: str | int | None) -> None:
        """A dirty row in the dump: skipped, counted per reason, the first few recorded with their position."""
        self.skips[reason] = self.skips.get(reason, 0) + 1
        if len(self.skip_examples) < MAX_SKIP_EXAMPLES:
            self.skip_examples.append({"reason": reason, "file": str(path), "where": where})

    def as_dict(self) -> dict:
        return {
            "steps": [{"step": k, **v} for k, v in self.steps.items()],
            "skipped": dict(self.skips),
            "skipped_examples": list(self.skip_examples),
        }


def require_file(path: Path, what: str, key: str) -> None:
    """Missing or empty input -> DataError naming the config key to fix."""
    if not path.exists():
        raise DataError(path, None, f"{what} not found", f"check the path in curate.{key}")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(
            path, None, f"{what} is empty (0 bytes)", f"re-download or re-extract it, or remove it from curate.{key}"
        )


def make_example(
    ex_id: str, source: str, prompt: str, response: str | None, tags: list[str] | None = None, meta: dict | None = None
) -> dict:
    """Canonical example; `meta` (scores, site, category) is used by sampling and stripped before writing."""
    msgs = [{"role": "user", "content": prompt}]
    if response is not None:
        msgs.append({"role": "assistant", "content": response})
    ex = {"id": ex_id, "source": source, "messages": msgs, "tags": list(tags or [])}
    if meta:
        ex["_meta"] = meta
    return ex
