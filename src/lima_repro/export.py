"""Hand-offs to other evaluation tools: any generations file as AlpacaEval's `model_outputs.json`.

    python -m lima_repro alpaca-eval runs/X --generator lima-270m-epoch2     # or a generations.jsonl file
    alpaca_eval --model_outputs alpaca_eval/lima-270m-epoch2/model_outputs.json

AlpacaEval reads a JSON list of records with `instruction` and `output` (its README), names the model after the
records' one `generator` value when no `--name` is given (`alpaca_eval.main.evaluate`), and its evaluation set
carries a `dataset` column beside `instruction`. Every prompt of the file is exported (the first sample of each),
for one checkpoint. To answer AlpacaEval's own 805 instructions, give its evaluation set (`alpaca_eval.json`:
`instruction`, `dataset`, and a reference model's `output` with its `generator`) as `generate.prompts_file`:
`data.read_examples` reads such rows as prompts and keeps their `dataset` as the source, so it comes back here.
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import DataError
from .files import read_jsonl_plain, write_json
from .judging.items import prompt_text
from .runs import RunDir

ALPACA_EVAL_FIELDS = ("dataset", "instruction", "output", "generator")  # what each exported record holds


def alpaca_eval_records(
    rows: list[dict], generator: str, checkpoint: str | None = None, source: str | Path = "generations"
) -> list[dict]:
    """One AlpacaEval record per prompt answered by `checkpoint` (default: the one system that is not `base`),
    its first sample, in file order. A multi-turn prompt is an error: AlpacaEval judges single instructions."""
    labels = list(dict.fromkeys(r["checkpoint"] for r in rows))
    if checkpoint is None:
        tuned = [label for label in labels if label != "base"]
        if len(tuned) != 1:
            raise DataError(
                source,
                None,
                f"holds {len(tuned)} systems besides base ({', '.join(tuned) or 'none'})",
                f"choose one with --checkpoint NAME (one of {', '.join(labels)})",
            )
        checkpoint = tuned[0]
    elif checkpoint not in labels:
        raise DataError(
            source, None, f"has no rows of checkpoint {checkpoint!r}", f"give --checkpoint one of {', '.join(labels)}"
        )
    out = []
    for r in rows:
        if r["checkpoint"] != checkpoint or r.get("sample", 0) != 0:
            continue
        if sum(m["role"] == "user" for m in r["messages"]) != 1:
            raise DataError(
                source,
                f"prompt {r['prompt_id']}",
                "is a multi-turn conversation; AlpacaEval judges single instructions",
                "export a generations file of single-turn prompts",
            )
        out.append(
            {
                "dataset": r.get("source") or "lima_repro",
                "instruction": prompt_text(r["messages"]),
                "output": r["response"],
                "generator": generator,
            }
        )
    check_alpaca_eval(out, source)
    return out


def check_alpaca_eval(records: list[dict], source: str | Path = "model_outputs") -> None:
    """AlpacaEval's fields, all text, one generator name, each instruction once (AlpacaEval pairs the model's
    outputs with the reference outputs by instruction)."""
    if not records:
        raise DataError(source, None, "no records to export", "generate responses first")
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if tuple(rec) != ALPACA_EVAL_FIELDS or not all(isinstance(v, str) for v in rec.values()):
            raise DataError(
                source,
                f"record {i}",
                f"fields {sorted(rec)} are not AlpacaEval's {list(ALPACA_EVAL_FIELDS)} as text",
                "export with lima_repro.export",
            )
        if not rec["instruction"].strip() or rec["instruction"] in seen:
            raise DataError(
                source, f"record {i}", "empty or repeated instruction", "give each prompt once, with its text"
            )
        seen.add(rec["instruction"])
    if len({rec["generator"] for rec in records}) != 1:
        raise DataError(source, None, "records name several generators", "export one model per file")


def export_alpaca_eval(
    generations: str | Path, generator: str, out: str | Path | None = None, checkpoint: str | None = None
) -> Path:
    """Write `checkpoint`'s answers in `generations` (a generations JSONL file, or a run directory whose generate
    stage finished) as AlpacaEval `model_outputs.json`; `out` defaults to `alpaca_eval/<generator>/` here, where
    AlpacaEval then writes its leaderboard and annotations. Returns the file written."""
    path = Path(generations)
    if path.is_dir():
        run = RunDir(path)
        run.require_finished("generate")
        path = run.generations
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: give a generations JSONL file or a run directory with a finished generate stage"
        )
    if not generator.strip() or "/" in generator:
        raise DataError(
            path,
            None,
            f"generator name {generator!r} is empty or has a '/'",
            "give --generator a plain name, e.g. lima-270m-epoch2",
        )
    try:
        records = alpaca_eval_records(read_jsonl_plain(path), generator, checkpoint, path)
    except (json.JSONDecodeError, KeyError, TypeError) as e:  # not rows as the generate stage writes them
        raise DataError(
            path,
            None,
            f"not a generations file ({type(e).__name__}: {e})",
            "give the generations.jsonl a generate stage wrote",
        ) from e
    target = Path(out) if out else Path("alpaca_eval") / generator / "model_outputs.json"
    return write_json(target, records)
