"""The figures stage: the paper's figures, redrawn from run directories only, beside the paper's own numbers.

`run_figures(config) -> <run_dir>/figures` (and `python -m lima_repro figures RUN_DIR...`) reads what finished
stages wrote (judge/results.json, annotations/, ablations/summary.json, train/metrics.jsonl, curate/datacard.json)
and never trains or judges. Each figure is written as PNG + PDF with the CSV of exactly what it draws
(`figures_kit.py` holds the drawing helpers); the paper's values (`paper_values`) are drawn beside "this run",
unconfirmed ones hollow and labelled. A figure whose inputs no run holds is skipped with the reason recorded in
`figures_summary.json`. A new figure is one function here returning a `Drawn`, listed in `draw_all`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from . import analysis
from . import paper_values as pv
from .files import write_json
from .figures_kit import (GRADES, OUTCOMES, PAPER_C, RUN_C, Drawn, caption, grades_figure, markdown, new_fig, save,
                          stacked)
from .judging.labels import pairwise_labels
from .runs import RunDir

ALIASES = {"alpaca": "Alpaca-65B", "davinci": "DaVinci003", "bard": "Bard", "claude": "Claude", "gpt4": "GPT-4"}
SUMMARY = "figures_summary.json"  # beside the figures: what was drawn from which run, what was skipped and why


def paper_baseline(label: str, names: dict[str, str] | None = None) -> str | None:
    """The paper's baseline a run's label stands for (`alpaca` -> Alpaca-65B), or None (e.g. `base`)."""
    if names and label in names:
        return names[label]
    key = label.lower().replace("_", "").replace("-", "")
    return next((b for alias, b in ALIASES.items() if alias in key), None)


def preference(runs: list[Path], out: Path, annotator: str = "llm", names: dict[str, str] | None = None,
               formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 1 (annotator='human': labels in <run>/annotations) or Fig. 2 ('llm': judge/results.json pairwise)."""
    name = "fig1_human_preference" if annotator == "human" else "fig2_llm_preference"
    paper, fig_id = (pv.FIG1_HUMAN, "Fig. 1") if annotator == "human" else (pv.FIG2_GPT4, "Fig. 2")
    run_rows, source = _human_pairwise(runs) if annotator == "human" else _llm_pairwise(runs)
    if not run_rows:
        why = ("no pairwise human labels in any <run>/annotations/*.jsonl" if annotator == "human"
               else "no judge/results.json with pairwise results in the given runs")
        return Drawn(name, "skipped", why)
    recs = [{"panel": "paper", "baseline": b, "outcome": c, "pct": v, "lo": None, "hi": None, "n": None,
             "confirmed": pv.is_confirmed(fig_id, f"{b}/{c}")} for b, vals in paper.items() for c, v in zip(OUTCOMES, vals)]
    for b, d in run_rows.items():
        label = b + (f" ({pv_b})" if (pv_b := paper_baseline(b, names)) and pv_b != b else "")
        recs += [{"panel": "this run", "baseline": label, "outcome": c, "pct": d[c]["pct"], "lo": d[c].get("lo"),
                  "hi": d[c].get("hi"), "n": d.get("n"), "confirmed": True} for c in OUTCOMES]
    df = pd.DataFrame(recs)
    fig, (a_paper, a_run) = new_fig(8.5, 2.8, 2)
    for ax, panel in ((a_paper, "paper"), (a_run, "this run")):
        sub = df[df.panel == panel]
        rows = [(b, dict(zip(g.outcome, g.pct))) for b, g in sub.groupby("baseline", sort=False)]
        stacked(ax, rows, OUTCOMES, {b for b, g in sub.groupby("baseline") if not g.confirmed.all()})
        ax.set_xlabel("LIMA win / tie / loss (%)")
    who = "human annotators" if annotator == "human" else "LLM judge"
    hatched = "\nhatched = unconfirmed (secondary sources)" if not df[df.panel == "paper"].confirmed.all() else ""
    a_paper.set_title(f"paper ({fig_id}, LIMA 65B vs baseline){hatched}")
    a_run.set_title(f"this run\n({who}, n = {int(df[df.panel == 'this run'].n.max() or 0)} prompts)")
    a_run.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    if annotator == "llm":  # what the judge's numbers mean, in words, under the figure (e.g. a judge at chance)
        caption(fig, " ".join(_verdicts(source)), width=160)
    return save(Drawn(name, "drawn", source=str(source), data=df, fig=fig), out, formats, dpi)


def _verdicts(run_dir) -> list[str]:
    """The judge stage's one-sentence verdict per baseline (position-calibrated preference, results.json)."""
    cal = (RunDir(run_dir).read_results() or {}).get("pairwise_calibration", {})
    return [f"{b}: {c['verdict']}" for b, c in cal.items()]


def _llm_pairwise(runs):
    for r in runs:
        res = RunDir(r).read_results() or {}
        if any(d.get("n") for d in res.get("pairwise", {}).values()):
            return {b: d for b, d in res["pairwise"].items() if d.get("n")}, r
    return {}, None


def _human_pairwise(runs):
    """Pool every annotator's pairwise labels; item ids are `prompt#sample|system|baseline`."""
    for r in runs:
        if not RunDir(r).annotations.is_dir():
            continue
        outcomes: dict[str, list[str]] = {}
        for labels in pairwise_labels(RunDir(r).annotations).values():
            for item, winner in labels.items():
                _, system, baseline = item.split("|")
                outcomes.setdefault(baseline, []).append(analysis.pairwise_outcome(winner, system))
        if outcomes:
            return {b: analysis.bootstrap_shares(o, n_boot=1000) for b, o in outcomes.items()}, r
    return {}, None


def absolute(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 3: Fail / Pass / Excellent shares of the judged system (and other judged systems) beside the paper's."""
    name = "fig3_absolute"
    src = next((r for r in runs if (RunDir(r).read_results() or {}).get("absolute")), None)
    if src is None:
        return Drawn(name, "skipped", "no judge/results.json with absolute (Fail/Pass/Excellent) results")
    res = RunDir(src).read_results()
    recs = [{"panel": "paper", "row": "paper: 50 test prompts", "label": k, "pct": v, "n": 50, "confirmed": True}
            for k, v in pv.FIG3_ABSOLUTE.items()]
    recs += [{"panel": "paper", "row": "paper: 20 OOD prompts", "label": k, "pct": v, "n": 20, "confirmed": True}
             for k, v in pv.FIG3_OOD.items()]
    for s, d in res["absolute"].items():
        recs += [{"panel": "this run", "row": f"this run: {s}", "label": k, "pct": d[k]["pct"], "n": d["n"],
                  "confirmed": True} for k in GRADES]
    only = {k for d in res["absolute"].values() for k in GRADES if d[k]["pct"] == 100.0}
    note = (f"The judge ({res.get('judge')}) gave every response of every system the grade {only.pop()}: these "
            "grades cannot tell the systems apart." if len(only) == 1 and len(res["absolute"]) > 1 else "")
    return grades_figure(name, src, pd.DataFrame(recs), "share of responses (%)",
                         "Fig. 3: absolute grades, paper (LIMA 65B) vs this run", out, formats, dpi, note)


def _ablation_summary(runs):
    src = next((r for r in runs if RunDir(r).ablation_summary.is_file()), None)
    return (RunDir(src).read_ablation_summary(), src) if src else (None, None)


def ablation_means(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 5: Likert mean with 95% CI per finished non-quantity condition; paper means as markers beside."""
    name = "fig5_ablations"
    summ, src = _ablation_summary(runs)
    conds = [c for c in (summ or {}).get("conditions", []) if c.get("status") == "ok" and c.get("likert", {}).get("mean")
             is not None and set(c.get("groups", [])) - {"quantity"}]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with a finished non-quantity condition")
    recs = [{"series": "paper", "condition": k, "mean": v, "lo": None, "hi": None, "n": None, "confirmed": True}
            for k, v in pv.FIG5_ABLATION.items()]
    recs += [{"series": "this run", "condition": c.get("paper") or c["condition"], "mean": c["likert"]["mean"],
              "lo": c["likert"].get("lo"), "hi": c["likert"].get("hi"), "n": c["likert"].get("n"), "confirmed": True}
             for c in conds]
    df = pd.DataFrame(recs)
    order = list(dict.fromkeys(df.condition))
    fig, (ax,) = new_fig(max(4.5, 1.0 * len(order)), 3.2)
    for off, series, color in ((-0.2, "paper", PAPER_C), (0.2, "this run", RUN_C)):
        sub = df[df.series == series]
        xs = [order.index(c) + off for c in sub.condition]
        err = [[m - lo if pd.notna(lo) else 0 for m, lo in zip(sub["mean"], sub.lo)],
               [hi - m if pd.notna(hi) else 0 for m, hi in zip(sub["mean"], sub.hi)]]
        bars = ax.bar(xs, sub["mean"], width=0.38, color=color, label=series,
                      yerr=err if series == "this run" else None, capsize=3)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)  # a mean at the scale's floor (1) has no visible bar
    ax.set_xticks(range(len(order)), order, rotation=20, ha="right")
    ax.set_ylim(1, 6)
    ax.set_ylabel("helpfulness, 1-6 (mean, 95% CI)")
    ax.set_title(f"Fig. 5: ablations, paper (7B, ChatGPT judge)\nvs this run{_judge_note(summ)}")
    ax.legend(fontsize=7)
    means = set(df[df.series == "this run"]["mean"])
    if len(means) == 1 and len(conds) > 1:
        caption(fig, f"The judge gave every answer in every condition the same mean score ({means.pop():.2f}): "
                     "these bars cannot differ, whatever the data.", width=90)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def _judge_note(summ) -> str:
    return f" ({summ['judge']})" if summ and summ.get("judge") else ""


def quantity(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 6: Likert mean (95% CI) against training-set size on a log2 axis; the paper reports only 'flat'."""
    name = "fig6_quantity"
    summ, src = _ablation_summary(runs)
    conds = sorted([c for c in (summ or {}).get("conditions", []) if "quantity" in c.get("groups", [])
                    and c.get("status") == "ok" and c.get("likert", {}).get("mean") is not None],
                   key=lambda c: c.get("x") or c["n_examples"])
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with finished quantity conditions")
    df = pd.DataFrame([{"series": "this run", "condition": c["condition"], "n_examples": c.get("x") or c["n_examples"],
                        "mean": c["likert"]["mean"], "lo": c["likert"].get("lo"), "hi": c["likert"].get("hi"),
                        "confirmed": True} for c in conds]
                      + [{"series": "paper", "condition": f"{n}", "n_examples": n, "mean": None, "lo": None, "hi": None,
                          "confirmed": False} for n in pv.FIG6_QUANTITY_SIZES])
    run = df[df.series == "this run"]
    fig, (ax,) = new_fig(5, 3.2)
    ax.errorbar(run.n_examples, run["mean"], yerr=[(run["mean"] - run.lo).fillna(0), (run.hi - run["mean"]).fillna(0)],
                marker="o", capsize=3, color=RUN_C, label="this run")
    ax.set_xscale("log", base=2)
    ax.set_ylim(1, 6)
    ax.set_xlabel("training examples (log2 scale)")
    ax.set_ylabel("helpfulness, 1-6 (mean, 95% CI)")
    ax.text(0.02, 0.04, "paper (unconfirmed): flat from 2K to 32K filtered\nStack Exchange examples; no values published",
            transform=ax.transAxes, fontsize=7, color=PAPER_C)
    ax.set_title("Fig. 6: data quantity")
    ax.legend(fontsize=7)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def dialogue(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 7: per-turn Fail / Pass / Excellent without vs with multi-turn training examples."""
    name = "fig7_dialogue"
    summ, src = _ablation_summary(runs)
    conds = [c for c in (summ or {}).get("conditions", []) if "dialogue" in c.get("groups", [])
             and c.get("status") == "ok" and (c.get("dialogue") or {}).get("n")]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with finished dialogue conditions judged per turn")
    recs = [{"row": f"paper: {k}", "label": lab, "pct": v, "n": None, "confirmed": True}
            for k, d in pv.FIG7_DIALOGUE.items() for lab, v in d.items()]
    recs += [{"row": f"this run: {c['condition']}", "label": lab, "pct": c["dialogue"][lab]["pct"],
              "n": c["dialogue"]["n"], "confirmed": True} for c in conds for lab in GRADES]
    return grades_figure(name, src, pd.DataFrame(recs), "assistant turns (%)",
                          "Fig. 7: dialogue turns without vs with multi-turn examples", out, formats, dpi)


def perplexity_score(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 9: held-out perplexity (left axis) and 1-6 score per checkpoint (right axis) against steps."""
    name = "fig9_perplexity_vs_score"
    src = next((r for r in runs if RunDir(r).metrics.is_file()
                and any(x["type"] == "eval" for x in RunDir(r).read_metrics())), None)
    if src is None:
        return Drawn(name, "skipped", "no train/metrics.jsonl with held-out (eval) rows")
    run = RunDir(src)
    evals = [x for x in run.read_metrics() if x["type"] == "eval"]
    recs = [{"series": "perplexity", "step": x["step"], "value": x["perplexity"], "lo": None, "hi": None} for x in evals]
    steps = {c["name"]: c["step"] for c in run.list_checkpoints()} if run.checkpoint_index.is_file() else {}
    scores = {}
    if run.selection.is_file():
        scores.update(run.read_selection().get("scores", {}))
    scores.update((run.read_results() or {}).get("likert", {}))
    recs += [{"series": "score", "step": steps[k], "value": s["mean"], "lo": s.get("lo"), "hi": s.get("hi")}
             for k, s in scores.items() if k in steps and s.get("mean") is not None]
    df = pd.DataFrame(recs).sort_values(["series", "step"], kind="stable")
    fig, (ax,) = new_fig(5.5, 3.2)
    ppl = df[df.series == "perplexity"]
    ax.plot(ppl.step, ppl.value, "o-", color=RUN_C, label="held-out perplexity (this run)")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out perplexity")
    ax2 = ax.twinx()
    sc = df[df.series == "score"]
    ax2.plot(sc.step, sc.value, "s--", color="C1", label="1-6 score (this run)")
    ax2.set_ylabel("helpfulness, 1-6")
    ax2.set_ylim(1, 6)
    ax2.grid(False)
    ax.text(0.02, 1.02, "paper (unconfirmed): perplexity rises with steps while the 1-6 score also rises",
            transform=ax.transAxes, fontsize=7, color=PAPER_C, va="bottom")
    ax.set_title("Fig. 9: perplexity vs generation quality" + ("" if len(sc) else " (no per-checkpoint scores)"), pad=16)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def datacard(runs: list[Path], out: Path) -> Drawn:
    """Table 1: this run's training data card beside the paper's, as CSV and Markdown."""
    name = "table1_datacard"
    src = next((r for r in runs if RunDir(r).datacard.is_file()), None)
    if src is None:
        return Drawn(name, "skipped", "no curate/datacard.json in the given runs")
    cols = ["source", "n", "avg_input_tokens", "avg_output_tokens"]
    paper = pd.DataFrame(pv.TABLE1, columns=cols).assign(table="paper")
    card = RunDir(src).read_datacard()
    run = pd.DataFrame(card["splits"].get("train", [])).reindex(columns=cols).assign(table="this run")
    df = pd.concat([paper, run], ignore_index=True)[["table", *cols]]
    d = save(Drawn(name, "drawn", source=str(src), data=df), out, (), 0)
    md = out / f"{name}.md"
    md.write_text("## Table 1: training data\n\n### paper (LIMA, 1,000 examples)\n\n" + markdown(paper[cols])
                  + f"\n\n### this run ({RunDir(src).datacard.relative_to(src.parent)})\n\n" + markdown(run[cols])
                  + "\n", encoding="utf-8")
    d.files.append(str(md))
    return d


def draw_all(runs: list[str | Path], out: str | Path, names: dict[str, str] | None = None,
             formats=("png", "pdf"), dpi: int = 200) -> dict:
    """Every figure from the given finished runs (the first run holding a figure's inputs is used)."""
    runs, out = [Path(r) for r in runs], Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"formats": tuple(formats), "dpi": dpi}
    drawn = [preference(runs, out, "human", names, **kw), preference(runs, out, "llm", names, **kw),
             absolute(runs, out, **kw), ablation_means(runs, out, **kw), quantity(runs, out, **kw),
             dialogue(runs, out, **kw), perplexity_score(runs, out, **kw), datacard(runs, out)]
    pv.table().to_csv(out / "paper_values.csv", index=False)
    summary = {"runs": [str(r) for r in runs], "figures": {d.name: d.record() for d in drawn}}
    write_json(out / SUMMARY, summary)
    return summary


def repo_path(p: str) -> Path:
    """Relative paths are taken from the repository root (editable install), else from the working directory."""
    root = Path(__file__).resolve().parents[2]
    return Path(p) if os.path.isabs(p) else (root if (root / "pyproject.toml").is_file() else Path.cwd()) / p


def run_figures(cfg) -> Path:
    """Draw every figure from `cfg.run_dir` (+ `cfg.figures.runs`) into `<run_dir>/figures`; copy when configured."""
    fc = cfg.figures
    runs = [Path(cfg.run_dir), *map(Path, fc.runs)]
    out = Path(cfg.run_dir) / "figures"
    draw_all(runs, out, fc.baseline_names, fc.formats, fc.dpi)
    if fc.copy_to:
        dest = repo_path(fc.copy_to)
        dest.mkdir(parents=True, exist_ok=True)
        fresh = {f.name for f in out.iterdir() if f.is_file()}
        for old in dest.glob("*"):  # a figure this run skipped must not survive from an older run
            if old.is_file() and old.name.startswith(("fig", "table")) and old.name not in fresh:
                old.unlink()
        for name in fresh:
            shutil.copy2(out / name, dest / name)
        _relocate_summary(dest / SUMMARY, dest)
    return out


def _relocate_summary(path: Path, dest: Path) -> None:
    """The copied summary names the copies, and paths inside the repository relative to its root (portable)."""
    root = repo_path(".").resolve()

    def rel(p: str | None) -> str | None:
        if p is None or not Path(p).is_absolute() or not Path(p).resolve().is_relative_to(root):
            return p
        return str(Path(p).resolve().relative_to(root))

    summary = json.loads(path.read_text())
    summary["runs"] = [rel(r) for r in summary["runs"]]
    for fig in summary["figures"].values():
        fig["source"] = rel(fig["source"])
        fig["files"] = [rel(str((dest / Path(f).name).resolve())) for f in fig["files"]]
    write_json(path, summary)
