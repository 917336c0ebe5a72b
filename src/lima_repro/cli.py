"""Command line: `python -m lima_repro {run,config,plan,curate,...,figures,alpaca-eval,mt-bench} ...`.

    python -m lima_repro run --profile demo                  # the whole pipeline (papermill notebooks)
    python -m lima_repro config --profile paper              # the fully resolved configuration as JSON
    python -m lima_repro train --run-dir runs/X              # one stage, e.g. under `accelerate launch`
    python -m lima_repro figures runs/X runs/Y --out figures # every figure from finished runs, beside the paper

A user error (a bad config value, a malformed input file, a wrong argument: `USER_ERRORS`) prints one line to
stderr saying what, where and the fix, and exits with status 2; `--debug` anywhere on the command line (or
LIMA_REPRO_DEBUG=1) shows its traceback instead. A fault of the file system the user gave (a symlink loop, a
dangling symlink, a read-only folder, a full disk: `files.path_fault`) is a user error too. Nothing that looks like
an API key is echoed in that line or in what a command prints (`redaction.redact`). Ctrl-C prints one line and
exits with status 130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from .config import list_profiles, load_config, load_resolved, parse_set, to_dict
from .config.base import UserError, hide_keys, looks_like_key
from .files import path_fault
from .redaction import redact, redact_value
from .runs import RunDir, new_run_dir

# stage name -> "module:function"; each takes a Config and returns its output directory. Imported by name when
# the command runs, so `config` and `--help` answer without loading torch and transformers.
STAGES = {
    "curate": "lima_repro.curate:run_curate",
    "train": "lima_repro.train:run_train",
    "select": "lima_repro.select_checkpoint:run_select",
    "generate": "lima_repro.generate:run_generate",
    "judge": "lima_repro.judge:run_judge",
    "ablations": "lima_repro.ablations:run_ablations",
}
PIPELINE = "lima_repro.pipeline:run_pipeline"
FIGURES, FIGURES_SUMMARY = "lima_repro.figures:run_figures", "lima_repro.figures:SUMMARY"
EXPORT_ALPACA_EVAL = "lima_repro.export:export_alpaca_eval"
EVALUATE_ALPACA_EVAL = "lima_repro.export:evaluate_alpaca_eval"
MT_BENCH = "lima_repro.mt_bench:run_mt_bench"

DEBUG_ENV = "LIMA_REPRO_DEBUG"
# The one place that says what counts as the user's error rather than the package's: UserError (ConfigError,
# data.DataError and the usage errors below derive from it) and the operating system's "that path is wrong" errors.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class UsageError(UserError):
    """A command-line argument argparse rejects."""


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a usage error as one line (a UsageError) rather than the usage text and a message;
    subcommand parsers are made from this class too (argparse uses the parent's class)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def error_line(e: BaseException) -> str:
    """The one line the CLI prints for a user error."""
    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror}; check the path"
    else:
        text = str(e) or type(e).__name__
    kind = {"ConfigError": "config error", "DataError": "input error"}.get(type(e).__name__, "error")
    return f"{kind}: {' '.join(text.split())}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error becomes one line on stderr and status 2 (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    try:
        return _main([a for a in argv if a != "--debug"])
    except (*USER_ERRORS, OSError) as e:
        # a missing path under a dangling symlink is named by the link; an OSError outside USER_ERRORS is a bug
        # unless it is a fault of the file system the user gave
        fault = e if not isinstance(e, OSError) else path_fault(e) or (e if isinstance(e, USER_ERRORS) else None)
        if debug or fault is None:
            raise
        line = error_line(fault)
        # a key pasted as an argument (a path, a profile, a --set item) is not echoed back: argparse's messages and
        # the checks quote what was typed, and stderr ends up in logs and CI output
        print(hide_keys(line) if any(looks_like_key(a) for a in argv) else redact(line), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        # 128 + SIGINT, as a shell reports it; what finished is on disk (the judge caches every answer it received)
        print("interrupted (Ctrl-C): what finished is kept; rerun the same command to resume", file=sys.stderr)
        return 130


def _entry(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help=f"one of {', '.join(list_profiles())} (default: with --run-dir, that run's config.json; else demo)",
    )
    p.add_argument("--config", action="append", default=[], metavar="YAML", help="user YAML overriding the profile")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one field, e.g. train.epochs=2"
    )
    p.add_argument("--run-dir", default=None, help="run directory (default: a new one under runs/)")


def _resolve(args):
    run_config = RunDir(args.run_dir).config if args.run_dir else None
    if getattr(args, "config_json", None):
        cfg = load_resolved(args.config_json, parse_set(args.set))
    elif run_config and run_config.is_file() and args.profile is None:  # a run directory's config is its default
        if args.config:
            raise UsageError(
                f"--config starts from a profile, but --run-dir {args.run_dir} has its own config.json; "
                "change it with --set KEY=VALUE, or give --profile to start from a profile"
            )
        cfg = load_resolved(run_config, parse_set(args.set))
        print(f"config: {run_config} (the run's own; --profile NAME starts from a profile instead)", file=sys.stderr)
    else:
        cfg = load_config(args.profile or "demo", files=args.config, overrides=parse_set(args.set))
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if getattr(args, "condition", None):
        cfg.ablations.only = args.condition
        cfg.ablations.check()  # an unknown name is a config error before anything runs
    return cfg


def _figures(args) -> int:
    """`figures [--run-dir RUN] [RUN ...]`: the first run's own figure settings (its config.json, as every stage
    reads it), the other runs after it; never copies to figures.copy_to unless --set names it."""
    runs = [*([args.run_dir] if args.run_dir else []), *args.run_dirs]
    if not runs:
        raise UsageError("figures needs a finished run: give RUN_DIR or --run-dir (e.g. runs/<run>)")
    missing = [r for r in runs if not os.path.isdir(r)]
    if missing:
        raise UsageError(f"figures: {missing[0]} is not a run directory (no such folder); give a finished run's folder")
    args.run_dir = runs[0]
    cfg = _resolve(args)
    sets = parse_set(args.set)
    if len(runs) > 1 or "figures.runs" not in sets:
        cfg.figures.runs = runs[1:]
    if "figures.copy_to" not in sets:  # a run's own copy_to (the demo's: the repository's figures/) is for its pipeline
        cfg.figures.copy_to = None
    out = _entry(FIGURES)(cfg, out=args.out)
    summary = json.loads((out / _entry(FIGURES_SUMMARY)).read_text())
    for name, rec in summary["figures"].items():
        print(f"{name}: {rec['status']}{' (' + rec['reason'] + ')' if rec['reason'] else ''}")
    print(f"figures output: {out}")
    return 0


def _main(argv: list[str]) -> int:
    parser = _Parser(prog="python -m lima_repro", description="LIMA reproduction pipeline")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a user error (anywhere on the line; or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the pipeline notebooks in order (papermill)")
    _config_args(p)
    p.add_argument(
        "--launcher",
        default=None,
        metavar="CMD",
        help="train as a separate launched command instead of the 02_train notebook: `accelerate` (FSDP, the packaged "
        "configs/accelerate/fsdp.yaml, one process per visible GPU) or a command prefix, e.g. 'torchrun "
        "--nproc_per_node 8'; the launched processes refuse to start unless they form one job of that many",
    )
    p = sub.add_parser("config", help="print the resolved configuration as JSON")
    _config_args(p)
    p = sub.add_parser("plan", help="GPUs, memory per GPU, tokens and hours each stage needs (before renting GPUs)")
    _config_args(p)
    for flag, default, what in (
        ("--gpus", 8, "GPUs"),
        ("--gpu-memory", 80.0, "GB per GPU (H100 80, H200 141)"),
        ("--mfu", 0.40, "training MFU"),
        ("--gen-mfu", 0.10, "generation MFU (memory-bound)"),
        ("--peak-tflops", 989.0, "peak bf16 TFLOP/s per GPU (H100/H200 dense)"),
    ):
        p.add_argument(flag, type=type(default), default=default, help=f"{what} (default: {default})")
    p.add_argument("--no-checkpointing", action="store_true", help="plan training without activation checkpointing")
    p.add_argument(
        "--perf",
        metavar="FILE",
        help="training MFU from benchmarks/gpu_perf_check.py's perf.jsonl (the best variant, closest model); "
        "replaces --mfu",
    )
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage alone")
        _config_args(p)
        p.add_argument("--config-json", default=None, help="a resolved config.json (e.g. from a run directory)")
        if stage == "ablations":
            p.add_argument(
                "--condition",
                action="append",
                default=None,
                metavar="NAME",
                help="run only this condition (repeatable): one job per condition, the summary merges them",
            )
    p = sub.add_parser("figures", help="redraw every figure beside the paper's values from finished run directories")
    _config_args(p)
    p.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="finished runs (after --run-dir, if given); the first holding a figure's inputs is used; the first's "
        "config.json gives the figure settings (formats, dpi, baseline names) unless --profile or --set says otherwise",
    )
    p.add_argument("--out", default=None, help="output folder (default: <first RUN_DIR>/figures)")
    p = sub.add_parser("alpaca-eval", help="a run's answers as AlpacaEval model_outputs.json; --evaluate: AlpacaEval 2")
    p.add_argument("generations", metavar="GENERATIONS", help="a run directory, or a generations.jsonl")
    p.add_argument(
        "--generator", default=None, help="the model's leaderboard name (default: lima-<model>-<checkpoint>)"
    )
    p.add_argument("--checkpoint", default=None, help="the file's system to export (default: the one besides base)")
    p.add_argument(
        "--out", default=None, help="output file (default: <run>/alpaca_eval/<generator>/model_outputs.json)"
    )
    p.add_argument("--evaluate", action="store_true", help="run alpaca_eval's evaluation (the alpaca-eval extra)")
    p = sub.add_parser("mt-bench", help="MT-Bench as FastChat scores it: two turns, graded 1-10 by the run's judge")
    p.add_argument("run_dir", metavar="RUN", help="a run directory with checkpoints")
    p.add_argument("--questions", required=True, help="FastChat's data/mt_bench/question.jsonl")
    p.add_argument("--judge-prompts", required=True, help="FastChat's data/judge_prompts.jsonl")
    p.add_argument("--reference", required=True, help="FastChat's data/mt_bench/reference_answer/gpt-4.jsonl")
    p.add_argument("--checkpoint", default=None, help="`base` or a checkpoint's name (default: the last)")
    p.add_argument("--model-id", default=None, help="FastChat's model id (default: lima-<model>-<checkpoint>)")
    p.add_argument("--no-judge", action="store_true", help="answer only (for FastChat's own gen_judgment.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. judge.model=gpt-4")
    args = parser.parse_args(argv)
    if args.command == "alpaca-eval":
        done = _entry(EXPORT_ALPACA_EVAL)(args.generations, args.generator, args.out, args.checkpoint)
        out, left_out = done["files"]["outputs"], done["left_out_multi_turn"]
        print(f"AlpacaEval model_outputs: {out} ({done['records']} prompts of {done['checkpoint']})")
        if left_out:
            print(f"left out {len(left_out)} multi-turn prompts (AlpacaEval judges single instructions): {left_out}")
        if not args.evaluate:
            print(f"next: alpaca_eval --model_outputs {out}  (or rerun with --evaluate)")
            return 0
        row = _entry(EVALUATE_ALPACA_EVAL)(done["files"], done["generator"])
        print(f"AlpacaEval 2: LC win rate {row.get('length_controlled_winrate')}, win rate {row.get('win_rate')} ")
        print(f"leaderboard row: {done['files']['leaderboard']}")
        return 0
    if args.command == "mt-bench":
        cfg = load_resolved(RunDir(args.run_dir).config, parse_set(args.set))
        cfg.run_dir = args.run_dir
        out = _entry(MT_BENCH)(
            cfg, args.questions, args.judge_prompts, args.reference, args.checkpoint, args.model_id, not args.no_judge
        )
        print(f"mt-bench output: {out}")
        return 0
    if args.command == "figures":
        return _figures(args)
    cfg = _resolve(args)
    if args.command == "config":
        print(json.dumps(redact_value(to_dict(cfg)), indent=2))
        return 0
    if args.command == "plan":
        hw = _entry("lima_repro.plan:Hardware")(
            args.gpus, args.gpu_memory, args.mfu, args.gen_mfu, args.peak_tflops, not args.no_checkpointing
        )
        print(_entry("lima_repro.plan:run_plan")(cfg, hw, args.perf))
        return 0
    if args.command == "run":
        print(f"run directory: {_entry(PIPELINE)(cfg, launcher=args.launcher)}")
        return 0
    if not cfg.run_dir:
        if args.command != "curate":
            raise UsageError(f"`{args.command}` reads the earlier stages of a run: give --run-dir (the run's folder)")
        print(f"new run directory: {new_run_dir(cfg).root}")
    out = _entry(STAGES[args.command])(cfg)
    print(f"{args.command} output: {out}")
    return 0
