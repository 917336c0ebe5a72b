"""What notebooks 04-06 show after their one `run_*` call: the judge's tables and checks, the ablations' summary,
figures and conversations, the figures a run drew. Each helper takes the resolved `Config`, reads the run directory
through `RunDir`, prints or displays in the notebook, and returns what the cell shows last (if anything).

`notebook.py` holds the setup and the one-line summaries the pipeline test reads; these are the views around them.
"""

from __future__ import annotations

import json

import pandas as pd
from IPython.display import Image, Markdown, display

from . import figures_ablations
from .config import Config
from .figures import SUMMARY
from .files import read_json, read_jsonl_plain
from .runs import RunDir

JUDGE_TABLES = ("pairwise", "absolute", "likert", "safety", "dialogue", "lengths")  # in the order shown


def show_judge(cfg: Config) -> dict:
    """The judge's note, each baseline's position-calibrated verdict in words, then every protocol's table (a
    protocol that was not run wrote none); returns the judge's request counts."""
    run = RunDir.of(cfg)
    res = run.read_results()
    if res["judge_note"]:
        print(res["judge_note"])
    for b, cal in res["pairwise_calibration"].items():  # what the numbers mean, in words
        print(f"{b}: {cal['verdict']}")
    for name in JUDGE_TABLES:
        if run.judge_table(name).exists():
            print(name)
            display(pd.read_csv(run.judge_table(name)))
    return res["requests"]


def show_reference(cfg: Config) -> pd.DataFrame:
    """The check independent of the judge (the dev set's reference answers): held-out perplexity per system, and
    the answer-to-reference similarity per system as the returned table (or why it was skipped)."""
    ref = RunDir.of(cfg).read_results().get("reference") or {}
    print("held-out perplexity of the dev references:", ref.get("perplexity"))
    print(ref.get("similarity_skipped") or f"answer-to-reference similarity ({ref.get('embedder')}):")
    return pd.DataFrame(ref.get("similarity", {})).T


def show_token_shift(cfg: Config, top: int = 15) -> pd.DataFrame:
    """The superficial-alignment token-shift test (Lin et al. 2023): its headline numbers and note, and the `top`
    most shifted tokens as the returned table."""
    ts = RunDir.of(cfg).read_results().get("token_shift", {})
    print(
        json.dumps(
            {k: ts.get(k) for k in ("base", "control_finetuned_self", "answers_analysed", "responses")}, indent=1
        )
    )
    print(ts.get("note", ""))
    return pd.DataFrame(ts.get("top_shifted_tokens", [])).head(top)


def show_ablations(cfg: Config) -> pd.DataFrame:
    """The ablation summary's note, judge, whether the test prompts matched and which conditions did not run;
    returns summary.csv, one row per condition."""
    run = RunDir.of(cfg)
    summary = run.read_ablation_summary()
    if summary["note"]:
        print(summary["note"])
    print(
        "judge:",
        summary["judge"],
        "| matched test prompts:",
        summary["matched"]["test_prompts"],
        "| not run:",
        [c["condition"] for c in summary["not_run"]],
    )
    return pd.read_csv(run.ablation_table)


def show_ablation_figures(cfg: Config) -> None:
    """Fig. 5, 6, 7 and the other conditions, drawn into the run's figures folder as 06_figures draws them (it
    redraws them with every other figure)."""
    run = RunDir.of(cfg)
    for d in figures_ablations.draw([run.root], run.figures):
        print(f"{d.name}: {d.status} {d.reason}")
        if d.fig is not None:
            display(d.fig)


def show_dialogue_transcripts(cfg: Config, width: int = 300) -> None:
    """The first scripted conversation of each dialogue condition's model, as the judge saw it (turns truncated)."""
    run = RunDir.of(cfg)
    for c in run.read_ablation_summary()["conditions"]:
        path = run.ablation(c["condition"]).dialogue_transcripts
        if "dialogue" in c["groups"] and path.is_file():
            print(f"== {c['condition']} ({c.get('paper')}) ==")
            for m in read_jsonl_plain(path)[0]["messages"]:
                print(f"{m['role']}: {m['content'][:width]}")


def show_figures(cfg: Config) -> None:
    """Every figure the run drew (with the run it came from), tables as Markdown, and why each other was skipped."""
    out = RunDir.of(cfg).figures
    for name, rec in read_json(out / SUMMARY)["figures"].items():
        png = out / f"{name}.png"
        md = out / f"{name}.md"
        if png.exists():
            why = f"; {rec['reason']}" if rec["reason"] else ""  # e.g. Fig. 1 drawn from the paper's values alone
            display(Markdown(f"**{name}** (from {rec['source']}{why})"), Image(filename=str(png)))
        elif rec["status"] == "drawn" and md.is_file():  # tables: Table 1, the published comparison
            display(Markdown(md.read_text()))
        else:
            print(f"{name}: {rec['status']}, {rec['reason']}")
