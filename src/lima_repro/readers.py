"""Checked readers of the files stages hand each other: a generations file (ours or a user's) row by row with the
fields every reader indexes, and a JSON object whose tables have the types readers expect. A bad file is a
`DataError` / `CorruptFileError` naming the file, the line and the fix (`files.iter_jsonl` does the line checks)."""

from __future__ import annotations

from pathlib import Path

from .files import MESSAGES, CorruptFileError, iter_jsonl, read_json, require_fields

# what every reader of a generations row indexes (judge, the annotator, the AlpacaEval export)
GENERATION_FIELDS = {"prompt_id": str, "checkpoint": str, "response": str, "messages": MESSAGES}
FIX_GENERATIONS = (
    "give a generations.jsonl as the generate stage writes it: one object a line with prompt_id, checkpoint and "
    "response strings and messages as a list of {role, content}"
)


def read_generations(path: str | Path) -> list[dict]:
    """The rows of a generations file (ours or a user's `judge.generations_file`), each checked for the fields
    readers index (`GENERATION_FIELDS`); a bad row is a DataError naming the file, the line and the fix."""
    rows = []
    for n, row in iter_jsonl(path, FIX_GENERATIONS):
        require_fields(row, GENERATION_FIELDS, path, n, FIX_GENERATIONS)
        rows.append(row)
    return rows


def read_checked_object(path: Path, fix: str, typed: dict[str, type]) -> dict:
    """A JSON object whose keys in `typed`, when present, have those types (else CorruptFileError with `fix`)."""
    obj = read_json(path, fix, keys={})
    require_fields(obj, {k: t for k, t in typed.items() if k in obj}, path, None, fix, CorruptFileError)
    return obj


# the tables of results.json and summary.json that readers index: objects (lists) when present
RESULT_TABLES = ("pairwise", "absolute", "likert", "safety", "order_consistency", "pairwise_calibration", "requests")
SUMMARY_LISTS = ("conditions", "not_run")
SUMMARY_ROW = {"condition": str, "status": str, "groups": list}  # what the figures and notebooks index in each row
FIX_RESULTS = "rerun the judge stage (python -m lima_repro judge --run-dir RUN); results.json is cut short or edited"
FIX_SUMMARY = "rerun the ablations stage; ablations/summary.json is cut short or edited"


def read_results_object(path: Path) -> dict:
    """judge/results.json with its tables checked (objects where present)."""
    return read_checked_object(path, FIX_RESULTS, dict.fromkeys(RESULT_TABLES, dict))


def read_summary_object(path: Path) -> dict:
    """ablations/summary.json with its lists checked, and in them each row's fields that readers index."""
    obj = read_checked_object(path, FIX_SUMMARY, dict.fromkeys(SUMMARY_LISTS, list))
    for key in SUMMARY_LISTS:
        for i, row in enumerate(obj.get(key, [])):
            if not isinstance(row, dict):
                raise CorruptFileError(
                    path, f"{key}[{i}]", f"expected an object, got {type(row).__name__}", FIX_SUMMARY
                )
            require_fields(row, SUMMARY_ROW, path, f"{key}[{i}]", FIX_SUMMARY, CorruptFileError)
    return obj
