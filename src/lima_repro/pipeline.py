"""The pipeline: execute the stage notebooks in order with papermill into one run directory.

`<run_dir>/config.json` is the resolved configuration every notebook reads (its absolute path is the notebooks'
`config_path`, so an executed notebook re-runs from its own folder); `<run_dir>/notebooks/` holds the executed
notebooks, with their text progress bars; `<run_dir>/manifest.json` records git commit, package versions, input
hashes, seed, device, the working directory and the wall time of each stage. The terminal shows the run directory
first, then each notebook's output as it comes. With `generate.checkpoints: selected`, the select notebook runs
before generation (LIMA sec. 3: the checkpoint is chosen on the dev set).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import papermill as pm

from . import data
from .config import Config, to_dict
from .files import read_json, write_json
from .provenance import provenance
from .redaction import redact_value
from .runs import RunDir, new_run_dir

SELECT_NOTEBOOK, GENERATE_NOTEBOOK, TRAIN_NOTEBOOK = "02b_select", "03_generate", "02_train"
# `run --launcher accelerate`: training as its own multi-process command (FSDP config: docs/scale.md)
ACCELERATE = "accelerate launch --config_file configs/accelerate/fsdp.yaml"
# the kernel's own log at errors only: its one warning (local TCP without encryption, each notebook) reads as a fault
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def notebooks_dir() -> Path:
    """The repository's notebooks/ (editable install), or $LIMA_REPRO_NOTEBOOKS, or ./notebooks."""
    candidates = [
        os.environ.get("LIMA_REPRO_NOTEBOOKS"),
        Path(__file__).resolve().parents[2] / "notebooks",
        Path.cwd() / "notebooks",
    ]
    for c in candidates:
        if c and (Path(c) / "01_curate.ipynb").exists():
            return Path(c)
    raise FileNotFoundError(
        "cannot find the notebooks/ folder: run from the repository root or set LIMA_REPRO_NOTEBOOKS"
    )


def notebook_order(cfg: Config) -> list[str]:
    """`cfg.notebooks`, with the select notebook before generation when generation uses the selected checkpoint."""
    names = list(cfg.notebooks)
    if cfg.generate.checkpoints == "selected" and SELECT_NOTEBOOK not in names and GENERATE_NOTEBOOK in names:
        names.insert(names.index(GENERATE_NOTEBOOK), SELECT_NOTEBOOK)
    return names


def train_command(launcher: str, config_path: Path) -> list[str]:
    """The command that trains under `launcher` (`accelerate` = ACCELERATE, or any prefix such as `torchrun
    --nproc_per_node 8` or `accelerate launch --config_file X`): the train stage of the run's config.json."""
    prefix = shlex.split(ACCELERATE if launcher == "accelerate" else launcher)
    return [*prefix, "-m", "lima_repro", "train", "--config-json", str(config_path)]


def run_pipeline(cfg: Config, kernel_name: str = "python3", launcher: str | None = None) -> Path:
    """Run every notebook of `notebook_order(cfg)` in order; returns the run directory. With `launcher`, training
    runs as a separate launched command (`train_command`: several processes, GPUs or nodes) instead of 02_train."""
    run = RunDir(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run.root.resolve())
    config_path = write_json(run.config, to_dict(cfg)).resolve()
    say(f"run directory: {run.root}")
    c = cfg.curate
    inputs = [data.resolve_path(s) for s in (*c.train_files, *c.dev_files, *c.test_files) if not data.is_hub(s)]
    manifest = {
        "profile": cfg.profile,
        "started": datetime.now(timezone.utc).isoformat(),
        "workdir": os.getcwd(),
        **provenance(cfg.seed, inputs),
        "stages": {},
        "status": "running",
    }
    write_json(run.manifest, manifest)
    t_all = time.time()
    src = notebooks_dir()
    run.notebooks.mkdir(exist_ok=True)
    names = notebook_order(cfg)
    say(f"{len(names)} notebooks: {' '.join(names)}; executed copies in {run.notebooks}")
    for i, name in enumerate(names, 1):
        t0 = time.time()
        say(f"[{i}/{len(names)}] {name} started")
        try:
            if launcher and name == TRAIN_NOTEBOOK:
                cmd = train_command(launcher, config_path)
                say(f"launching: {shlex.join(cmd)}")
                manifest["stages"][name] = {"launched": shlex.join(cmd)}
                subprocess.run(cmd, check=True)
                manifest["stages"][name].update(wall_time_s=round(time.time() - t0, 2), status="ok")
                write_json(run.manifest, manifest)
                say(f"[{i}/{len(names)}] {name} done in {time.time() - t0:.0f} s")
                continue
            # the notebooks' output (progress bars included) streams to this terminal as it comes
            # config_path is the one parameter: papermill writes every parameter's value into the executed notebook
            try:
                pm.execute_notebook(
                    str(src / f"{name}.ipynb"),
                    str(run.notebooks / f"{name}.ipynb"),
                    parameters={"config_path": str(config_path)},
                    kernel_name=kernel_name,
                    cwd=os.getcwd(),
                    progress_bar=False,
                    stdout_file=sys.stdout,
                    stderr_file=sys.stderr,
                    extra_arguments=KERNEL_ARGUMENTS,
                )
            finally:
                scrub_notebook(run.notebooks / f"{name}.ipynb")
        except Exception as e:
            manifest["stages"][name] = {
                "wall_time_s": round(time.time() - t0, 2),
                "status": f"failed: {type(e).__name__}",
            }
            manifest["status"] = f"failed in {name}"
            write_json(run.manifest, manifest)
            say(f"[{i}/{len(names)}] {name} FAILED after {time.time() - t0:.0f} s: {type(e).__name__}")
            raise
        manifest["stages"][name] = {"wall_time_s": round(time.time() - t0, 2), "status": "ok"}
        write_json(run.manifest, manifest)
        say(f"[{i}/{len(names)}] {name} done in {time.time() - t0:.0f} s")
    manifest["status"] = "ok"
    manifest["wall_time_s"] = round(time.time() - t_all, 2)
    write_json(run.manifest, manifest)
    say(f"pipeline done in {manifest['wall_time_s']:.0f} s: {run.root}")
    return run.root


def scrub_notebook(path: Path) -> None:
    """Rewrite an executed notebook without anything that looks like a key (`redaction`): papermill saved its
    parameters (cell and metadata) and every output as they came, a key printed by a cell included."""
    if path.is_file():
        nb = read_json(path)
        if redact_value(nb) != nb:
            write_json(path, nb)  # the writer redacts


def say(line: str) -> None:
    """A pipeline line on the terminal, set apart from the notebooks' own output."""
    print(f"\n[lima_repro] {line}", file=sys.stderr, flush=True)
