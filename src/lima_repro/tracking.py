"""Experiment trackers for the train stage (`train.report_to`), through accelerate: every metrics row goes to
metrics.jsonl (the record every notebook and figure reads) and then to the configured trackers (TensorBoard by
default when it is installed; W&B, MLflow, ... when named)."""

from __future__ import annotations

from pathlib import Path

from accelerate.tracking import get_available_trackers

from .config import Config, ConfigError, to_dict
from .files import append_jsonl


def tracker_names(report_to: str) -> list[str]:
    """accelerate tracker names for `train.report_to` (see its docstring); a named tracker that is not installed
    is an error here, where accelerate would skip it without a word."""
    available = {str(x) for x in get_available_trackers()}
    if report_to == "auto":
        return ["tensorboard"] if "tensorboard" in available else []
    names = [] if report_to == "none" else [n.strip() for n in report_to.split(",") if n.strip()]
    missing = [n for n in names if n != "all" and n not in available]
    if missing:
        raise ConfigError(
            f"train.report_to names {', '.join(missing)}, not installed here (available: "
            f"{', '.join(sorted(available)) or 'none'}): pip install it, or set train.report_to to auto "
            "(TensorBoard when installed) or none"
        )
    return names


def tracker_config(cfg: Config) -> dict:
    """The hyperparameters a tracker records: the train section's scalar values and the model's name."""
    train = {f"train.{k}": v for k, v in to_dict(cfg)["train"].items() if isinstance(v, (bool, int, float, str))}
    return {"model.name": cfg.model.name, **train}


def record(acc, metrics_path: Path, row: dict) -> None:
    """A metrics row: metrics.jsonl (the record), then the trackers as `train/loss`, `eval/perplexity`, ..."""
    append_jsonl(metrics_path, row)
    acc.log(
        {f"{row['type']}/{k}": v for k, v in row.items() if k not in ("type", "step") and isinstance(v, (int, float))},
        step=row["step"],
    )
