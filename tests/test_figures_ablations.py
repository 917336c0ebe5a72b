"""The ablation figures (Fig. 5, 6, 7 and the other conditions) from a hand-made ablations/summary.json: the bars
and points drawn, their labels (n, "not run", "failed (stage)"), the CSV behind each, and no condition in the wrong
figure."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from matplotlib.container import BarContainer

from lima_repro import figures
from lima_repro import figures_ablations as fa
from lima_repro.files import write_json


def likert(mean, half=0.5, n=2):
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half}


def ok(name, groups, mean, **kw):
    return {"condition": name, "groups": groups, "status": "ok", "n_examples": 2, "likert": likert(mean), **kw}


def failed(name, groups, stage, **kw):
    return {"condition": name, "groups": groups, "status": "failed", "failed_stage": stage, "error": "E: x", **kw}


TURNS = {
    "n": 4,
    "invalid": 1,
    "turns": 5,
    "conversations": 2,
    "Excellent": {"count": 1, "pct": 25.0},
    "Pass": {"count": 1, "pct": 25.0},
    "Fail": {"count": 2, "pct": 50.0},
}


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "run"
    write_json(
        r / "ablations" / "summary.json",
        {
            "judge": "script",
            "n_examples_target": 2,
            "num_samples": 1,
            "order": [
                "se_filtered",
                "wikihow",
                "se_unfiltered",
                "se_4",
                "se_8",
                "select_random",
                "select_longest",
                "dialogue_without",
                "dialogue_with",
            ],
            "conditions": [
                ok("se_filtered", ["diversity", "quality", "quantity"], 4.5, x=2, paper="filtered Stack Exchange"),
                {**ok("wikihow", ["diversity"], 1.0, paper="wikiHow"), "n_examples": 3},  # at the floor; off size
                failed("se_unfiltered", ["quality"], "train", paper="unfiltered Stack Exchange"),
                {**ok("se_4", ["quantity"], 3.0, x=4), "n_examples": 4},
                ok("select_random", ["selector"], 2.0),
                {
                    **ok("dialogue_without", ["dialogue"], 2.5, paper="1,000 ex.", dialogue_turns=TURNS),
                    "n_examples": 44,
                    "n_multi_turn": 0,
                },
                failed("dialogue_with", ["dialogue"], "dialogue", paper="1,030 ex."),
            ],
            "not_run": [
                {"condition": "se_8", "groups": ["quantity"], "x": 8, "status": "not_run"},
                {"condition": "select_longest", "groups": ["selector"], "status": "not_run"},
            ],
        },
    )
    return r


def bars(ax):
    return {c.get_label(): [round(b.get_height(), 2) for b in c] for c in ax.containers if isinstance(c, BarContainer)}


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_fig5_holds_only_the_papers_conditions_and_labels_what_is_missing(run, tmp_path):
    d = fa.ablation_means([run], tmp_path)
    ax = d.fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "filtered Stack Exchange",
        "wikiHow",
        "unfiltered Stack Exchange",
    ]
    assert bars(ax) == {"paper": [3.83, 3.49, 3.33], "this run": [4.5, 1.0]}
    assert "4.50\nn = 2" in texts(ax) and "1.00\nn = 2" in texts(ax)  # wikiHow's bar at the floor still reads
    assert "failed (train)" in texts(ax)
    csv = pd.read_csv(tmp_path / "fig5_ablations.csv")
    mine = csv[csv.series == "this run"]
    assert list(mine.run_condition) == ["se_filtered", "wikihow", "se_unfiltered"]  # no selector, dialogue, se_4
    assert list(mine["mean"].fillna(0)) == [4.5, 1.0, 0] and list(mine.status) == ["ok", "ok", "failed"]
    assert list(mine.lo.fillna(0)) == [4.0, 0.5, 0] and list(mine.n.fillna(0)) == [2, 2, 0]
    assert "size differs: wikihow (3)" in " ".join(d.fig._supxlabel.get_text().split())


def test_fig6_quantity_points_and_the_size_that_did_not_run(run, tmp_path):
    d = fa.quantity([run], tmp_path)
    ax = d.fig.axes[0]
    line, lost = ax.lines[0], ax.lines[-1]
    assert list(line.get_xdata()) == [2, 4] and list(line.get_ydata()) == [4.5, 3.0]
    assert list(lost.get_xdata()) == [8] and lost.get_label() == "not drawn"
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]
    assert "not run" in texts(ax) and "3.00\nn = 2" in texts(ax)
    csv = pd.read_csv(tmp_path / "fig6_quantity.csv")
    mine, paper = csv[csv.series == "this run"], csv[csv.series == "paper"]
    assert list(mine.condition) == ["se_filtered", "se_4", "se_8"] and list(mine.x) == [2, 4, 8]
    assert list(mine.status) == ["ok", "ok", "not_run"] and list(mine.hi.fillna(0)) == [5.0, 3.5, 0]
    assert list(paper.x) == [2000, 4000, 8000, 16000, 32000] and paper["mean"].isna().all()
    assert not paper.confirmed.any()  # the paper published no values: none are invented


def test_fig7_per_turn_shares_beside_the_paper(run, tmp_path):
    d = fa.dialogue([run], tmp_path)
    ax = d.fig.axes[0]
    widths = [round(p.get_width(), 1) for p in ax.patches]
    assert widths == [45.2, 19.1, 35.7, 76.1, 21.7, 2.2, 25.0, 25.0, 50.0, 0.0, 0.0, 0.0]  # Excellent, Pass, Fail
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "paper: zero-shot, 1,000 ex.\nn = 42 turns, 10 conversations"
    assert labels[1] == "paper: +30 dialogue chains, 1,030 ex.\nn = 46 turns, 10 conversations"
    # the run's own size first; the paper's condition names only the model a row stands in for
    assert labels[2] == (
        "this run: dialogue_without, 44 ex. (0 multi-turn)\nin place of the paper's 1,000 ex. model"
        "\nn = 4 turns, 2 conversations"
    )
    assert labels[3].endswith("in place of the paper's 1,030 ex. model\nfailed (dialogue)")
    csv = pd.read_csv(tmp_path / "fig7_dialogue.csv")
    assert list(csv[csv.model == "dialogue_without"].pct) == [25.0, 25.0, 50.0]
    assert csv[csv.model == "dialogue_with"].pct.isna().all() and list(csv.n[:6]) == [42] * 3 + [46] * 3
    assert d.fig._supxlabel.get_text().startswith("Paper: LIMA 65B")  # grades differ: no "cannot differ" note


def test_other_conditions_get_their_own_figure(run, tmp_path):
    d = fa.other_conditions([run], tmp_path)
    ax = d.fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "select_random",
        "select_longest",
        "dialogue_without",
        "dialogue_with",
    ]
    assert bars(ax) == {"this run": [2.0, 2.5]}  # no paper bars: the paper has no such numbers
    assert "not run" in texts(ax) and "failed (dialogue)" in texts(ax)
    csv = pd.read_csv(tmp_path / "fig_extra_ablations.csv")
    assert list(csv.group) == ["selector", "selector", "dialogue", "dialogue"]


def test_draw_all_lists_every_ablation_figure_and_skips_without_a_summary(run, tmp_path):
    summary = figures.draw_all([run], tmp_path / "out")["figures"]
    for name in ("fig5_ablations", "fig6_quantity", "fig7_dialogue", "fig_extra_ablations"):
        assert summary[name]["status"] == "drawn" and (tmp_path / "out" / f"{name}.png").stat().st_size > 1000
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [d.status for d in fa.draw([empty], tmp_path / "none")] == ["skipped"] * 4


def test_a_judge_that_cannot_tell_the_conditions_apart_is_said_in_words(run, tmp_path):
    summ = json.loads((run / "ablations" / "summary.json").read_text())
    for c in summ["conditions"]:
        if c["status"] == "ok":
            c["likert"].update(mean=1.0, lo=1.0, hi=1.0)
    summ["conditions"][-1] = {
        **summ["conditions"][-2],
        "condition": "dialogue_with",
        "paper": "1,030 ex.",
        "dialogue_turns": {**TURNS, "Excellent": {"pct": 0.0}, "Pass": {"pct": 0.0}, "Fail": {"pct": 100.0}},
    }
    summ["conditions"][-2]["dialogue_turns"] = summ["conditions"][-1]["dialogue_turns"]
    write_json(run / "ablations" / "summary.json", summ)
    words = lambda d: " ".join(d.fig._supxlabel.get_text().split())  # noqa: E731
    for draw in (fa.ablation_means, fa.quantity, fa.other_conditions):
        assert "the same mean score (1.00)" in words(draw([run], tmp_path))
    assert "graded every turn of every model Fail" in words(fa.dialogue([run], tmp_path))


def test_a_job_still_running_is_drawn_with_what_has_finished_and_says_so(run, tmp_path):
    """Conditions run as independent jobs: while one runs, the summary so far is drawn and the figure says so."""
    assert "not done" not in (fa.ablation_means([run], tmp_path).fig._supxlabel.get_text())
    write_json(run / "ablations" / "manifest.json", {"stage": "ablations", "status": "running"})
    for draw in (fa.ablation_means, fa.quantity, fa.dialogue, fa.other_conditions):
        d = draw([run], tmp_path)
        assert d.status == "drawn" and "The ablations stage is not done (manifest: running)" in " ".join(
            d.fig._supxlabel.get_text().split()
        )
