"""`Stage`: the life of one stage's folder in a run directory (`runs.RunDir` names the folder and its files).

A stage's manifest.json says "running" before the stage writes anything else, then "ok" or "failed: ..." with its
provenance, so a killed or rerunning stage never looks finished (`RunDir.require_finished` refuses it).

One writer per stage folder: the stage holds an exclusive lock on it (flock, so a killed holder frees it), and a
second process on the same folder stops at once. The ranks of one distributed job are one writer: rank 0 holds the
lock and writes the manifest. A process that was launched as one of N (`WORLD_SIZE` from torchrun or `accelerate
launch`, `LIMA_REPRO_WORLD_SIZE` from `run --launcher`) but finds itself in a job of another size refuses to start:
N copies that each believe they are alone would each write the whole folder.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .config import Config, ConfigError, to_dict
from .config.base import UserError
from .config.judge import key_name_problem
from .files import path_faults, write_json
from .provenance import provenance, seed_everything
from .runs import RunDir

# set by `pipeline.train_command`'s launch: the processes the launcher was asked to start
WORLD_SIZE_ENV = "LIMA_REPRO_WORLD_SIZE"


class StageBusy(UserError):
    """Another process is writing the stage's folder, or this process is not the job it was launched as."""


def job_rank_and_size() -> tuple[int, int]:
    """This process's rank and the world size of the distributed job it belongs to ((0, 1) when it is alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_world_size(stage: str) -> None:
    """Refuse a process that was launched as one of N but finds itself in a job of another size."""
    _, size = job_rank_and_size()
    for var in (WORLD_SIZE_ENV, "WORLD_SIZE"):
        expected = os.environ.get(var, "").strip()
        if expected and int(expected) != size:
            raise StageBusy(
                f"{stage}: launched as {expected} processes ({var}={expected}) but this process is in a job of "
                f"{size}: the processes never joined one distributed group (without GPUs set ACCELERATE_USE_CPU=true;"
                " accelerate's FSDP needs GPUs: on CPU launch with torchrun, docs/scale.md)"
            )


class StageLock:
    """An exclusive flock on the stage's lock file, holding the holder's pid; removed on release."""

    def __init__(self, path: Path, stage: str):
        self.path, self.stage, self.fd = path, stage, None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StageBusy(
                    f"{self.path.parent} is being written by process {holder} (another `{self.stage}` on this run): "
                    "wait for it to finish or stop it, or give this one another --run-dir"
                ) from None
            # the holder before us may have removed the file after we opened it: then ours is a stale inode
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter that opened it retries on a fresh file
            os.close(self.fd)
            self.fd = None


class Stage:
    """Context manager for one stage's folder: manifest.json says "running" before anything else is written (so
    a rerun's folder never looks finished while it is being replaced), then config.json; at the end manifest.json
    says "ok" or "failed: ..." with the provenance. A killed stage stays "running", which readers refuse. The
    folder is locked for the stage's life (rank 0 of a distributed job; the module docstring says why).

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
        self.lock = StageLock(self.run.stage_lock(name), name)

    def __enter__(self) -> Stage:
        problem = key_name_problem(self.cfg.judge.api_key_env)
        if problem:  # config.json must never hold a pasted key (configs built in Python skip Config.check)
            raise ConfigError(problem)
        check_world_size(self.name)
        self.writer = job_rank_and_size()[0] == 0
        self.t0 = time.time()
        self.started = datetime.now(timezone.utc).isoformat()
        if self.writer:
            self.lock.acquire()
            write_json(
                self.run.stage_manifest(self.name),
                {"stage": self.name, "status": "running", "started": self.started, "pid": os.getpid()},
            )
            write_json(self.out / "config.json", to_dict(self.cfg))
        seed_everything(self.cfg.seed)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.writer:
            return
        manifest = {
            "stage": self.name,
            "status": "ok" if exc_type is None else f"failed: {exc_type.__name__}: {exc}",
            "started": self.started,
            "wall_time_s": round(time.time() - self.t0, 3),
            **provenance(self.cfg.seed, self.inputs),
            **self.extra,
        }
        try:
            write_json(self.run.stage_manifest(self.name), manifest)
        finally:
            self.lock.release()
