"""What the notebooks call around their one `run_*` call: resolve the config, then show what a stage wrote."""
from __future__ import annotations

import json
from pathlib import Path

from .config import Config, load_config, load_resolved
from .rundir import read_jsonl_plain


def setup(config_path: str = "", profile: str = "demo", overrides: dict | None = None, run_dir: str = "") -> Config:
    """The pipeline passes `config_path` (its resolved config.json); interactive users give a profile,
    overrides and optionally an existing run directory to continue."""
    cfg = load_resolved(config_path) if config_path else load_config(profile, overrides=overrides or {})
    if run_dir:
        cfg.run_dir = str(Path(run_dir).resolve())
    return cfg


def datacard_tables(curate_dir: str | Path):
    """The data card as one pandas DataFrame per split (the paper's Table 1 for `train`)."""
    import pandas as pd

    card = json.loads((Path(curate_dir) / "datacard.json").read_text())
    return {split: pd.DataFrame(rows) for split, rows in card["splits"].items() if rows}


def training_summary(train_dir: str | Path) -> dict:
    """Loss per epoch (mean of its steps), held-out perplexity per epoch, throughput, checkpoints."""
    rows = read_jsonl_plain(Path(train_dir) / "metrics.jsonl")
    train = [r for r in rows if r["type"] == "train"]
    info = json.loads((Path(train_dir) / "train_info.json").read_text())
    per_epoch = info["steps_per_epoch"]
    epochs: dict[int, list[float]] = {}
    for r in train:
        epochs.setdefault((r["step"] - 1) // per_epoch + 1, []).append(r["loss"])
    return {
        "steps": len(train),
        "first_loss": train[0]["loss"] if train else None,
        "final_loss": train[-1]["loss"] if train else None,
        "loss_per_epoch": {e: sum(v) / len(v) for e, v in epochs.items()},
        "perplexity_per_epoch": {r["epoch"]: r["perplexity"] for r in rows if r["type"] == "eval"},
        "tokens_per_s": sum(r["tokens"] for r in train) / max(sum(r["tokens"] / r["tokens_per_s"] for r in train), 1e-9),
        "checkpoints": [c["name"] for c in json.loads((Path(train_dir) / "checkpoints.json").read_text())],
    }


def plot_training(train_dir: str | Path):
    """Training loss per step and held-out perplexity per epoch."""
    import matplotlib.pyplot as plt

    rows = read_jsonl_plain(Path(train_dir) / "metrics.jsonl")
    train = [r for r in rows if r["type"] == "train"]
    evals = [r for r in rows if r["type"] == "eval"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss (responses)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r["perplexity"] for r in evals], "o--", color="C1", label="held-out ppl")
        ax2.set_ylabel("held-out perplexity")
    fig.legend(loc="upper right")
    fig.tight_layout()
    return fig


def generations_table(generate_dir: str | Path, width: int = 400):
    """Responses side by side: one row per prompt, one column per checkpoint (first sample, truncated)."""
    import pandas as pd

    rows = [r for r in read_jsonl_plain(Path(generate_dir) / "generations.jsonl") if r["sample"] == 0]
    df = pd.DataFrame([{"prompt": r["messages"][-1]["content"][:width], "checkpoint": r["checkpoint"],
                        "response": r["response"][:width]} for r in rows])
    return df.pivot(index="prompt", columns="checkpoint", values="response")
