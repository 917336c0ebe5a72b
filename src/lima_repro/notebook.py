"""What the notebooks call around their one `run_*` call: resolve the config, then show what a stage wrote.

Every helper takes the resolved `Config` and reads the run directory through `RunDir`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .config import Config, load_config, load_resolved
from .files import read_json, read_jsonl_plain
from .runs import RunDir, new_run_dir
from .sampling import stop_shares


def setup(config_path: str = "", profile: str = "demo", overrides: dict | None = None, run_dir: str = "") -> Config:
    """The pipeline passes `config_path` (its resolved config.json); interactive users give a profile,
    overrides and optionally an existing run directory to continue (else a new one is created and named)."""
    cfg = load_resolved(config_path) if config_path else load_config(profile, overrides=overrides or {})
    if run_dir:
        cfg.run_dir = str(Path(run_dir).resolve())
    if not cfg.run_dir:
        print(f"new run directory: {new_run_dir(cfg).root}")
    return cfg


def datacard_tables(cfg: Config) -> dict[str, pd.DataFrame]:
    """The data card as one pandas DataFrame per split (the paper's Table 1 for `train`)."""
    card = RunDir.of(cfg).read_datacard()
    return {split: pd.DataFrame(rows) for split, rows in card["splits"].items() if rows}


def curation_steps(cfg: Config) -> pd.DataFrame:
    """The data card's per-source steps as one DataFrame (source, step, kept, dropped): every rule's counts."""
    card = RunDir.of(cfg).read_datacard()
    rows = [{"source": src, **step} for src, info in card.get("sources", {}).items() for step in info["steps"]]
    rows += [{"source": src, "step": f"skipped: {why}", "kept": 0, "dropped": n}
             for src, info in card.get("sources", {}).items() for why, n in info["skipped"].items()]
    return pd.DataFrame(rows, columns=["source", "step", "kept", "dropped"])


def training_summary(cfg: Config) -> dict:
    """Loss per epoch (mean of its steps), held-out perplexity per epoch, throughput, checkpoints."""
    run = RunDir.of(cfg)
    rows = run.read_metrics()
    train = [r for r in rows if r["type"] == "train"]
    per_epoch = read_json(run.train_info)["steps_per_epoch"]
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
        "checkpoints": [c["name"] for c in run.list_checkpoints()],
    }


def plot_training(cfg: Config):
    """Training loss per step and held-out perplexity per epoch."""
    rows = RunDir.of(cfg).read_metrics()
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


def generations_table(cfg: Config, width: int = 400) -> pd.DataFrame:
    """Responses side by side: one row per prompt, one column per checkpoint (first sample, truncated)."""
    rows = [r for r in read_jsonl_plain(RunDir.of(cfg).generations) if r["sample"] == 0]
    df = pd.DataFrame([{"prompt": r["messages"][-1]["content"][:width], "checkpoint": r["checkpoint"],
                        "response": r["response"][:width]} for r in rows])
    return df.pivot(index="prompt", columns="checkpoint", values="response")


def generation_summary(cfg: Config) -> dict:
    """Per checkpoint: responses, % that stopped at EOT / at EOS / at max_new_tokens, and the median length."""
    return stop_shares(read_jsonl_plain(RunDir.of(cfg).generations))
