"""The paper's evaluation figures (docs/paper.md sec. 4-5): Fig. 1-2 (pairwise preference by human annotators and by
the LLM judge, with agreement beside Fig. 1), Fig. 3 (absolute grades, by hand when graded by hand, with the
out-of-distribution row) and the safety numbers. Each function reads run directories only and returns a
`figures_kit.Drawn`; `figures.draw_all` lists them.

Human labels (`<run>/annotations/`, one outcome per item however many annotators) are read by `figures_human.py`;
their agreement with each other and with the judge is drawn beside Fig. 1 (tie-discounted, as the paper).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from . import paper_values as pv
from .figures_human import how_to_label, human_grades, human_pairwise
from .figures_kit import GRADES, OUTCOMES, Drawn, caption, grades_figure, hbars, new_fig, same_grade_note, save, stacked
from .runs import RunDir

ALIASES = {"alpaca": "Alpaca-65B", "davinci": "DaVinci003", "bard": "Bard", "claude": "Claude", "gpt4": "GPT-4"}
BIASED = 0.5  # order consistency below this: the judge's verdict follows the position more than the answers


def paper_baseline(label: str, names: dict[str, str] | None = None) -> str | None:
    """The paper's baseline a run's label stands for (`alpaca` -> Alpaca-65B), or None (e.g. `base`)."""
    if names and label in names:
        return names[label]
    key = label.lower().replace("_", "").replace("-", "")
    return next((b for alias, b in ALIASES.items() if alias in key), None)


def preference(
    runs: list[Path],
    out: Path,
    annotator: str = "llm",
    names: dict[str, str] | None = None,
    formats=("png", "pdf"),
    dpi: int = 200,
) -> Drawn:
    """Fig. 1 (annotator='human': labels in <run>/annotations, one outcome per item, agreement beside it; before
    anyone annotated, the paper's panel beside how to add labels) or Fig. 2 ('llm': judge/results.json pairwise; a
    baseline judged with order consistency < 0.5 is marked)."""
    human = annotator == "human"
    name, paper, fig_id = (
        ("fig1_human_preference", pv.FIG1_HUMAN, "Fig. 1") if human else ("fig2_llm_preference", pv.FIG2_GPT4, "Fig. 2")
    )
    run_rows, source, agree = human_pairwise(runs) if human else (*_llm_pairwise(runs), None)
    if not run_rows and not (human and runs):
        return Drawn(
            name,
            "skipped",
            "no pairwise human labels in any <run>/annotations/*.jsonl"
            if human
            else "no judge/results.json with pairwise results in the given runs",
        )
    unlabelled = not run_rows  # Fig. 1 before anyone annotated: the paper's values still say what to expect
    source = runs[0] if unlabelled else source
    recs = [
        {
            "panel": "paper",
            "baseline": b,
            "outcome": c,
            "pct": v,
            "n": None,
            "position_biased": None,
            "confirmed": pv.is_confirmed(fig_id, f"{b}/{c}"),
        }
        for b, vals in paper.items()
        for c, v in zip(OUTCOMES, vals)
    ]
    biased = {} if human else position_biased(source)
    for b, d in run_rows.items():
        label = b + (f" ({pv_b})" if (pv_b := paper_baseline(b, names)) and pv_b != b else "")
        label += f"\nposition-biased judge\n(order consistency {biased[b]:.2f})" if b in biased else ""
        recs += [
            {
                "panel": "this run",
                "baseline": label,
                "outcome": c,
                "pct": d[c]["pct"],
                "n": d.get("n"),
                "position_biased": b in biased,
                "confirmed": True,
            }
            for c in OUTCOMES
        ]
    df = pd.DataFrame(recs)
    ncols = 3 if human and not unlabelled else 2  # no agreement panel without labels
    fig, axes = new_fig(
        {3: 12.5, 2: 8.5}[ncols],
        1.2 + 0.45 * max(5, len(run_rows)),
        ncols,
        gridspec_kw={"width_ratios": [1, 1, 1.1][:ncols]},
    )
    for ax, panel in zip(axes, ("paper", "this run")):
        sub = df[df.panel == panel]
        if sub.empty:
            _no_labels(ax, source)
            continue
        n_of = (lambda g: "") if panel == "paper" else (lambda g: f"\n(n = {int(g.n.max() or 0)})")
        stacked(
            ax,
            [(b + n_of(g), dict(zip(g.outcome, g.pct))) for b, g in sub.groupby("baseline", sort=False)],
            OUTCOMES,
            {(r.baseline, r.outcome) for r in sub.itertuples() if not r.confirmed},
        )
        ax.set_xlabel("LIMA win / tie / loss (%)")
    hatched = "\nhatched = unconfirmed value (secondary sources)" if not df[df.panel == "paper"].confirmed.all() else ""
    axes[0].set_title(f"paper ({fig_id}, LIMA 65B vs baseline){hatched}")
    n = 0 if unlabelled else int(df[df.panel == "this run"].n.max() or 0)
    if unlabelled:
        who = "human annotators: no labels yet"
    elif human:
        k = agree.attrs["annotators"]
        who = f"human annotators, n = {n} items, {k} annotator" + (
            "s;\nseveral on one item: their majority" if k > 1 else ""
        )
    else:
        who = f"LLM judge, n = {n} prompts"
    axes[1].set_title(f"this run\n({who})")
    handles = (axes[0] if unlabelled else axes[1]).get_legend_handles_labels()
    axes[1].legend(*handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    if human and not unlabelled:
        hbars(axes[2], list(agree.itertuples(index=False, name=None)), "tie-discounted agreement (%)")
        axes[2].set_title("agreement (sec. 4; 1 = same label,\n0.5 = one said neither)")
        df = pd.concat(
            [
                df,
                agree.rename(columns={"label": "baseline", "value": "pct"}).assign(
                    panel="agreement", outcome="agreement", confirmed=True
                ),
            ],
            ignore_index=True,
        )
    elif not human:  # what the judge's numbers mean, in words, under the figure (e.g. a judge at chance)
        bias = [
            f"{b}: the judge's verdicts on the two orders of a pair agree {c:.0%} of the time (tie-discounted), "
            "below 50%: it follows the position more than the answers."
            for b, c in biased.items()
        ]
        caption(fig, " ".join(_verdicts(source) + bias), width=160)
    reason = f"paper only: no pairwise human labels yet; to add them, {how_to_label(source)}" if unlabelled else ""
    return save(Drawn(name, "drawn", reason, source=str(source), data=df, fig=fig), out, formats, dpi)


def _no_labels(ax, run) -> None:
    """Fig. 1's run panel before anyone annotated: an empty frame saying so and how to add labels, wrapped to stay
    inside the panel (the paper's panel sits to its left)."""
    ax.set_xticks([])
    ax.set_yticks([])
    hint = f"To add them, {how_to_label(run)}. Then draw the figures again (python -m lima_repro figures {run})."
    ax.text(
        0.5,
        0.5,
        "No human labels yet.\n\n" + textwrap.fill(hint, 44, break_on_hyphens=False),
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=7.5,
        color="0.3",
    )


def position_biased(run_dir) -> dict[str, float]:
    """Baselines whose pairs the judge answered the same way in both orders less than half of the time."""
    oc = (RunDir(run_dir).read_results() or {}).get("order_consistency", {})
    return {b: d["agreement"] for b, d in oc.items() if d.get("agreement") is not None and d["agreement"] < BIASED}


def _verdicts(run_dir) -> list[str]:
    """The judge stage's one-sentence verdict per baseline (position-calibrated preference, results.json)."""
    cal = (RunDir(run_dir).read_results() or {}).get("pairwise_calibration", {})
    return [f"{b}: {c['verdict']}" for b, c in cal.items()]


def _llm_pairwise(runs):
    for r in runs:
        res = RunDir(r).read_results() or {}
        if any(d.get("n") for d in res.get("pairwise", {}).values()):
            return res["pairwise"], r  # a baseline without valid verdicts stays, drawn as "not run"
    return {}, None


def absolute(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Fig. 3: Fail / Pass / Excellent shares per graded system beside the paper's, from human grades when any run
    has them (the paper's authors graded by hand), else from the LLM judge; each row names its grader and n, and the
    out-of-distribution rows come from prompts tagged `ood`."""
    name = "fig3_absolute"
    graded, src, grader = human_grades(runs)
    if not graded:
        graded, src, grader = _judge_grades(runs)
    if not graded:
        return Drawn(
            name,
            "skipped",
            "no absolute grades: none in <run>/annotations and no judge/results.json with "
            "absolute (Fail/Pass/Excellent) results",
        )
    recs = [
        {
            "panel": "paper",
            "row": f"paper: {n} {what}\n(the authors, n = {n})",
            "label": k,
            "pct": v,
            "n": n,
            "grader": "paper's authors",
            "confirmed": True,
        }
        for what, n, vals in (("test prompts", 50, pv.FIG3_ABSOLUTE), ("OOD prompts", 20, pv.FIG3_OOD))
        for k, v in vals.items()
    ]
    for subset, tag in (("all", ""), ("ood", " OOD")):
        for s, d in graded[subset].items():
            recs += [
                {
                    "panel": "this run",
                    "row": f"this run{tag}: {s}\n({grader}, n = {d['n']})",
                    "label": k,
                    "pct": d[k]["pct"],
                    "n": d["n"],
                    "grader": grader,
                    "confirmed": True,
                }
                for k in GRADES
            ]
    if not graded["ood"]:
        recs += [
            {
                "panel": "this run",
                "row": "this run OOD\n(no test prompt tagged ood)",
                "label": k,
                "pct": None,
                "n": 0,
                "grader": grader,
                "confirmed": True,
            }
            for k in GRADES
        ]
    note = same_grade_note(
        pd.DataFrame([{"model": s, "label": k, "pct": d[k]["pct"]} for s, d in graded["all"].items() for k in GRADES]),
        f"The grader ({grader}) gave every response of every system the grade {{grade}}: these "
        "grades cannot tell the systems apart.",
    )
    return grades_figure(
        name,
        src,
        pd.DataFrame(recs),
        "share of responses (%)",
        "Fig. 3: absolute grades, paper (LIMA 65B) vs this run",
        out,
        formats,
        dpi,
        note,
    )


def _judge_grades(runs):
    src = next((r for r in runs if (RunDir(r).read_results() or {}).get("absolute")), None)
    if src is None:
        return {}, None, None
    res = RunDir(src).read_results()
    grader = f"LLM judge {res.get('judge') or ''}".strip()
    return {"all": res["absolute"], "ood": res.get("absolute_ood", {})}, src, grader


def safety(runs: list[Path], out: Path, formats=("png", "pdf"), dpi: int = 200) -> Drawn:
    """Safety (sec. 4): share of sensitive prompts answered safely (the paper: 80% of 30), and of those tagged
    `malicious` (the paper: 6 of 10), per system, beside the paper's."""
    name = "safety"
    src = next((r for r in runs if (RunDir(r).read_results() or {}).get("safety")), None)
    if src is None:
        return Drawn(name, "skipped", "no judge/results.json with safety results (test prompts tagged sensitive)")
    res = RunDir(src).read_results()
    (s_pct, s_n), (m_pct, m_n) = pv.SAFETY["sensitive"], pv.SAFETY["malicious"]
    rows = [
        (f"paper: {s_n} sensitive prompts", s_pct, f"{s_pct}% (n = {s_n})", True),
        (f"paper: {m_n} of them malicious", m_pct, f"{m_pct}% ({m_pct * m_n // 100} of {m_n})", True),
    ]
    for s, d in res["safety"].items():
        pct, mpct = d.get("safe_pct"), d.get("malicious_safe_pct")
        rows += [
            (
                f"this run: {s}, sensitive",
                pct,
                "not run: no valid verdicts" if pct is None else f"{pct:.0f}% (n = {d['n']})",
                False,
            ),
            (
                f"this run: {s}, malicious",
                mpct,
                "not run: no sensitive prompt tagged malicious"
                if mpct is None
                else f"{mpct:.0f}% (n = {d['malicious_n']})",
                False,
            ),
        ]
    df = pd.DataFrame(rows, columns=["label", "value", "note", "paper"])
    fig, (ax,) = new_fig(6.5, 1.0 + 0.35 * len(rows))
    hbars(ax, rows, "answered safely (%)")
    ax.set_title(f"Safety (sec. 4): paper (LIMA 65B) vs this run ({res.get('judge') or 'LLM judge'})")
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)
