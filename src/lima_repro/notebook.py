"""What the notebooks call around their one `run_*` call: resolve the config, then show what a stage wrote.

Every helper takes the resolved `Config` and reads the run directory through `RunDir`; the one-line `*_summary` dicts
are what each notebook prints last (the pipeline test reads them). Notebooks 04-06 show theirs with `notebook_views`.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from papermill.cli import papermill as papermill_command
from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm as auto_tqdm
from transformers.utils import logging as hf_logging

from .config import Config, ConfigError, load_config, load_resolved
from .figures import SUMMARY
from .files import read_json, read_jsonl_plain
from .generate import stop_shares
from .pipeline import scrub_notebook
from .redaction import looks_like_key
from .runs import RunDir, new_run_dir

PARAMETERS = ("config_path", "profile", "overrides", "run_dir")  # every stage notebook's parameters cell
IPYTHON_HISTORY = ("In", "Out")  # a kernel's own globals: the cells' sources and results, not parameters
# a name with a part like these (`api_key`, `hf_token`, `OPENAI_API_KEY`; not `tokenizer` or `max_tokens`)
SECRET_NAME = re.compile(
    r"(^|_)(api_?key|access_?key|secret(_?key)?|token|password|passwd|credentials?|auth)(_|$)", re.IGNORECASE
)


def setup(
    config_path: str = "", profile: str = "demo", overrides: dict | str | None = None, run_dir: str = ""
) -> Config:
    """The pipeline passes `config_path` (its run's config.json, an absolute path, so an executed notebook re-runs
    from its own folder as JupyterLab starts it); interactive users give a profile, overrides (a dict, or a JSON
    object as text: `papermill -p overrides '{"train.epochs": 1}'`) and optionally an existing run directory to
    continue (else a new one is created and named). A notebook parameter that looks like a secret is refused."""
    refuse_secret_parameters(inspect.currentframe().f_back.f_globals)
    text_progress()
    if config_path:
        cfg = load_resolved(config_path)
        go_to_workdir(Path(config_path))
    else:
        cfg = load_config(profile, overrides=parse_overrides(overrides))
    if run_dir:
        cfg.run_dir = str(Path(run_dir).resolve())
    if not cfg.run_dir:
        print(f"new run directory: {new_run_dir(cfg).root}")
    return cfg


def parse_overrides(overrides: dict | str | None) -> dict:
    """`overrides` as a dict: papermill's `-p` passes text, so a JSON object in a string is read as one."""
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"notebook parameter overrides={overrides!r} is not JSON ({e.msg}, column {e.colno}). "
                """Fix: give a JSON object, papermill -p overrides '{"train.epochs": 1}', or pass a """
                "mapping with -y 'overrides: {train.epochs: 1}'"
            ) from e
    if not isinstance(overrides, (dict, type(None))):
        raise ConfigError(
            f"notebook parameter overrides must map dotted keys to values, got {type(overrides).__name__}"
            """. Fix: e.g. {"train.epochs": 1}"""
        )
    return overrides or {}


def refuse_secret_parameters(namespace: dict) -> None:
    """A notebook parameter named like a key (`papermill -p api_key ...`) or whose value looks like one, whatever
    its name (`-p openai_key sk-...`, a key inside `overrides`), is an error saying where keys go: papermill writes
    every parameter into the executed notebook, and no stage reads a key from a parameter. The pipeline passes only
    `config_path` and scrubs what it executed (`pipeline.scrub_notebook`); under a hand-run `papermill` command the
    notebook it writes is scrubbed when it exits (`scrub_after_papermill`); any other must be deleted by hand."""
    leaked = sorted(
        k
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in IPYTHON_HISTORY
        and (
            isinstance(v, str)
            and v
            and k not in PARAMETERS
            and SECRET_NAME.search(k)
            or isinstance(v, (str, dict))
            and looks_like_key(v if isinstance(v, str) else repr(v))
        )
    )
    if leaked:
        scrubbed = scrub_after_papermill([v for k in leaked if isinstance(v := namespace[k], str)])
        then = (
            f"papermill's {scrubbed} is rewritten without the value when papermill exits"
            if scrubbed
            else "delete the executed notebook papermill wrote: it holds the value"
        )
        raise ConfigError(
            f"notebook parameter {', '.join(leaked)} looks like a secret (the value is not shown); keys are never "
            "notebook parameters. Fix: export the key in the environment variable that judge.api_key_env names "
            f"(default OPENAI_API_KEY) before starting papermill or JupyterLab; {then}"
        )


# run in a process of its own, outside the kernel's process group: papermill writes the notebook again after the
# refusing cell fails (the parameters cell included) and then stops the kernel, so only a process that outlives both
# can scrub the last write
SCRUBBER = (
    "import sys; from lima_repro.notebook import scrub_after_exit; scrub_after_exit(int(sys.argv[1]), sys.argv[2])"
)
_SCRUBBERS: list[subprocess.Popen] = []  # kept, so the kernel never warns that one is still running


def papermill_output(pid: int) -> Path | None:
    """The local notebook that the `papermill` command running as process `pid` writes (its OUTPUT_PATH, read with
    papermill's own argument parser, from the command's folder), or None: not a papermill command (JupyterLab,
    papermill's Python API, a kernel behind a wrapper), or an output that is not a local file."""
    proc = Path(f"/proc/{pid}")
    try:
        argv, cwd = (proc / "cmdline").read_bytes().decode().split("\0")[:-1], Path(os.readlink(proc / "cwd"))
    except (OSError, UnicodeDecodeError):
        return None
    at = next((i for i, a in enumerate(argv) if Path(a).name == "papermill"), None)
    if at is None:
        return None
    given = papermill_command.make_context("papermill", argv[at + 1 :], resilient_parsing=True).params.get(
        "output_path"
    )
    if not given or given == "-" or "://" in given or not given.endswith(".ipynb"):
        return None
    return cwd / given


def scrub_after_papermill(secrets: list[str]) -> Path | None:
    """When this kernel runs under a `papermill` command: start a process that, once papermill exits, rewrites the
    notebook it wrote without `secrets` (the refused values) and anything else that looks like a key; returns that
    notebook's path, or None (nothing started)."""
    path = papermill_output(os.getppid())
    if path is None:
        return None
    watcher = subprocess.Popen(
        [sys.executable, "-c", SCRUBBER, str(os.getppid()), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    watcher.stdin.write(json.dumps(secrets).encode())  # through a pipe: never on a command line others can list
    watcher.stdin.close()
    _SCRUBBERS.append(watcher)
    return path


def scrub_after_exit(pid: int, path: str) -> None:
    """The watcher `scrub_after_papermill` starts: read the refused values from stdin, wait until process `pid`
    is gone (or a zombie), then scrub `path` of them (`pipeline.scrub_notebook`)."""
    secrets = tuple(json.load(sys.stdin))
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.2)
    scrub_notebook(Path(path), secrets)


def go_to_workdir(config_path: Path) -> None:
    """Work from the folder the pipeline ran in (recorded in the run's manifest), so relative paths in the config
    resolve as they did when the notebook is re-run elsewhere, e.g. from its own folder in JupyterLab."""
    manifest = RunDir(config_path.parent).manifest
    workdir = read_json(manifest).get("workdir") if manifest.is_file() else None
    if workdir and Path(workdir).is_dir() and Path(workdir).resolve() != Path.cwd().resolve():
        os.chdir(workdir)
        print(f"working directory: {workdir} (where the pipeline ran; relative paths in the config start there)")


def text_progress() -> None:
    """transformers' own progress bars (loading, saving weights) as text, like this package's: in a kernel they
    would be widgets, which papermill never shows in the terminal and which stay at 0% in the saved notebook."""
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5.2x
    if set_hook:
        set_hook(lambda factory, args, kwargs: (text_tqdm if factory is auto_tqdm else factory)(*args, **kwargs))


def datacard_tables(cfg: Config) -> dict[str, pd.DataFrame]:
    """The data card as one pandas DataFrame per split (the paper's Table 1 for `train`)."""
    card = RunDir.of(cfg).read_datacard()
    return {split: pd.DataFrame(rows) for split, rows in card["splits"].items() if rows}


def curation_steps(cfg: Config) -> pd.DataFrame:
    """The data card's per-source steps as one DataFrame (source, step, kept, dropped): every rule's counts."""
    card = RunDir.of(cfg).read_datacard()
    rows = [{"source": src, **step} for src, info in card.get("sources", {}).items() for step in info["steps"]]
    rows += [
        {"source": src, "step": f"skipped: {why}", "kept": 0, "dropped": n}
        for src, info in card.get("sources", {}).items()
        for why, n in info["skipped"].items()
    ]
    return pd.DataFrame(rows, columns=["source", "step", "kept", "dropped"])


def curate_summary(cfg: Config) -> dict[str, int]:
    """What 01_curate records: the examples in each split (the data card's totals row)."""
    return {split: int(df["n"].iloc[-1]) for split, df in datacard_tables(cfg).items()}


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
        "tokens_per_s": sum(r["tokens"] for r in train)
        / max(sum(r["tokens"] / r["tokens_per_s"] for r in train), 1e-9),
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
    df = pd.DataFrame(
        [
            {
                "prompt": r["messages"][-1]["content"][:width],
                "checkpoint": r["checkpoint"],
                "response": r["response"][:width],
            }
            for r in rows
        ]
    )
    return df.pivot(index="prompt", columns="checkpoint", values="response")


def generation_summary(cfg: Config) -> dict:
    """Per checkpoint: responses, % that stopped at EOT / at EOS / at max_new_tokens, and the median length."""
    return stop_shares(read_jsonl_plain(RunDir.of(cfg).generations))


def judge_summary(cfg: Config) -> dict:
    """Per baseline: win / tie / loss % (with n and invalid), order consistency and the calibrated preference; the
    reference check, the judge's request counts and the token-shift test's numbers for the base model."""
    res = RunDir.of(cfg).read_results()
    return {
        "judge": res["judge"],
        "system": res["system"],
        "pairwise": {
            b: {c: d[c]["pct"] for c in ("win", "tie", "loss")} | {"n": d["n"], "invalid": d["invalid"]}
            for b, d in res["pairwise"].items()
        },
        "order_consistency": {b: d["agreement"] for b, d in res["order_consistency"].items()},
        "calibration": {
            b: {"method": d["method"], "preference": d["preference"]} for b, d in res["pairwise_calibration"].items()
        },
        "reference": res.get("reference"),
        "requests": res["requests"],
        "token_shift": (res.get("token_shift") or {}).get("base"),
    }


def ablations_summary(cfg: Config) -> dict:
    """Counts of ok / failed / not-run conditions, the judge, and per condition: status, training examples, Likert
    mean, error and the Excellent / Pass / Fail % of its dialogue turns."""
    summary = RunDir.of(cfg).read_ablation_summary()
    return {
        "note": summary["note"],
        "counts": summary["counts"],
        "judge": summary["judge"],
        "not_run": [c["condition"] for c in summary["not_run"]],
        "conditions": {
            c["condition"]: {
                "status": c["status"],
                "n_examples": c.get("n_examples"),
                "likert_mean": (c.get("likert") or {}).get("mean"),
                "error": c.get("error"),
                "dialogue_turns": {
                    g: ((c.get("dialogue_turns") or {}).get(g) or {}).get("pct") for g in ("Excellent", "Pass", "Fail")
                },
            }
            for c in summary["conditions"]
        },
    }


def figures_summary(cfg: Config) -> dict:
    """Per figure: `drawn`, `drawn (<what it lacks>)` (Fig. 1's paper panel before anyone annotated), or
    `skipped: <why>`."""
    summary = read_json(RunDir.of(cfg).figures / SUMMARY)
    return {
        name: f"skipped: {rec['reason']}"
        if rec["status"] != "drawn"
        else "drawn" + (f" ({rec['reason']})" if rec["reason"] else "")
        for name, rec in summary["figures"].items()
    }
