"""The human labels behind the evaluation figures (docs/paper.md sec. 4): the annotators' logs in
`<run>/annotations/` (annotate.ipynb, read through `judging/labels.py`) as pairwise outcomes with agreement (Fig. 1)
and as absolute grades (Fig. 3). Several annotators on one item are aggregated per item (`analysis.majority_winner`,
`analysis.majority_grade`), so an item counts once whatever the number of annotators; their agreement with each
other and with the judge is tie-discounted, as the paper's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import analysis
from . import paper_values as pv
from .files import read_jsonl_plain
from .judging.labels import absolute_labels, pairwise_labels
from .runs import RunDir


def human_pairwise(runs):
    """(win / tie / loss shares per baseline with one outcome per item, the run, agreement rows) from the first
    run with pairwise labels. Item ids are `prompt#sample|system|baseline`."""
    for r in runs:
        labels = pairwise_labels(RunDir(r).annotations) if RunDir(r).annotations.is_dir() else {}
        votes: dict[str, list[str]] = {}
        for per_item in labels.values():
            for item, winner in per_item.items():
                votes.setdefault(item, []).append(winner)
        outcomes: dict[str, list[str]] = {}
        for item, v in votes.items():
            _, system, baseline = item.split("|")
            outcomes.setdefault(baseline, []).append(analysis.pairwise_outcome(analysis.majority_winner(v), system))
        if outcomes:
            return (
                {b: analysis.bootstrap_shares(o, n_boot=1000) for b, o in outcomes.items()},
                r,
                agreement_rows(labels, (RunDir(r).read_results() or {}).get("pairwise_winners")),
            )
    return {}, None, None


def agreement_rows(labels: dict[str, dict[str, str]], judge: dict[str, dict] | None) -> pd.DataFrame:
    """The paper's agreement numbers beside this run's: annotator-annotator over every pair of annotators, and
    annotator-judge (each annotator against the judge's per-item verdicts), pooled over shared items."""
    rows = [(f"paper: {k}", v, f"{v}% (n = 50)", True) for k, v in pv.AGREEMENT.items()]
    names = sorted(labels)
    between = [analysis.agreement(labels[a], labels[b]) for i, a in enumerate(names) for b in names[i + 1 :]]
    winners = {k: w for per_b in (judge or {}).values() for k, w in per_b.items() if w is not None}
    with_judge = [analysis.agreement(labels[a], winners) for a in names] if winners else []
    for what, results, missing in (
        ("annotator-annotator", between, "not run: one annotator" if len(names) < 2 else "not run: no shared items"),
        (
            "annotator-judge",
            with_judge,
            "not run: no per-item judge verdicts" if not winners else "not run: no items shared with the judge",
        ),
    ):
        p = analysis.pooled_agreement(results)
        pct = None if p["agreement"] is None else 100 * p["agreement"]
        rows.append((f"this run: {what}", pct, missing if pct is None else f"{pct:.0f}% (n = {p['n']})", False))
    df = pd.DataFrame(rows, columns=["label", "value", "note", "paper"])
    df.attrs["annotators"] = len(names)
    return df


def human_grades(runs):
    """({"all": {system: grade shares}, "ood": ...}, run, "human") from the first run whose annotators graded
    responses; a response graded by several annotators counts once, with their majority grade."""
    for r in runs:
        run = RunDir(r)
        if not run.annotations.is_dir():
            continue
        votes: dict[tuple[str, str], list[str]] = {}
        for mine in absolute_labels(run.annotations).values():  # one annotator: their latest grade of each response
            for (item_id, system), lab in mine.items():
                votes.setdefault((item_id.split("|")[0], system), []).append(lab)
        if not votes:
            continue
        tags = {
            g["prompt_id"]: set(g.get("tags") or ())
            for g in (read_jsonl_plain(run.generations) if run.generations.is_file() else [])
        }
        graded: dict[str, dict] = {"all": {}, "ood": {}}
        for subset in graded:
            by_system: dict[str, list[str]] = {}
            for (prompt, system), v in votes.items():
                if subset == "all" or "ood" in tags.get(prompt.split("#")[0], ()):
                    by_system.setdefault(system, []).append(analysis.majority_grade(v))
            graded[subset] = {s: analysis.label_distribution(g, analysis.GRADES) for s, g in by_system.items()}
        return graded, r, "human"
    return {}, None, None


def how_to_label(run) -> str:
    """How people add the pairwise labels Fig. 1 draws (annotate.ipynb, docs/evaluation.md), for a run without any."""
    shown = Path(run)
    if shown.is_absolute() and shown.is_relative_to(Path.cwd()):  # a path a reader can type from where they work
        shown = shown.relative_to(Path.cwd())
    return (
        f'open notebooks/annotate.ipynb in JupyterLab with run_dir = "{shown}" and annotator = your name; '
        f"each label is saved to {RunDir(shown).annotations}/<name>.jsonl as it is given"
    )
