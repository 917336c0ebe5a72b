"""`Stage`: the life of one stage's folder in a run directory (`runs.RunDir` names the folder and its files).

A stage's manifest.json says "running" before the stage writes anything else, then "ok" or "failed: ..." with its
provenance, so a killed or rerunning stage never looks finished (`RunDir.require_finished` refuses it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, to_dict
from .config.judge import key_name_problem
from .files import path_faults, write_json
from .provenance import provenance, seed_everything
from .runs import RunDir


class Stage:
    """Context manager for one stage's folder: manifest.json says "running" before anything else is written (so
    a rerun's folder never looks finished while it is being replaced), then config.json; at the end manifest.json
    says "ok" or "failed: ..." with the provenance. A killed stage stays "running", which readers refuse.

    >>> with Stage(cfg, "train", inputs=[data_file]) as st:
    ...     st.out  # Path of <run_dir>/train;  st.run: the RunDir
    """

    def __init__(self, cfg: Config, name: str, inputs: Iterable[str | Path] = ()):
        self.cfg, self.name, self.inputs = cfg, name, [Path(p) for p in inputs]
        self.run = RunDir.of(cfg)
        self.out = self.run.stage(name)
        with path_faults():  # a symlink loop, a dangling link, a read-only run directory: one line, not a traceback
            self.out.mkdir(parents=True, exist_ok=True)
        self.extra: dict[str, Any] = {}

    def __enter__(self) -> Stage:
        problem = key_name_problem(self.cfg.judge.api_key_env)
        if problem:  # config.json must never hold a pasted key (configs built in Python skip Config.check)
            raise ConfigError(problem)
        self.t0 = time.time()
        self.started = datetime.now(timezone.utc).isoformat()
        write_json(
            self.run.stage_manifest(self.name),
            {"stage": self.name, "status": "running", "started": self.started, "pid": os.getpid()},
        )
        seed_everything(self.cfg.seed)
        write_json(self.out / "config.json", to_dict(self.cfg))
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
        write_json(self.run.stage_manifest(self.name), manifest)
