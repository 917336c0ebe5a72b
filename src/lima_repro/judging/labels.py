"""Human labels written by the annotator (`annotate.py`), read back for the judge stage and the figures.

Each annotator's labels are an append-only event log `<annotations>/<annotator>.jsonl`: `label` events, and
`undo` events that withdraw an earlier label by its sequence number. Replaying the log gives the active labels.
"""
from __future__ import annotations

from pathlib import Path

from ..files import read_jsonl_plain


def active_labels(events: list[dict]) -> list[dict]:
    """Replay a log: label events minus the ones an undo event withdrew, in order."""
    active: dict[int, dict] = {}
    for e in events:
        if e["event"] == "label":
            active[e["seq"]] = e
        elif e["event"] == "undo":
            active.pop(e["target"], None)
    return list(active.values())


def pairwise_labels(annotations_dir: str | Path) -> dict[str, dict[str, str]]:
    """{annotator: {item_id: winning system name or 'neither'}} from every log in the folder (latest label wins)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(Path(annotations_dir).glob("*.jsonl")):
        for e in active_labels(read_jsonl_plain(path)):
            if e["kind"] == "pairwise":
                out.setdefault(e["annotator"], {})[e["item_id"]] = e["winner"]
    return out
