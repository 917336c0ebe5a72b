"""The evaluation figures (Fig. 1, 2, 3, safety) on a tiny hand-made run directory: three annotators' logs, a
judge's results and tagged generations, with every drawn number computed by hand in the comments."""

from __future__ import annotations

import pandas as pd
import pytest

from lima_repro import figures
from lima_repro.files import write_json, write_jsonl
from lima_repro.runs import RunDir

E, B, N = "epoch-2", "base", "neither"


def shares(win, tie, loss, n=10):
    return {
        "n": n,
        "invalid": 0,
        **{c: {"pct": v, "lo": v, "hi": v} for c, v in (("win", win), ("tie", tie), ("loss", loss))},
    }


def grades(exc, pas, fail, n):
    return {
        "n": n,
        "invalid": 0,
        **{k: {"count": None, "pct": v} for k, v in (("Excellent", exc), ("Pass", pas), ("Fail", fail))},
    }


def item(p):
    return f"{p}#0|{E}|{B}"


def log(annotator, labels):
    """An annotator's event log: ("pair", prompt, winner), ("grade", prompt, system, grade) or ("undo",)."""
    events = []
    for seq, lab in enumerate(labels):
        if lab[0] == "undo":
            events.append({"event": "undo", "seq": seq, "target": seq - 1})
        elif lab[0] == "pair":
            events.append(
                {
                    "event": "label",
                    "seq": seq,
                    "kind": "pairwise",
                    "annotator": annotator,
                    "item_id": item(lab[1]),
                    "winner": lab[2],
                }
            )
        else:
            events.append(
                {
                    "event": "label",
                    "seq": seq,
                    "kind": "absolute",
                    "annotator": annotator,
                    "item_id": item(lab[1]),
                    "system": lab[2],
                    "label": lab[3],
                }
            )
    return events


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "run"
    ann = r / "annotations"
    write_jsonl(
        ann / "a.jsonl",
        log(
            "a",
            [
                ("pair", "p1", E),
                ("pair", "p2", B),
                ("pair", "p3", N),
                ("pair", "p4", E),
                ("pair", "p5", E),
                ("grade", "p1", E, "Excellent"),
                ("grade", "p1", B, "Excellent"),
                ("undo",),
                ("grade", "p1", B, "Fail"),
                ("grade", "p2", E, "Fail"),
                ("grade", "p2", E, "Pass"),  # a later grade of the same response replaces it
                ("grade", "p6", E, "Fail"),
            ],
        ),
    )
    write_jsonl(
        ann / "b.jsonl",
        log(
            "b",
            [
                ("pair", "p1", E),
                ("pair", "p2", N),
                ("pair", "p3", N),
                ("pair", "p5", B),
                ("grade", "p1", E, "Pass"),
                ("grade", "p2", E, "Pass"),
                ("grade", "p6", E, "Fail"),
            ],
        ),
    )
    write_jsonl(ann / "c.jsonl", log("c", [("pair", "p1", B), ("pair", "p2", B), ("pair", "p3", E)]))
    write_json(
        RunDir(r).results,
        {
            "judge": "script",
            "system": E,
            "pairwise": {B: shares(60, 30, 10), "alpaca": shares(20, 30, 50), "bard": shares(None, None, None, n=0)},
            "order_consistency": {B: {"n": 10, "agreement": 0.3}, "alpaca": {"n": 10, "agreement": 0.9}},
            "pairwise_winners": {B: {item("p1"): E, item("p2"): B, item("p3"): N, item("p4"): None}},
            "absolute": {E: grades(50, 25, 25, 4)},
            "absolute_ood": {},
            "safety": {
                E: {"n": 3, "invalid": 0, "safe_pct": 200 / 3, "malicious_n": 1, "malicious_safe_pct": 0.0},
                B: {"n": 3, "invalid": 0, "safe_pct": 0.0},
            },
        },
    )
    write_jsonl(
        RunDir(r).generations,
        [
            {"checkpoint": E, "prompt_id": p, "tags": ["ood"] if p == "p6" else []}
            for p in ("p1", "p2", "p3", "p4", "p5", "p6")
        ],
    )
    return r


def widths(ax):
    return [round(p.get_width(), 2) for p in ax.patches]


def test_fig1_one_outcome_per_item_and_agreement_beside(run, tmp_path):
    d = figures.preference([run], tmp_path, "human")
    # majority per item: p1 (E, E, B) win; p2 (B, N, B) loss; p3 (N, N, E) tie; p4 (E) win; p5 (E, B) a draw = tie
    # -> 2 wins, 2 ties, 1 loss of 5 items (pooling the 12 labels as items would give 5/4/3 of 12 instead)
    assert widths(d.fig.axes[1]) == [40, 40, 20]
    assert "n = 5 items, 3 annotators;\nseveral on one item: their majority" in d.fig.axes[1].get_title()
    csv = pd.read_csv(tmp_path / "fig1_human_preference.csv")
    assert list(csv[csv.panel == "this run"].n) == [5, 5, 5]
    agree = csv[csv.panel == "agreement"]
    # a-b: p1 1 + p2 0.5 + p3 1 + p5 0 = 2.5/4; a-c: 0 + 1 + 0.5 = 1.5/3; b-c: 0 + 0.5 + 0.5 = 1/3 -> 5/10
    # with the judge (p4's verdict is invalid): a 3/3, b (1 + 0.5 + 1)/3, c (0 + 1 + 0.5)/3 -> 7/9
    assert list(agree.baseline) == [
        "paper: crowd-crowd",
        "paper: crowd-author",
        "paper: author-author",
        "paper: crowd-GPT-4",
        "paper: author-GPT-4",
        "this run: annotator-annotator",
        "this run: annotator-judge",
    ]
    assert list(agree.pct.round(2)) == [82, 81, 78, 78, 79, 50.0, 77.78]
    assert list(agree.note)[-2:] == ["50% (n = 10)", "78% (n = 9)"]
    assert widths(d.fig.axes[2]) == [82, 81, 78, 78, 79, 50.0, 77.78]


def test_fig1_agreement_missing_is_said_not_left_blank(run, tmp_path):
    for name in ("b", "c"):
        (run / "annotations" / f"{name}.jsonl").unlink()
    res = RunDir(run).read_results()
    del res["pairwise_winners"]
    write_json(RunDir(run).results, res)
    d = figures.preference([run], tmp_path, "human")
    assert widths(d.fig.axes[1]) == [60, 20, 20]  # a alone: p1 p4 p5 win, p3 tie, p2 loss
    notes = [t.get_text() for t in d.fig.axes[2].texts]
    assert notes[-2:] == ["not run: one annotator", "not run: no per-item judge verdicts"]


def test_fig2_marks_a_position_biased_judge(run, tmp_path):
    d = figures.preference([run], tmp_path, "llm")
    ticks = [t.get_text() for t in d.fig.axes[1].get_yticklabels()]
    assert ticks == [
        "base\nposition-biased judge\n(order consistency 0.30)\n(n = 10)",
        "alpaca (Alpaca-65B)\n(n = 10)",
        "bard (Bard)\n(n = 0)",
    ]
    assert widths(d.fig.axes[1])[-3:] == [0, 0, 0] and "not run" in [t.get_text() for t in d.fig.axes[1].texts]
    csv = pd.read_csv(tmp_path / "fig2_llm_preference.csv")
    mine = csv[csv.panel == "this run"]
    assert list(mine.position_biased) == [True] * 3 + [False] * 6
    assert "base: the judge's verdicts on the two orders of a pair agree 30% of the time" in d.fig._supxlabel.get_text()


def test_fig3_from_human_grades_with_grader_n_and_ood_row(run, tmp_path):
    d = figures.absolute([run], tmp_path)
    ax = d.fig.axes[0]
    # epoch-2: p1 (a Excellent, b Pass: a draw goes to the lower grade) Pass, p2 Pass, p6 Fail -> 0/66.67/33.33;
    # base: p1 Fail (a's Excellent was undone); OOD = p6 only: Fail
    assert widths(ax) == [50, 38, 12, 45, 35, 20, 0, 66.67, 33.33, 0, 0, 100, 0, 0, 100]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "paper: 50 test prompts\n(the authors, n = 50)",
        "paper: 20 OOD prompts\n(the authors, n = 20)",
        "this run: epoch-2\n(human, n = 3)",
        "this run: base\n(human, n = 1)",
        "this run OOD: epoch-2\n(human, n = 1)",
    ]
    csv = pd.read_csv(tmp_path / "fig3_absolute.csv")
    assert set(csv[csv.panel == "this run"].grader) == {"human"}


def test_fig3_reads_past_a_torn_last_line_and_one_system_all_fail_is_no_same_grade_note(run, tmp_path):
    with open(run / "annotations" / "b.jsonl", "ab") as fh:
        fh.write(b'{"event": "label", "kind": "abso')  # a write cut short: no newline, not JSON
    with pytest.warns(UserWarning, match="cut short"):
        d = figures.absolute([run], tmp_path)
    assert widths(d.fig.axes[0])[6:9] == [0, 66.67, 33.33]  # epoch-2 as without the torn line
    # base got 100% Fail, epoch-2 a mix: the grader did tell them apart, so no "every system" note
    # no caption: only the footer naming the run, its base model and its judge
    assert d.fig._supxlabel.get_text() == "run: run | base model: unknown | judge: script"


def test_fig3_from_the_judge_without_human_grades_says_when_no_prompt_is_ood(run, tmp_path):
    for f in (run / "annotations").iterdir():
        f.unlink()
    d = figures.absolute([run], tmp_path)
    ax = d.fig.axes[0]
    assert widths(ax) == [50, 38, 12, 45, 35, 20, 50, 25, 25, 0, 0, 0]
    assert [t.get_text() for t in ax.get_yticklabels()][2:] == [
        "this run: epoch-2\n(LLM judge script, n = 4)",
        "this run OOD\n(no test prompt tagged ood)",
    ]
    assert "not run" in [t.get_text() for t in ax.texts]


def test_safety_beside_the_paper_with_missing_subsets_labelled(run, tmp_path):
    d = figures.safety([run], tmp_path)
    ax = d.fig.axes[0]
    assert widths(ax) == [80, 60, 66.67, 0, 0, 0]
    assert [t.get_text() for t in ax.texts] == [
        "80% (n = 30)",
        "60% (6 of 10)",
        "67% (n = 3)",
        "0% (n = 1)",
        "0% (n = 3)",
        "not run: no sensitive prompt tagged malicious",
    ]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == [
        "paper: 30 sensitive prompts",
        "paper: 10 of them malicious",
    ]
    csv = pd.read_csv(tmp_path / "safety.csv")
    assert list(csv.value.round(2).fillna(-1)) == [80, 60, 66.67, 0, 0, -1]


def test_fig1_before_anyone_annotated_draws_the_paper_and_says_how_to_add_labels(run, tmp_path):
    for f in (run / "annotations").iterdir():
        f.unlink()
    res = RunDir(run).read_results()
    res["pairwise_calibration"] = {"base": {"verdict": "The judge cannot tell epoch-2 from base."}}
    write_json(RunDir(run).results, res)
    out = tmp_path / "out"
    d = figures.preference([run], out, "human")
    assert (d.status, d.source) == ("drawn", str(run))
    assert d.reason == (
        "paper only: no pairwise human labels yet; to add them, open notebooks/annotate.ipynb in JupyterLab with "
        f'run_dir = "{run}" and annotator = your name; each label is saved to {run}/annotations/<name>.jsonl as it '
        "is given"
    )
    assert (out / "fig1_human_preference.png").stat().st_size > 1000
    csv = pd.read_csv(out / "fig1_human_preference.csv")
    assert set(csv.panel) == {"paper"} and len(csv) == 15  # Fig. 1's five baselines x win / tie / loss
    assert list(csv.pct[:3]) == [53, 21, 26]  # Alpaca-65B
    paper, mine = d.fig.axes  # no agreement panel: no labels to agree
    assert widths(paper)[:3] == [53, 21, 26] and widths(mine) == []
    assert mine.get_title() == "this run\n(human annotators: no labels yet)"
    (msg,) = mine.texts
    assert msg.get_text().startswith("No human labels yet.\n\nTo add them, open notebooks/annotate.ipynb")
    # the message stays inside its own panel, clear of the paper's bars and tick labels
    r = d.fig.canvas.get_renderer()
    box, frame, left = msg.get_window_extent(r), mine.get_window_extent(r), paper.get_tightbbox(r)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert box.x0 > left.x1
    # under it only who made it: the LLM judge's verdicts belong to Fig. 2, not to a figure of human labels
    assert d.fig.get_supxlabel().startswith(f"run: {run.name} |")


def test_evaluation_figures_skip_with_reasons(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert figures.preference([], tmp_path, "human").reason.startswith("no pairwise human labels")
    assert figures.absolute([empty], tmp_path).reason.startswith("no absolute grades")
    assert figures.safety([empty], tmp_path).reason.startswith("no judge/results.json with safety")


def test_paper_values_hold_agreement_and_safety_per_value():
    from lima_repro import paper_values as pv

    t = pv.table("Sec. 4").set_index("key")
    assert t.loc["agreement/crowd-crowd", "value"] == 82 and t.loc["agreement/author-GPT-4", "value"] == 79
    assert (t.loc["safety/sensitive", "value"], t.loc["safety/malicious", "value"]) == (80, 60)
    assert t.confirmed.all() and len(t) == 7
    fig2 = pv.table("Fig. 2").set_index("key").confirmed
    assert fig2["GPT-4/win"] and not fig2["GPT-4/tie"] and not fig2["GPT-4/loss"]


def test_every_png_names_run_base_model_and_judge_and_a_zero_is_visible(run, tmp_path):
    write_json(run / "config.json", {"model": {"name": "org/base-7b"}, "judge": {"model": "gpt-4"}})
    res = RunDir(run).read_results()
    res["safety"]["epoch-2"]["safe_pct"] = 0.0
    write_json(run / "judge" / "results.json", res)
    d = figures.safety([run], tmp_path)
    assert d.fig._supxlabel.get_text() == "run: run | base model: org/base-7b | judge: script"
    floor = [ln for ln in d.fig.axes[0].lines if ln.get_marker() == "|"]
    # rows: paper x2, then epoch-2 sensitive / malicious, base sensitive / malicious ("not run": no mark)
    assert [list(ln.get_ydata()) for ln in floor] == [[2], [3], [4]]
