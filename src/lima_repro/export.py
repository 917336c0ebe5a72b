"""Hand-offs to AlpacaEval: a run's (or any generations file's) answers as AlpacaEval's `model_outputs.json`, and
AlpacaEval 2's own evaluation of them.

    python -m lima_repro alpaca-eval runs/X                 # -> runs/X/alpaca_eval/<generator>/model_outputs.json
    python -m lima_repro alpaca-eval runs/X --evaluate      # + alpaca_eval's annotator and length-controlled model

AlpacaEval reads a JSON list of records with `instruction` and `output` (its README), names the model after the
records' one `generator` value, and its evaluation set carries a `dataset` column beside `instruction`. The records
come from `judging.items.alpaca_eval_records`, the rule the judge stage's export follows too: the first sample of
each prompt of one checkpoint, multi-turn prompts left out and counted (`export.json` beside the outputs), the
generator named `lima-<base model>-<checkpoint>` unless `--generator` names it. To answer AlpacaEval's own 805
instructions, give its evaluation set (`alpaca_eval.json`) as `generate.prompts_file`: `data.read_examples` keeps
each row's `dataset` as the source, so it comes back here.

`--evaluate` calls `alpaca_eval.evaluate` (the `alpaca-eval` extra) with its defaults: AlpacaEval 2's annotator
(`weighted_alpaca_eval_gpt4_turbo`, which needs OPENAI_API_KEY), its reference outputs (today GPT-4 Turbo's,
`gpt4_1106_preview`) and its length-controlled win rate, and stores our leaderboard row as `leaderboard.json`.
"""

from __future__ import annotations

from pathlib import Path

from .config.base import UserError
from .data import DataError
from .files import read_json, require_fields, write_json
from .judging.items import alpaca_eval_records, check_generator, generator_name
from .readers import read_generations
from .runs import RunDir, alpaca_eval_files

ALPACA_EVAL_FIELDS = ("dataset", "instruction", "output", "generator")  # what each exported record holds
# alpaca_eval's leaderboard columns kept in leaderboard.json (main.evaluate; metrics.get_length_controlled_winrate)
LEADERBOARD_COLUMNS = (
    "length_controlled_winrate",
    "lc_standard_error",
    "win_rate",
    "standard_error",
    "avg_length",
    "n_total",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "discrete_win_rate",
)
INSTALL = 'pip install -e ".[alpaca-eval]"'


class MissingExtraError(UserError):
    """An optional tool is not installed; the message names the extra to install."""


def choose_checkpoint(rows: list[dict], checkpoint: str | None, source: str | Path) -> str:
    """`checkpoint` when the rows hold it; None = the one system that is not `base`."""
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
        return tuned[0]
    if checkpoint not in labels:
        raise DataError(
            source, None, f"has no rows of checkpoint {checkpoint!r}", f"give --checkpoint one of {', '.join(labels)}"
        )
    return checkpoint


def check_alpaca_eval(records: list[dict], source: str | Path = "model_outputs") -> None:
    """AlpacaEval's fields, all text, one generator name, each instruction once (AlpacaEval pairs the model's
    outputs with the reference outputs by instruction)."""
    if not records:
        raise DataError(source, None, "no single-turn answers to export", "generate responses to single instructions")
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
    generations: str | Path, generator: str | None = None, out: str | Path | None = None, checkpoint: str | None = None
) -> dict:
    """Write `checkpoint`'s answers in `generations` (a generations JSONL file, or a run directory whose generate
    stage finished) as AlpacaEval `model_outputs.json`: by default `<run>/alpaca_eval/<generator>/` for a run,
    `alpaca_eval/<generator>/` here for a file; `out` names the file. `generator` None: the run's default name.
    Returns what `export.json` records beside it (generator, checkpoint, records, left_out_multi_turn, files)."""
    path, run = Path(generations), None
    if path.is_dir():
        run = RunDir(path)
        run.require_finished("generate")
        path = run.generations
    if not path.is_file():
        raise DataError(
            path, None, "not found", "give a generations JSONL file or a run directory whose generate stage finished"
        )
    rows = read_generations(path)  # each row checked for the fields read below, a bad one named by its line
    system = choose_checkpoint(rows, checkpoint, path)
    if generator is None:
        if run is None or not run.config.is_file():
            raise DataError(path, None, "has no run config.json to name the model after", "give --generator NAME")
        model = read_json(run.config, keys={"model": dict})["model"]
        require_fields(model, {"name": str}, run.config, "model", "give --generator NAME, or rerun the run's stages")
        generator = generator_name(model["name"], system)
    generator = check_generator(generator, path)
    records, left_out = alpaca_eval_records(rows, system, generator)
    check_alpaca_eval(records, path)
    if out:
        files = {**alpaca_eval_files(Path(out).parent), "outputs": Path(out)}
    else:
        files = run.alpaca_eval_export(generator) if run else alpaca_eval_files(Path("alpaca_eval") / generator)
    write_json(files["outputs"], records)
    summary = {
        "generator": generator,
        "checkpoint": system,
        "source": str(path),
        "records": len(records),
        "left_out_multi_turn": left_out,
    }
    write_json(files["export"], summary)
    return {**summary, "files": files}


def evaluate_alpaca_eval(files: dict[str, Path], generator: str) -> dict:
    """Run AlpacaEval 2 on `files["outputs"]` with alpaca_eval's own defaults (annotator, reference outputs,
    length-controlled win rate); its annotations and leaderboard.csv land beside the outputs, and our row is
    written to `files["leaderboard"]`. Returns that row."""
    try:
        import alpaca_eval
    except ImportError as e:
        raise MissingExtraError(f"alpaca_eval is not installed: {INSTALL}, then rerun with --evaluate") from e
    board, _ = alpaca_eval.evaluate(
        model_outputs=str(files["outputs"]),
        name=generator,
        output_path=str(files["outputs"].parent),
        is_return_instead_of_print=True,
        is_cache_leaderboard=False,  # never rewrite the leaderboard shipped inside the installed package
    )
    row = board.loc[generator]
    result = {
        "generator": generator,
        **{k: row[k].item() if hasattr(row[k], "item") else row[k] for k in LEADERBOARD_COLUMNS if k in row},
        "annotator": str(alpaca_eval.constants.DEFAULT_ANNOTATOR_CONFIG),
        "alpaca_eval_version": getattr(alpaca_eval, "__version__", None),
    }
    write_json(files["leaderboard"], result)
    return result
