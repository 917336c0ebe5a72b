"""Command line: `python -m lima_repro {run,config,curate,train,select,generate,judge,ablations,figures} ...`.

    python -m lima_repro run --profile demo                  # the whole pipeline (papermill notebooks)
    python -m lima_repro config --profile paper              # the fully resolved configuration as JSON
    python -m lima_repro train --run-dir runs/X              # one stage, e.g. under `accelerate launch`
    python -m lima_repro figures runs/X runs/Y --out figures # every figure from finished runs, beside the paper

A user error (a bad config value, a malformed input file, a wrong argument: `USER_ERRORS`) prints one line to
stderr saying what, where and the fix, and exits with status 2; `--debug` anywhere on the command line (or
LIMA_REPRO_DEBUG=1) shows its traceback instead. Nothing on the command line that looks like an API key is echoed
in that line. Ctrl-C prints one line and exits with status 130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from .config import list_profiles, load_config, load_resolved, parse_set, to_dict
from .config.base import UserError, hide_keys, looks_like_key
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
DRAW_ALL = "lima_repro.figures:draw_all"
EXPORT_ALPACA_EVAL = "lima_repro.export:export_alpaca_eval"

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
    except USER_ERRORS as e:
        if debug:
            raise
        line = error_line(e)
        # a key pasted as an argument (a path, a profile, a --set item) is not echoed back: argparse's messages and
        # the checks quote what was typed, and stderr ends up in logs and CI output
        print(hide_keys(line) if any(looks_like_key(a) for a in argv) else line, file=sys.stderr)
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
        help="train as a separate launched command instead of the 02_train notebook: `accelerate` (FSDP, "
        "configs/accelerate/fsdp.yaml) or a command prefix, e.g. 'torchrun --nproc_per_node 8'",
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
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="finished runs; the first holding a figure's inputs is used"
    )
    p.add_argument("--out", default=None, help="output folder (default: <first RUN_DIR>/figures)")
    p = sub.add_parser("alpaca-eval", help="a generations file (or a run's) as AlpacaEval model_outputs.json")
    p.add_argument("generations", metavar="GENERATIONS", help="a generations.jsonl, or a run directory")
    p.add_argument("--generator", required=True, help="the model's name in AlpacaEval's leaderboard")
    p.add_argument("--checkpoint", default=None, help="the file's system to export (default: the one besides base)")
    p.add_argument("--out", default=None, help="output file (default: alpaca_eval/<generator>/model_outputs.json)")
    args = parser.parse_args(argv)
    if args.command == "alpaca-eval":
        out = _entry(EXPORT_ALPACA_EVAL)(args.generations, args.generator, args.out, args.checkpoint)
        print(f"AlpacaEval model_outputs: {out}  (next: alpaca_eval --model_outputs {out})")
        return 0
    if args.command == "figures":
        out = args.out or f"{args.run_dirs[0]}/figures"
        summary = _entry(DRAW_ALL)(args.run_dirs, out)
        for name, rec in summary["figures"].items():
            print(f"{name}: {rec['status']}{' (' + rec['reason'] + ')' if rec['reason'] else ''}")
        print(f"figures output: {out}")
        return 0
    cfg = _resolve(args)
    if args.command == "config":
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if args.command == "plan":
        hw = _entry("lima_repro.plan:Hardware")(
            args.gpus, args.gpu_memory, args.mfu, args.gen_mfu, args.peak_tflops, not args.no_checkpointing
        )
        print(_entry("lima_repro.plan:run_plan")(cfg, hw))
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
