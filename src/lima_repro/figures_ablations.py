"""The ablation figures of LIMA sec. 5, from `<run>/ablations/summary.json` only, beside the paper's numbers.

- Fig. 5 (`ablation_means`): the paper's diversity and quality conditions (filtered / unfiltered Stack Exchange,
  wikiHow, all at the matched size), 1-6 Likert mean with 95% CI;
- Fig. 6 (`quantity`): the same score against training-set size (log2 axis); the paper published no values;
- Fig. 7 (`dialogue`): Fail / Pass / Excellent shares over every assistant turn of the scripted conversations,
  per model (without / with multi-turn training examples);
- `other_conditions`: conditions the paper has no figure for (curation selectors, the dialogue models' Likert).
Every configured condition appears: one that failed or never ran is labelled so ("not run", "failed (train)"),
and every drawn value carries its n. Each function returns a `figures_kit.Drawn`; `figures.draw_all` lists them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paper_values as pv
from .figures_kit import GRADES, PAPER_C, RUN_C, Drawn, caption, grades_figure, new_fig, same_grade_note, save
from .readers import read_summary_object
from .runs import RunDir

FIG5_GROUPS = {"diversity", "quality"}
LIKERT_AXIS = "helpfulness, 1-6 (mean, 95% CI)"


def ablation_summary(runs) -> tuple[dict | None, object]:
    """The first run's ablations/summary.json (and that run), or (None, None). Read even while an ablations job
    is running: the summary is rewritten after every condition and lists the unfinished ones as `not_run`, so
    conditions run as independent jobs are drawn as they finish (the figure says the stage is not done)."""
    src = next((r for r in runs if RunDir(r).ablation_summary.is_file()), None)
    if src is None:
        return None, None
    run = RunDir(src)
    return {**read_summary_object(run.ablation_summary), "stage_status": run.stage_status("ablations")}, src


def stage_note(summ: dict) -> str:
    """Said under the figure when the ablations stage has not finished (a job still running, or killed)."""
    status = summ.get("stage_status")
    if status in (None, "ok"):
        return ""
    return (
        f"The ablations stage is not done (manifest: {status.splitlines()[0][:60]}): conditions marked "
        "'not run' may still come. "
    )


def conditions(summ: dict | None) -> list[dict]:
    """Every configured condition, in the configured order: finished or failed rows and `not_run` ones."""
    if not summ:
        return []
    rows = {c["condition"]: c for c in summ.get("conditions", []) + summ.get("not_run", [])}
    order = summ.get("order") or list(rows)
    return [rows[n] for n in order if n in rows]


def missing_text(c: dict | None) -> str | None:
    """Why a condition has no score to draw (None when it has one)."""
    if c is None or c["status"] == "not_run":
        return "not run"
    if c["status"] == "failed":
        return f"failed ({c.get('failed_stage', '?')})"
    return None if (c.get("likert") or {}).get("mean") is not None else "no valid scores"


def _record(series: str, label: str, c: dict | None, **extra) -> dict:
    lik = ((c or {}).get("likert") or {}) if missing_text(c) is None else {}
    return {
        "series": series,
        "condition": label,
        "run_condition": (c or {}).get("condition"),
        "mean": lik.get("mean"),
        "lo": lik.get("lo"),
        "hi": lik.get("hi"),
        "n": lik.get("n"),
        "n_examples": (c or {}).get("n_examples"),
        "status": "not_configured" if c is None else c["status"],
        "note": missing_text(c) or "",
        "confirmed": True,
        **extra,
    }


def _mean_bars(ax, labels: list[str], df: pd.DataFrame) -> None:
    """Paper and run bars side by side per label (the run's alone when there is no paper series); a run bar
    is labelled with its mean and n (prompts), a missing one with why."""
    series = [s for s in ("paper", "this run") if s in set(df.series)]
    width = 0.38 if len(series) == 2 else 0.6
    for k, s in enumerate(series):
        off = (k - (len(series) - 1) / 2) * 0.4
        rows = df[df.series == s]
        drawn = rows[rows["mean"].notna()]
        xs = [labels.index(c) + off for c in drawn.condition]
        err = [(drawn["mean"] - drawn.lo).fillna(0), (drawn.hi - drawn["mean"]).fillna(0)]
        ax.bar(
            xs,
            drawn["mean"],
            width=width,
            color=PAPER_C if s == "paper" else RUN_C,
            label=s if len(drawn) else None,
            yerr=None if s == "paper" else err,
            capsize=3,
        )
        for x, r in zip(xs, drawn.itertuples()):  # above the error bar; a mean at the floor (1) has no visible bar
            top = r.hi if s == "this run" and pd.notna(r.hi) else r.mean
            text = f"{r.mean:.2f}" if s == "paper" or pd.isna(r.n) else f"{r.mean:.2f}\nn = {int(r.n)}"
            ax.text(x, top + 0.08, text, ha="center", va="bottom", fontsize=6.5)
        for r in rows[rows["mean"].isna()].itertuples():
            ax.text(
                labels.index(r.condition) + off,
                1.08,
                r.note,
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=7,
                color="0.3",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0.8, 6.4)  # a mean at the scale's floor (1) keeps a visible bar
    ax.set_ylabel(LIKERT_AXIS)
    ax.legend(fontsize=7, loc="upper right")


def same_score_note(means: pd.Series) -> str:
    """Said under a figure whose conditions all got one mean score: the judge could not tell them apart."""
    if len(means) < 2 or means.nunique() != 1:
        return ""
    return (
        f"The judge gave every answer in every condition the same mean score ({means.iloc[0]:.2f}): these "
        "values cannot differ, whatever the data."
    )


def _judge(summ) -> str:
    return f"judge: {summ['judge']}" if summ and summ.get("judge") else "judge: unknown"


def ablation_means(runs, out, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 5: the paper's diversity/quality conditions at the matched size, paper mean beside the run's."""
    name = "fig5_ablations"
    summ, src = ablation_summary(runs)
    conds = [c for c in conditions(summ) if FIG5_GROUPS & set(c["groups"])]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with a diversity or quality condition")
    by_label: dict[str, dict] = {}
    for c in conds:
        by_label.setdefault(c.get("paper") or c["condition"], c)
    labels = list(dict.fromkeys([*pv.FIG5_ABLATION, *by_label]))
    recs = [
        {
            **_record("paper", lab, None),
            "mean": pv.FIG5_ABLATION[lab],
            "n_examples": 2000,
            "status": "paper",
            "note": "",
        }
        for lab in labels
        if lab in pv.FIG5_ABLATION
    ]
    recs += [_record("this run", lab, by_label.get(lab)) for lab in labels]
    df = pd.DataFrame(recs)
    fig, (ax,) = new_fig(max(4.5, 1.2 * len(labels)), 3.4)
    _mean_bars(ax, labels, df)
    ax.set_title(f"Fig. 5: data diversity and quality\npaper (7B, 2,000 ex., ChatGPT) vs this run\n{_judge(summ)}")
    run = df[(df.series == "this run") & df["mean"].notna()]
    notes = [stage_note(summ) + same_score_note(run["mean"])]
    target = summ.get("n_examples_target")
    off = [f"{r.run_condition} ({r.n_examples:.0f})" for r in run.itertuples() if target and r.n_examples != target]
    parts = [f"This run: {target} training examples per condition"] if target else []
    parts += [f"size differs: {', '.join(off)}"] if off else []
    notes.append("; ".join(parts + ["n = test prompts judged."]))
    caption(fig, " ".join(notes), width=110)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def quantity(runs, out, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 6: Likert mean (95% CI) against training-set size, log2 axis; sizes that failed or never ran are
    marked at the floor with why. The paper reports only that the curve is flat from 2K to 32K."""
    name = "fig6_quantity"
    summ, src = ablation_summary(runs)
    conds = [c for c in conditions(summ) if "quantity" in c["groups"]]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with a quantity condition")
    recs = [_record("this run", c["condition"], c, x=c.get("x") or c.get("n_examples")) for c in conds]
    recs += [
        {
            **_record("paper", f"{n}", None),
            "x": n,
            "n_examples": n,
            "status": "paper",
            "note": "flat (no values published)",
            "confirmed": False,
        }
        for n in pv.FIG6_QUANTITY_SIZES
    ]
    df = pd.DataFrame(recs).sort_values(["series", "x"], kind="stable", ascending=[False, True])
    run = df[df.series == "this run"]
    ok, lost = run[run["mean"].notna()], run[run["mean"].isna()]
    fig, (ax,) = new_fig(5.2, 3.4)
    ax.errorbar(
        ok.x,
        ok["mean"],
        yerr=[(ok["mean"] - ok.lo).fillna(0), (ok.hi - ok["mean"]).fillna(0)],
        marker="o",
        capsize=3,
        color=RUN_C,
        label="this run",
    )
    for r in ok.itertuples():
        ax.annotate(
            f"{r.mean:.2f}\nn = {int(r.n)}" if pd.notna(r.n) else f"{r.mean:.2f}",
            (r.x, r.hi if pd.notna(r.hi) else r.mean),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            va="bottom",
            fontsize=6.5,
        )
    if len(lost):
        ax.plot(lost.x, [1.1] * len(lost), "x", color="0.3", label="not drawn")
        for r in lost.itertuples():
            ax.annotate(
                r.note,
                (r.x, 1.1),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                rotation=90,
                va="bottom",
                fontsize=7,
                color="0.3",
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(run.x), [f"{int(x):,}" for x in run.x])
    ax.minorticks_off()
    ax.set_ylim(0.8, 6.4)  # a mean at the scale's floor (1) stays visible
    ax.set_xlabel("training examples (log2 scale)")
    ax.set_ylabel(LIKERT_AXIS)
    ax.set_title(f"Fig. 6: data quantity (filtered Stack Exchange)\n{_judge(summ)}")
    ax.legend(fontsize=7, loc="upper right")
    paper = (
        "Paper (7B, ChatGPT judge): flat from 2,000 to 32,000 filtered Stack Exchange examples; it published no "
        "values, so none are drawn. n = test prompts judged."
    )
    caption(fig, stage_note(summ) + same_score_note(ok["mean"]) + " " + paper, width=100)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def dialogue(runs, out, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 7: per model, the Fail / Pass / Excellent shares over all assistant turns of its conversations
    (every turn graded), the paper's two models first."""
    name = "fig7_dialogue"
    summ, src = ablation_summary(runs)
    conds = [c for c in conditions(summ) if "dialogue" in c["groups"]]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with a dialogue condition")
    what = {"1,000 ex.": "zero-shot, 1,000 ex.", "1,030 ex.": "+30 dialogue chains, 1,030 ex."}
    recs = [
        {
            "row": f"paper: {what.get(k, k)}\nn = {pv.FIG7_TURNS[k]} turns, 10 conversations",
            "model": k,
            "label": g,
            "pct": d[g],
            "n": pv.FIG7_TURNS[k],
            "status": "paper",
            "confirmed": True,
        }
        for k, d in pv.FIG7_DIALOGUE.items()
        for g in GRADES
    ]
    for c in conds:
        t = c.get("dialogue_turns") or {}
        drawn = c["status"] == "ok" and bool(t.get("n"))
        why = (
            f"n = {t['n']} turns, {t.get('conversations', '?')} conversations"
            if drawn
            else missing_text(c) or "no valid turn labels"
        )
        size = f", {c['n_examples']} ex. ({c.get('n_multi_turn', '?')} multi-turn)" if c.get("n_examples") else ""
        stands = f"\nin place of the paper's {c['paper']} model" if c.get("paper") else ""
        row = f"this run: {c['condition']}{size}{stands}\n{why}"
        recs += [
            {
                "row": row,
                "model": c["condition"],
                "label": g,
                "pct": t[g]["pct"] if drawn else None,
                "n": t.get("n"),
                "status": c["status"],
                "confirmed": True,
            }
            for g in GRADES
        ]
    df = pd.DataFrame(recs)
    note = (
        stage_note(summ)
        + same_grade_note(
            df[df.status != "paper"],
            "The judge graded every turn of every model {grade}: these bars cannot differ, whatever the data. ",
        )
        + "Paper: LIMA 65B in 10 live conversations; with the 30 chains it was better in 7 of 10 and tied in 3. "
        f"This run: scripted conversations (ablations.dialogue_prompts), {_judge(summ)}."
    )
    return grades_figure(
        name, src, df, "assistant turns (%)", "Fig. 7: dialogue, every assistant turn graded", out, formats, dpi, note
    )


def other_conditions(runs, out, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Conditions outside Fig. 5 and 6 (curation selectors, the dialogue models): Likert mean (95% CI) each.
    The paper reports no such numbers, so no paper bars."""
    name = "fig_extra_ablations"
    summ, src = ablation_summary(runs)
    conds = [c for c in conditions(summ) if not (FIG5_GROUPS | {"quantity"}) & set(c["groups"])]
    if not conds:
        return Drawn(name, "skipped", "no ablations/summary.json with selector or dialogue conditions")
    df = pd.DataFrame([_record("this run", c["condition"], c, group="+".join(c["groups"])) for c in conds])
    fig, (ax,) = new_fig(max(4.5, 1.0 * len(conds)), 3.4)
    _mean_bars(ax, list(df.condition), df)
    ax.set_title(f"Other ablations: curation selectors and dialogue data\n(no paper values exist; {_judge(summ)})")
    sizes = (
        f" Selector conditions: {summ.get('n_examples_target')} training examples each."
        if (df.group == "selector").any()
        else ""
    )
    caption(
        fig,
        stage_note(summ)
        + same_score_note(df["mean"].dropna())
        + sizes
        + " Dialogue models train on their own data. n = test prompts judged.",
        width=100,
    )
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def draw(runs, out, formats=("png", "pdf"), dpi: int = 200) -> list[Drawn]:
    """Every ablation figure, in the paper's order, then the other conditions (`runs`: run folders, `out`: folder)."""
    runs, out, kw = [Path(r) for r in runs], Path(out), {"formats": tuple(formats), "dpi": dpi}
    return [
        ablation_means(runs, out, **kw),
        quantity(runs, out, **kw),
        dialogue(runs, out, **kw),
        other_conditions(runs, out, **kw),
    ]
