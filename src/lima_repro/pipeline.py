"""The pipeline: execute the stage notebooks in order with papermill into one run directory.

`<run_dir>/config.json` is the resolved configuration every notebook reads (its absolute path is the notebooks'
`config_path`, so an executed notebook re-runs from its own folder); `<run_dir>/notebooks/` holds the executed
notebooks, with their text progress bars; `<run_dir>/manifest.json` records git commit, package versions, input
hashes, seed, device, the working directory and the wall time of each stage. The terminal shows the run directory
first, then each notebook's output as it comes. With `generate.checkpoints: selected`, the select notebook runs
before generation (LIMA sec. 3: the checkpoint is chosen on the dev set).

`--launcher` trains as a launched command of several processes (`train_command`); the launched processes are told
how many they should be ($LIMA_REPRO_WORLD_SIZE) and refuse to start as anything else (`stage.check_world_size`).
The accelerate configs ship inside the package (`accelerate_config`), so a launch works from any folder.
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
import torch
import yaml

from . import data
from .config import Config, to_dict
from .config.base import UserError
from .files import read_json, write_json
from .provenance import provenance
from .redaction import environment_secrets, redact_value
from .runs import RunDir, new_run_dir
from .stage import WORLD_SIZE_ENV

SELECT_NOTEBOOK, GENERATE_NOTEBOOK, TRAIN_NOTEBOOK = "02b_select", "03_generate", "02_train"
# accelerate's launch configs (docs/scale.md), shipped with the package; configs/accelerate links here
ACCELERATE_CONFIGS = Path(__file__).resolve().parent / "accelerate_configs"
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


class LaunchError(UserError):
    """A `--launcher` that cannot start the training processes it asks for."""


def accelerate_config(name: str = "fsdp") -> Path:
    """The absolute path of a shipped accelerate config: `fsdp`, `fsdp-multinode` or `ddp`."""
    return ACCELERATE_CONFIGS / f"{name}.yaml"


def train_command(launcher: str, config_path: Path, gpus: int | None = None) -> list[str]:
    """The command that trains under `launcher`: the train stage of the run's config.json. `accelerate` is FSDP
    (`accelerate_config()`) with one process per visible GPU (`gpus`, default: torch's count; the config's own 8
    would start 8 processes whatever the machine has); anything else is a command prefix such as `torchrun
    --nproc_per_node 8` or `accelerate launch --config_file X`."""
    if launcher == "accelerate":
        gpus = torch.cuda.device_count() if gpus is None else gpus
        if gpus < 1:
            raise LaunchError(
                "--launcher accelerate: FSDP needs GPUs and none is visible (accelerate cannot shard on CPU); on CPU "
                "give --launcher 'torchrun --nproc_per_node N' (data parallel), see docs/scale.md"
            )
        prefix = ["accelerate", "launch", "--config_file", str(accelerate_config()), "--num_processes", str(gpus)]
    else:
        prefix = shlex.split(launcher)
    return [*prefix, "-m", "lima_repro", "train", "--config-json", str(config_path)]


def _flag(args: list[str], *names: str) -> str | None:
    """The value of the last of `names` in `args` (`--name V` or `--name=V`), or None."""
    value = None
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith(n + "="):
                value = a.split("=", 1)[1]
    return value


def launched_world_size(cmd: list[str]) -> int | None:
    """How many processes a launch command asks for: torchrun's `--nproc_per_node` x `--nnodes`, accelerate's
    `--num_processes` or its config file's `num_processes`; None when the command does not say (or is elastic)."""
    total = _flag(cmd, "--num_processes", "--num-processes")
    config = _flag(cmd, "--config_file", "--config-file")
    if total is None and config and Path(config).is_file():
        total = str(yaml.safe_load(Path(config).read_text()).get("num_processes", ""))
    per_node, nodes = _flag(cmd, "--nproc_per_node", "--nproc-per-node"), _flag(cmd, "--nnodes") or "1"
    if total is None and per_node is not None:
        return int(per_node) * int(nodes) if per_node.isdigit() and nodes.isdigit() else None
    return int(total) if total and total.isdigit() else None


def launch_env(cmd: list[str]) -> dict[str, str]:
    """The launched command's environment: how many processes to expect, and on a machine without GPUs CPU
    processes (else accelerate leaves each torchrun process on its own, each training alone)."""
    env = dict(os.environ)
    n = launched_world_size(cmd)
    if n is not None:
        env[WORLD_SIZE_ENV] = str(n)
    if not torch.cuda.is_available():
        env.setdefault("ACCELERATE_USE_CPU", "true")
    return env


def run_pipeline(cfg: Config, kernel_name: str = "python3", launcher: str | None = None) -> Path:
    """Run every notebook of `notebook_order(cfg)` in order; returns the run directory. With `launcher`, training
    runs as a separate launched command (`train_command`: several processes, GPUs or nodes) instead of 02_train."""
    run = RunDir(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run.root.resolve())
    config_path = write_json(run.config, to_dict(cfg)).resolve()
    launch = train_command(launcher, config_path) if launcher else None  # a launcher that cannot start: say so now
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
            if launch and name == TRAIN_NOTEBOOK:
                say(f"launching: {shlex.join(launch)}")
                manifest["stages"][name] = {"launched": shlex.join(launch)}
                subprocess.run(launch, check=True, env=launch_env(launch))
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


def scrub_notebook(path: Path, secrets: tuple[str, ...] = ()) -> None:
    """Rewrite an executed notebook without `secrets` and anything that looks like a key (`redaction`): papermill
    saved its parameters (cell and metadata) and every output as they came, a key printed by a cell included."""
    if path.is_file():
        nb = read_json(path)
        clean = redact_value(nb, secrets=environment_secrets() + secrets)
        if clean != nb:
            write_json(path, clean)  # the writer redacts the environment's secrets too


def say(line: str) -> None:
    """A pipeline line on the terminal, set apart from the notebooks' own output."""
    print(f"\n[lima_repro] {line}", file=sys.stderr, flush=True)
