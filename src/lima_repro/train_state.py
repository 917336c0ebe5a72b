"""The training loop's state: what it carries from step to step (`TrainState`, as litgpt's `state` dict) and how
that is saved to `train/state/` and resumed from it after a kill (`save_state`, `resume`)."""

from __future__ import annotations

import logging
import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from .config import TrainConfig
from .files import folder_written_whole, read_json, read_jsonl_plain, write_json, write_jsonl
from .models import read_checkpoint_info
from .runs import PROGRESS, RunDir


@dataclass
class TrainState:
    """The `acc.prepare`d loss model, optimizer and schedule, the encoded training set (padded with `pad_id`), the
    plan (`per_epoch` steps an epoch, `total` in all) and `step`, the optimizer steps taken so far."""

    acc: Accelerator
    loss_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    t: TrainConfig
    train_set: list[dict]
    pad_id: int
    per_epoch: int
    total: int
    step: int = 0
    eval_attention: str | None = None
    """The attention implementation held-out evaluation uses (the model's own, when training uses a packed one);
    None = whatever the model has."""

    @property
    def epoch(self) -> int:
        """The epoch the last step belongs to (0 before the first step)."""
        return math.ceil(self.step / self.per_epoch)

    @property
    def done(self) -> bool:
        return self.step >= self.total


@contextmanager
def _quiet_tied_weights():
    """accelerate warns "Removed shared tensor {'lm.lm_head.weight'}" at every save of a model whose output head
    shares the embedding (Gemma): the copy is dropped on save and tied again on load, so the line only alarms."""
    log = logging.getLogger("accelerate.utils.other")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def save_state(state: TrainState, run: RunDir) -> None:
    """Resumable state (model, optimizer, scheduler, RNG) under state/. It is written whole into state.partial and
    marked complete by its progress.json (written last); the old state loses its mark before it is removed. So a
    kill at any point leaves one marked folder, and `resume` takes the newest marked one."""
    acc, tmp = state.acc, run.state_partial
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    with _quiet_tied_weights(), folder_written_whole(tmp, "the last complete state and every checkpoint are"):
        acc.save_state(str(tmp))
    if acc.is_main_process:
        write_json(tmp / PROGRESS, {"step": state.step})
        (run.state / PROGRESS).unlink(missing_ok=True)
        shutil.rmtree(run.state, ignore_errors=True)
        tmp.rename(run.state)
    acc.wait_for_everyone()


def resume(state: TrainState, run: RunDir) -> None:
    """Continue from the newest complete saved state (model, optimizer, registered scheduler, RNG; `state.step`):
    state/, or state.partial/ when a kill came between removing the old state and renaming the new one. Drop metric
    rows logged after that state; with no saved state, start over (and drop the old metrics). Checkpoints the earlier
    run left past the step training continues from go too, so a run with fewer epochs never lists (nor `generate`
    samples) an old run's `epoch-3` beside its own."""
    acc, metrics = state.acc, run.metrics
    marked = [d for d in (run.state, run.state_partial) if (d / PROGRESS).is_file()]
    newest = max(marked, key=lambda d: read_json(d / PROGRESS)["step"], default=None)
    if newest == run.state_partial and acc.is_main_process:
        shutil.rmtree(run.state, ignore_errors=True)
        newest.rename(run.state)
    acc.wait_for_everyone()
    if newest is None:
        if acc.is_main_process and metrics.exists():
            metrics.unlink()
        state.step = 0
    else:
        acc.load_state(str(run.state))
        state.step = read_json(run.state / PROGRESS)["step"]
        if acc.is_main_process and metrics.exists():
            write_jsonl(metrics, [r for r in read_jsonl_plain(metrics) if r["step"] <= state.step])
    if acc.is_main_process:
        _drop_checkpoints_after(run, state.step)
    acc.wait_for_everyone()


def _drop_checkpoints_after(run: RunDir, step: int) -> None:
    """Remove the checkpoints (and the index) an earlier run of this folder left past `step`."""
    stale = [d for d in run.checkpoints.iterdir() if d.is_dir()] if run.checkpoints.is_dir() else []
    stale = [d for d in stale if (read_checkpoint_info(d) or {"step": step + 1})["step"] > step]
    for d in stale:
        shutil.rmtree(d)
    if stale or step == 0:
        run.checkpoint_index.unlink(missing_ok=True)


def write_checkpoint_index(run: RunDir) -> None:
    """checkpoints.json: every finished checkpoint, oldest first, with its held-out perplexity."""
    evals = {r["step"]: r for r in run.read_metrics() if r["type"] == "eval"}
    found = [(d, info) for d in run.checkpoints.iterdir() if (info := read_checkpoint_info(d))]
    index = [
        {"name": d.name, "path": str(d), **info, "perplexity": evals.get(info["step"], {}).get("perplexity")}
        for d, info in sorted(found, key=lambda x: x[1]["step"])
    ]
    write_json(run.checkpoint_index, index)
