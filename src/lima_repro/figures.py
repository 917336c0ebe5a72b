"""The figures stage: the paper's figures, redrawn from run directories only, beside the paper's own numbers.

`run_figures(config) -> <run_dir>/figures` (and `python -m lima_repro figures RUN_DIR...`) reads what finished
stages wrote (judge/results.json, annotations/, ablations/summary.json, train/metrics.jsonl, curate/datacard.json)
and never trains or judges. Each figure is written as PNG + PDF with the CSV of exactly what it draws
(`figures_kit.py` holds the drawing helpers); the paper's values (`paper_values`) are drawn beside "this run",
unconfirmed ones hollow and labelled. A figure whose inputs no run holds is skipped with the reason recorded in
`figures_summary.json`. A new figure is one function returning a `Drawn` (here, in `figures_eval.py` for the
evaluation figures, or in `figures_ablations.py` for the ablations'), listed in `draw_all`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from . import figures_ablations  # Fig. 5-7 and the other ablations: LIMA sec. 5
from . import paper_values as pv
from .curate import file_datacard
from .figures_eval import absolute, preference, safety  # Fig. 1-3 and safety: the paper's sec. 4 evaluation
from .figures_kit import PAPER_C, RUN_C, Drawn, markdown, new_fig, save
from .figures_published import published_comparison  # published LIMA-1k numbers: docs/paper.md sec. 6
from .files import read_json, write_csv, write_json
from .models import load_tokenizer
from .runs import RunDir

SUMMARY = "figures_summary.json"  # beside the figures: what was drawn from which run, what was skipped and why


def perplexity_score(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 9: held-out perplexity (left axis) and the 1-6 score per checkpoint (right axis) against steps; scores
    on the dev set (checkpoint selection) and on the test set (the judge) are separate series, each drawn only
    when the run has it."""
    name = "fig9_perplexity_vs_score"
    src = next(
        (r for r in runs if RunDir(r).metrics.is_file() and any(x["type"] == "eval" for x in RunDir(r).read_metrics())),
        None,
    )
    if src is None:
        return Drawn(name, "skipped", "no train/metrics.jsonl with held-out (eval) rows")
    run = RunDir(src)
    recs = [
        {"series": "perplexity", "step": x["step"], "value": x["perplexity"], "lo": None, "hi": None, "n": None}
        for x in run.read_metrics()
        if x["type"] == "eval"
    ]
    steps = {c["name"]: c["step"] for c in run.list_checkpoints()} if run.checkpoint_index.is_file() else {}
    for series, scores in (
        ("dev_score", run.read_selection().get("scores", {}) if run.selection.is_file() else {}),
        ("test_score", (run.read_results() or {}).get("likert", {})),
    ):
        recs += [
            {
                "series": series,
                "step": steps[k],
                "value": s["mean"],
                "lo": s.get("lo"),
                "hi": s.get("hi"),
                "n": s.get("n"),
            }
            for k, s in scores.items()
            if k in steps and s.get("mean") is not None
        ]
    df = pd.DataFrame(recs).sort_values(["series", "step"], kind="stable")
    fig, (ax,) = new_fig(5.5, 3.4)
    ppl = df[df.series == "perplexity"]
    ax.plot(ppl.step, ppl.value, "o-", color=RUN_C, label=f"held-out perplexity ({_held_out(run)})")
    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("held-out perplexity")
    scored = df.series.str.endswith("score").any()
    ax2 = ax.twinx() if scored else None  # no empty score axis when the run has no scores
    for series, style, color, what in (
        ("dev_score", "s--", "C1", "dev set (checkpoint selection)"),
        ("test_score", "^:", "C2", "test set (judge)"),
    ):
        sc = df[df.series == series]
        if len(sc):
            ax2.plot(sc.step, sc.value, style, color=color, label=f"1-6 score, {what}, n = {int(sc.n.max())} prompts")
    if scored:
        ax2.set_ylabel("helpfulness, 1-6")
        ax2.set_ylim(1, 6)
        ax2.grid(False)
    ax.text(
        0.02,
        1.02,
        f"paper (unconfirmed): on {pv.FIG9_HELD_OUT:,} held-out Stack Exchange examples perplexity "
        "rises with steps\nwhile the 1-6 score also rises",
        transform=ax.transAxes,
        fontsize=6.5,
        color=PAPER_C,
        va="bottom",
    )
    ax.set_title("Fig. 9: perplexity vs generation quality" + ("" if scored else " (no per-checkpoint scores)"), pad=24)
    # one legend for both y axes, inside the plot (below it sit the caption and the footer); on the top axes
    pairs = [hl for a in fig.axes for hl in zip(*a.get_legend_handles_labels())]
    fig.axes[-1].legend(*zip(*pairs), loc="best", fontsize=7)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def _held_out(run: RunDir) -> str:
    """The examples perplexity was measured on: `train.eval_file` when configured, else the dev set."""
    t = read_json(run.config).get("train", {}) if run.config.is_file() else {}
    where = Path(t["eval_file"]).name if t.get("eval_file") else "dev set"
    return where + (f", first {t['max_eval_examples']} examples" if t.get("max_eval_examples") else "")


# source names (GAIR/lima's and the curate stage's) -> the paper's Table 1 row (docs/paper.md sec. 1, docs/formats.md sec. 5)
TABLE1_ROWS = {
    "stackexchange_stem": "Stack Exchange (STEM)",
    "stackexchange_other": "Stack Exchange (Other)",
    "stackexchange": "Stack Exchange (STEM + Other)",  # GAIR/lima gives both Stack Exchange rows one label
    "wikihow": "wikiHow",
    "writingprompts": "Pushshift r/WritingPrompts",
    "nlp": "Natural Instructions",
    "natural_instructions": "Natural Instructions",
    "authors": "Paper Authors (Group A)",
    "multi_turn": "Dialogue chains (sec. 1, the 1,030 set)",
}
OTHER_ROW = "not a paper source"


def table1(card_rows: list[dict]) -> pd.DataFrame:
    """The paper's Table 1 rows beside a data card's per-source rows mapped onto them: paper n and average
    input/output tokens, the run's sources, n and averages (weighted by n), a total last. When the card has one
    Stack Exchange label (GAIR/lima), the paper's two Stack Exchange rows are added up to match it; the paper's 30
    dialogue chains are a row only when the card has them (`multi_turn`), so the paper total is 1,000 or 1,030."""
    rows = [r for r in card_rows if r["source"] != "total"]
    paper = {src: (n, i, o) for src, n, i, o in pv.TABLE1}
    if any(TABLE1_ROWS.get(r["source"]) == TABLE1_ROWS["stackexchange"] for r in rows):
        (n1, i1, o1), (n2, i2, o2) = paper.pop("Stack Exchange (STEM)"), paper.pop("Stack Exchange (Other)")
        paper = {
            TABLE1_ROWS["stackexchange"]: (n1 + n2, (n1 * i1 + n2 * i2) / (n1 + n2), (n1 * o1 + n2 * o2) / (n1 + n2)),
            **paper,
        }
    if any(TABLE1_ROWS.get(r["source"]) == TABLE1_ROWS["multi_turn"] for r in rows):  # the 1,030 set, else 1,000
        paper[TABLE1_ROWS["multi_turn"]] = (pv.DIALOGUE_CHAINS, None, None)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(TABLE1_ROWS.get(r["source"], OTHER_ROW), []).append(r)

    def line(row, pn, pi, po, rs):
        n = sum(r["n"] for r in rs)
        avg = {
            k: round(sum(r[k] * r["n"] for r in rs) / n, 1) if n and all(r.get(k) is not None for r in rs) else None
            for k in ("avg_input_tokens", "avg_output_tokens")
        }
        return {
            "row": row,
            "paper_n": pn,
            "paper_avg_input_tokens": pi,
            "paper_avg_output_tokens": po,
            "sources": ", ".join(r["source"] for r in rs),
            "n": n,
            **avg,
        }

    out = [
        line(row, *paper.get(row, (None, None, None)), groups.get(row, []))
        for row in [*paper, *[g for g in groups if g not in paper]]
    ]
    out.append({**line("total", None, None, None, rows), "paper_n": sum(v[0] for v in paper.values()), "sources": ""})
    return pd.DataFrame(out)


def datacard(runs: list[Path], out: Path, card: dict | None = None, name: str = "table1_datacard") -> Drawn:
    """Table 1: a data card beside the paper's, as CSV and Markdown: this run's `curate/datacard.json`, or `card`
    (e.g. `curate.file_datacard` of a local copy of GAIR/lima's train.jsonl)."""
    src = card.get("file") if card else next((r for r in runs if RunDir(r).datacard.is_file()), None)
    if src is None:
        return Drawn(name, "skipped", "no curate/datacard.json in the given runs")
    card = card or RunDir(src).read_datacard()
    df = table1(card["splits"].get("train", []))
    d = save(Drawn(name, "drawn", source=str(src), data=df), out, (), 0)
    what = Path(src).name if card.get("file") else RunDir(src).datacard.relative_to(Path(src).parent)
    tok = card.get("tokenizer")
    md = out / f"{name}.md"
    heads = [
        "paper row",
        "paper n",
        "paper input tokens",
        "paper output tokens",
        "this run: sources",
        "n",
        "input tokens",
        "output tokens",
    ]  # averages per example
    md.write_text(
        f"## Table 1: training data, paper (LIMA) vs {what}\n\n"
        + markdown(df.set_axis(heads, axis=1))
        + "\n\nThe paper counted "
        f"LLaMa tokens; this card {f'counted {tok} tokens' if tok else 'counted no tokens'}. GAIR/lima's "
        "`stackexchange` covers both Stack Exchange rows, `nlp` is Super-Natural Instructions and "
        "`multi_turn` the dialogue chains.\n",
        encoding="utf-8",
    )
    d.files.append(str(md))
    return d


def gair_lima_table1(cfg, path: str | Path, out: str | Path, name: str = "table1_gair_lima") -> Drawn:
    """Table 1 of a local copy of GAIR/lima's train.jsonl (the hub copy is gated) beside the paper's, as CSV and
    Markdown in `out`; tokens counted with `curate.tokenizer`, else the base model's tokenizer."""
    m = cfg.model
    tok = load_tokenizer(cfg.curate.tokenizer or m.name, m.revision, m.trust_remote_code)
    return datacard([], Path(out), card=file_datacard(path, tok), name=name)


def draw_all(
    runs: list[str | Path], out: str | Path, names: dict[str, str] | None = None, formats=("png", "pdf"), dpi: int = 200
) -> dict:
    """Every figure from the given finished runs (the first run holding a figure's inputs is used)."""
    runs, out = [Path(r) for r in runs], Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"formats": tuple(formats), "dpi": dpi}
    drawn = [
        preference(runs, out, "human", names, **kw),
        preference(runs, out, "llm", names, **kw),
        absolute(runs, out, **kw),
        safety(runs, out, **kw),
        *figures_ablations.draw(runs, out, **kw),
        perplexity_score(runs, out, **kw),
        datacard(runs, out),
        published_comparison(runs, out),
    ]
    write_csv(out / "paper_values.csv", pv.table())
    summary = {"runs": [str(r) for r in runs], "figures": {d.name: d.record() for d in drawn}}
    write_json(out / SUMMARY, summary)
    return summary


def repo_path(p: str) -> Path:
    """Relative paths are taken from the repository root (editable install), else from the working directory."""
    root = Path(__file__).resolve().parents[2]
    return Path(p) if os.path.isabs(p) else (root if (root / "pyproject.toml").is_file() else Path.cwd()) / p


def run_figures(cfg, out: str | Path | None = None) -> Path:
    """Draw every figure from `cfg.run_dir` (+ `cfg.figures.runs`) into `out` (default `<run_dir>/figures`) with
    the config's formats, dpi and baseline names; copy when configured."""
    fc = cfg.figures
    runs = [Path(cfg.run_dir), *map(Path, fc.runs)]
    out = Path(out) if out else Path(cfg.run_dir) / "figures"
    summary = draw_all(runs, out, fc.baseline_names, fc.formats, fc.dpi)
    if fc.copy_to:
        dest = repo_path(fc.copy_to)
        dest.mkdir(parents=True, exist_ok=True)
        fresh = {f.name for f in out.iterdir() if f.is_file()}
        ours = set(summary["figures"])  # every figure draw_all can draw, skipped ones included
        for old in dest.glob("*"):  # a figure this run skipped must not survive from an older run
            if old.is_file() and old.name.split(".")[0] in ours and old.name not in fresh:
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
