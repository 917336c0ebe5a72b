"""Command line: `python -m lima_repro {run,config,curate,train,select,generate,judge,ablations,figures} ...`.

    python -m lima_repro run --profile demo                  # the whole pipeline (papermill notebooks)
    python -m lima_repro config --profile paper              # the fully resolved configuration as JSON
    python -m lima_repro train --run-dir runs/X              # one stage, e.g. under `accelerate launch`
    python -m lima_repro figures runs/X runs/Y --out figures # every figure from finished runs, beside the paper
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from .config import ConfigError, list_profiles, load_config, load_resolved, parse_set, to_dict
from .runs import new_run_dir

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


def _entry(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", help=f"one of {', '.join(list_profiles())} (default: demo)")
    p.add_argument("--config", action="append", default=[], metavar="YAML", help="user YAML overriding the profile")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field, e.g. train.epochs=2")
    p.add_argument("--run-dir", default=None, help="run directory (default: a new one under runs/)")


def _resolve(args):
    if getattr(args, "config_json", None):
        cfg = load_resolved(args.config_json)
    else:
        cfg = load_config(args.profile, files=args.config, overrides=parse_set(args.set))
    if args.run_dir:
        cfg.run_dir = args.run_dir
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lima_repro", description="LIMA reproduction pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the pipeline notebooks in order (papermill)")
    _config_args(p)
    p = sub.add_parser("config", help="print the resolved configuration as JSON")
    _config_args(p)
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run the {stage} stage alone")
        _config_args(p)
        p.add_argument("--config-json", default=None, help="a resolved config.json (e.g. from a run directory)")
    p = sub.add_parser("figures", help="redraw every figure beside the paper's values from finished run directories")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished runs; the first holding a figure's inputs is used")
    p.add_argument("--out", default=None, help="output folder (default: <first RUN_DIR>/figures)")
    args = parser.parse_args(argv)
    if args.command == "figures":
        out = args.out or f"{args.run_dirs[0]}/figures"
        summary = _entry(DRAW_ALL)(args.run_dirs, out)
        for name, rec in summary["figures"].items():
            print(f"{name}: {rec['status']}{' (' + rec['reason'] + ')' if rec['reason'] else ''}")
        print(f"figures output: {out}")
        return 0
    try:
        cfg = _resolve(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if args.command == "run":
        print(f"run directory: {_entry(PIPELINE)(cfg)}")
        return 0
    if not cfg.run_dir:
        if args.command != "curate":
            print(f"config error: `{args.command}` reads the earlier stages of a run: give --run-dir", file=sys.stderr)
            return 2
        print(f"new run directory: {new_run_dir(cfg).root}")
    out = _entry(STAGES[args.command])(cfg)
    print(f"{args.command} output: {out}")
    return 0
