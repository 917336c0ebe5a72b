"""Human labels written by the annotator (`annotate.py`), read back for the judge stage and the figures.

Each annotator's labels are an append-only event log `<annotations>/<annotator>.jsonl`: `label` events, and
`undo` events that withdraw an earlier label by its id. Replaying the log gives the active labels. Ids are random
(`new_event_id`), so two windows open under the same name never reuse one; logs from before ids name events by
their `seq` number, and replay the same way. A last line cut short (disk full, a kill mid-write) is skipped with a
warning; the annotator moves it aside before each append (`files.repair_tail`).
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

from ..data import DataError


def new_event_id() -> str:
    return uuid.uuid4().hex


def event_id(event: dict):
    """The id an undo event targets: `id`, or `seq` in logs written before ids."""
    return event.get("id", event.get("seq"))


def _parse(line: bytes) -> dict | None:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) and isinstance(row.get("event"), str) else None


# The text fields each label needs (replaying and reading labels index them), by label kind.
_LABEL_FIELDS = {"pairwise": ("item_id", "annotator", "winner"), "absolute": ("item_id", "system", "label")}


def _missing_fields(event: dict) -> list[str]:
    """The fields `event` lacks for its type: a label needs an id (`id`, or `seq` in old logs), a `kind` and that
    kind's text fields; an undo needs the `target` id. Other event types are ignored by the replay."""
    if event["event"] == "undo":
        return [] if event.get("target") is not None else ["target"]
    if event["event"] != "label":
        return []
    missing = [] if event_id(event) is not None else ["id"]
    if not isinstance(event.get("kind"), str):
        return missing + ["kind"]
    return missing + [f for f in _LABEL_FIELDS.get(event["kind"], ()) if not isinstance(event.get(f), str)]


def read_log(path: str | Path) -> list[dict]:
    """The events of one annotator's log. An unreadable last line (a write cut short) is skipped with a warning;
    an unreadable line before it, or an event without the fields its type needs, is a DataError naming the file
    and line."""
    lines = Path(path).read_bytes().split(b"\n")
    events = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        row = _parse(line)
        if row is not None:
            missing = _missing_fields(row)
            if missing:
                raise DataError(
                    path,
                    f"line {i + 1}",
                    f"a `{row['event']}` event without {', '.join(missing)}",
                    "repair or delete that line (deleting a label means giving it again)",
                )
            events.append(row)
        elif i == len(lines) - 1:  # no newline after it: the write that was cut short
            warnings.warn(
                f"{path}:{i + 1}: skipped a label event cut short ({len(line)} bytes, e.g. disk full); "
                "the other labels are read",
                stacklevel=2,
            )
        else:
            raise DataError(
                path,
                f"line {i + 1}",
                "not a label event (a JSON object with an `event` field)",
                "delete or repair that line; each line of an annotator's log is one event",
            )
    return events


def active_labels(events: list[dict]) -> list[dict]:
    """Replay a log: label events minus the ones an undo event withdrew, in order."""
    active: dict = {}
    for e in events:
        if e["event"] == "label":
            active[event_id(e)] = e
        elif e["event"] == "undo":
            active.pop(e["target"], None)
    return list(active.values())


def pairwise_labels(annotations_dir: str | Path) -> dict[str, dict[str, str]]:
    """{annotator: {item_id: winning system name or 'neither'}} from every log in the folder (latest label wins)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(Path(annotations_dir).glob("*.jsonl")):
        for e in active_labels(read_log(path)):
            if e["kind"] == "pairwise":
                out.setdefault(e["annotator"], {})[e["item_id"]] = e["winner"]
    return out


def absolute_labels(annotations_dir: str | Path) -> dict[str, dict[tuple[str, str], str]]:
    """{annotator: {(item_id, system): Fail / Pass / Excellent}} from every log in the folder (latest grade of a
    response wins)."""
    out: dict[str, dict[tuple[str, str], str]] = {}
    for path in sorted(Path(annotations_dir).glob("*.jsonl")):
        for e in active_labels(read_log(path)):
            if e["kind"] == "absolute":
                out.setdefault(e["annotator"], {})[(e["item_id"], e["system"])] = e["label"]
    return out
