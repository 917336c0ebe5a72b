"""Figures from hand-made results files: the numbers drawn (CSV and plotted artists), labels, the paper overlay,
skipping with a reason when inputs are missing, and the `figures` CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lima_repro import cli, figures, figures_ablations, paper_values
from lima_repro.files import write_json, write_jsonl


def shares(win, tie, loss, n=10):
    return {
        "n": n,
        "invalid": 0,
        **{c: {"pct": v, "lo": v - 5, "hi": v + 5} for c, v in (("win", win), ("tie", tie), ("loss", loss))},
    }


def grades(exc, pas, fail, n=8):
    return {
        "n": n,
        "invalid": 0,
        "Excellent": {"count": 0, "pct": exc},
        "Pass": {"count": 0, "pct": pas},
        "Fail": {"count": 0, "pct": fail},
    }


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "run"
    write_json(
        r / "judge" / "results.json",
        {
            "system": "epoch-2",
            "judge": "script",
            "pairwise": {"base": shares(60, 30, 10), "alpaca": shares(20, 30, 50)},
            "absolute": {"epoch-2": grades(25, 50, 25)},
            "likert": {
                "epoch-1": {"n": 4, "mean": 2.5, "lo": 2, "hi": 3},
                "epoch-2": {"n": 4, "mean": 4.0, "lo": 3.5, "hi": 4.5},
            },
        },
    )
    write_jsonl(
        r / "train" / "metrics.jsonl",
        [
            {"type": "train", "step": 1, "epoch": 1, "loss": 3.0},
            {"type": "eval", "step": 2, "epoch": 1, "eval_loss": 1, "perplexity": 5.0},
            {"type": "train", "step": 3, "epoch": 2, "loss": 2.0},
            {"type": "eval", "step": 4, "epoch": 2, "eval_loss": 1, "perplexity": 7.0},
        ],
    )
    write_json(r / "train" / "checkpoints.json", [{"name": "epoch-1", "step": 2}, {"name": "epoch-2", "step": 4}])
    write_json(
        r / "curate" / "datacard.json",
        {
            "splits": {
                "train": [
                    {
                        "source": "wikihow",
                        "n": 3,
                        "avg_input_tokens": 10.0,
                        "avg_output_tokens": 300.0,
                        "avg_input_chars": 50,
                    }
                ]
            }
        },
    )
    cond = lambda name, groups, mean, **kw: {
        "condition": name,
        "groups": groups,
        "status": "ok",
        "n_examples": 4,
        "likert": {"n": 2, "mean": mean, "lo": mean - 0.5, "hi": mean + 0.5},
        **kw,
    }
    write_json(
        r / "ablations" / "summary.json",
        {
            "judge": "script",
            "conditions": [
                cond("se_filtered", ["diversity", "quantity"], 4.5, paper="filtered Stack Exchange", x=2),
                cond("wikihow", ["diversity"], 3.0, paper="wikiHow"),
                cond("se_4", ["quantity"], 4.0, x=4),
                cond("dlg_without", ["dialogue"], 2.0, dialogue_turns=grades(10, 30, 60, n=10)),
                cond("dlg_with", ["dialogue"], 3.0, dialogue_turns=grades(70, 20, 10, n=10)),
                {"condition": "broken", "groups": ["selector"], "status": "failed", "error": "FileNotFoundError: x"},
            ],
        },
    )
    return r


def widths(ax):
    return [round(p.get_width(), 6) for p in ax.patches]


def test_llm_preference_draws_run_and_paper(run, tmp_path):
    d = figures.preference([run], tmp_path / "out", "llm")
    assert d.status == "drawn" and d.source == str(run)
    csv = pd.read_csv(tmp_path / "out" / "fig2_llm_preference.csv")
    mine = csv[csv.panel == "this run"]
    assert list(mine.pct) == [60, 30, 10, 20, 30, 50]
    assert "alpaca (Alpaca-65B)" in set(mine.baseline)  # a run label mapped to the paper's baseline
    paper, this = d.fig.axes[:2]
    assert widths(this) == [60, 30, 10, 20, 30, 50]
    assert widths(paper)[:3] == [64, 19, 17] and widths(paper)[-3:] == [19, 15, 66]
    assert this.get_xlabel() == "LIMA win / tie / loss (%)" and "paper" in paper.get_title()
    assert "this run" in this.get_title() and "hatched = unconfirmed" in paper.get_title()
    confirmed = csv[(csv.panel == "paper") & csv.confirmed]
    assert list(zip(confirmed.baseline, confirmed.outcome)) == [("GPT-4", "win")]  # per value: only the 19% win
    assert [p.get_hatch() for p in paper.patches][-3:] == [None, "//", "//"] and paper.patches[0].get_hatch() == "//"
    for ext in ("png", "pdf"):
        assert (tmp_path / "out" / f"fig2_llm_preference.{ext}").stat().st_size > 1000


def test_human_preference_from_annotations(run, tmp_path):
    before = figures.preference([run], tmp_path, "human")  # nobody annotated yet: the paper's panel only
    assert before.reason.startswith("paper only: no pairwise human labels yet") and len(before.fig.axes) == 2
    labels = [
        ("p1#0|epoch-2|base", "epoch-2"),
        ("p2#0|epoch-2|base", "neither"),
        ("p3#0|epoch-2|base", "base"),
        ("p4#0|epoch-2|base", "epoch-2"),
    ]
    write_jsonl(
        run / "annotations" / "ann.jsonl",
        [
            {"event": "label", "seq": k, "kind": "pairwise", "annotator": "ann", "item_id": i, "winner": w}
            for k, (i, w) in enumerate(labels)
        ],
    )
    d = figures.preference([run], tmp_path, "human")
    assert d.status == "drawn", d.reason
    assert widths(d.fig.axes[1]) == [50, 25, 25]
    assert widths(d.fig.axes[0])[:3] == [53, 21, 26]  # Fig. 1, Alpaca-65B


def test_absolute(run, tmp_path):
    d = figures.absolute([run], tmp_path)
    ax = d.fig.axes[0]
    assert widths(ax) == [50, 38, 12, 45, 35, 20, 25, 50, 25, 0, 0, 0]  # no prompt tagged ood: a "not run" row
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "paper: 50 test prompts\n(the authors, n = 50)",
        "paper: 20 OOD prompts\n(the authors, n = 20)",
        "this run: epoch-2\n(LLM judge script, n = 8)",
        "this run OOD\n(no test prompt tagged ood)",
    ]


def test_ablation_means_hold_only_the_papers_diversity_and_quality_conditions(run, tmp_path):
    """Fig. 5 draws the paper's three conditions; selector, dialogue and quantity-only ones are not mixed in
    (tests/test_figures_ablations.py draws those), and a condition the run lacks is labelled, not left blank."""
    d = figures_ablations.ablation_means([run], tmp_path)
    ax = d.fig.axes[0]
    from matplotlib.container import BarContainer

    paper, this = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert paper.get_label() == "paper" and this.get_label() == "this run"
    assert [round(b.get_height(), 2) for b in paper] == [3.83, 3.49, 3.33]
    assert [b.get_height() for b in this] == [4.5, 3.0]  # only filtered Stack Exchange and wikiHow ran
    assert "not run" in [t.get_text() for t in ax.texts]  # unfiltered Stack Exchange: labelled where its bar would be
    csv = pd.read_csv(tmp_path / "fig5_ablations.csv")
    mine = csv[csv.series == "this run"]
    assert list(mine.condition) == ["filtered Stack Exchange", "wikiHow", "unfiltered Stack Exchange"]
    assert list(mine.lo.fillna(-1)) == [4.0, 2.5, -1] and list(mine.status) == ["ok", "ok", "not_configured"]
    assert ax.get_ylabel() == "helpfulness, 1-6 (mean, 95% CI)"
    segs = ax.collections[0].get_segments()  # the error bars of "this run"
    assert (segs[0][0][1], segs[0][1][1]) == (4.0, 5.0)


def test_quantity_log2_and_perplexity_two_axes(run, tmp_path):
    d = figures_ablations.quantity([run], tmp_path)
    ax = d.fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    line = ax.lines[0]
    assert list(line.get_xdata()) == [2, 4] and list(line.get_ydata()) == [4.5, 4.0]
    assert "published no values" in " ".join(d.fig._supxlabel.get_text().split())
    csv = pd.read_csv(tmp_path / "fig6_quantity.csv")
    assert list(csv[csv.series == "paper"].n_examples) == [2000, 4000, 8000, 16000, 32000]
    assert csv[csv.series == "paper"]["mean"].isna().all()  # the paper published no numbers: none are invented

    d = figures.perplexity_score([run], tmp_path)
    ax, ax2 = d.fig.axes
    assert list(ax.lines[0].get_xdata()) == [2, 4] and list(ax.lines[0].get_ydata()) == [5.0, 7.0]
    assert list(ax2.lines[0].get_xdata()) == [2, 4] and list(ax2.lines[0].get_ydata()) == [2.5, 4.0]
    assert (ax.get_ylabel(), ax2.get_ylabel(), ax.get_xlabel()) == (
        "held-out perplexity",
        "helpfulness, 1-6",
        "training step",
    )


def test_datacard_markdown_and_csv(run, tmp_path):
    figures.datacard([run], tmp_path)
    csv = pd.read_csv(tmp_path / "table1_datacard.csv")
    assert list(csv.paper_n) == [200, 200, 200, 150, 50, 200, 1000]  # Table 1 and its total: no chains in this card
    assert csv[csv.row == "wikiHow"].iloc[0].tolist()[4:] == ["wikihow", 3, 10.0, 300.0]
    md = (tmp_path / "table1_datacard.md").read_text()
    assert "| wikiHow | 200 | 12 | 1811 | wikihow | 3 | 10 | 300 |" in md


def test_missing_inputs_are_skipped_with_reasons(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = figures.draw_all([empty], tmp_path / "out")
    fig1 = summary["figures"].pop("fig1_human_preference")  # the paper's Fig. 1, drawn before anyone annotates
    assert fig1["status"] == "drawn" and fig1["reason"].startswith("paper only: no pairwise human labels yet")
    assert all(r["status"] == "skipped" and r["reason"] for r in summary["figures"].values())
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["fig1_human_preference.png"]
    saved = json.loads((tmp_path / "out" / "figures_summary.json").read_text())
    assert saved["figures"]["fig5_ablations"]["reason"].startswith("no ablations/summary.json")


def test_cli_figures_from_several_runs(run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    assert cli.main(["figures", str(other), str(run), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "fig5_ablations: drawn" in out
    # nobody annotated either run: the paper's Fig. 1, and the first run named as where labels go
    assert "fig1_human_preference: drawn (paper only: no pairwise human labels yet; to add them, open " in out
    assert f'in JupyterLab with run_dir = "{other}" and annotator = your name;' in out
    summary = json.loads((tmp_path / "cli" / "figures_summary.json").read_text())
    assert summary["figures"]["fig3_absolute"]["source"] == str(run)
    assert (tmp_path / "cli" / "paper_values.csv").exists()


def test_paper_values_cite_figures_and_flag_unconfirmed():
    t = paper_values.table()
    assert set(t.figure) >= {"Fig. 1", "Fig. 2", "Fig. 3", "Fig. 5", "Fig. 6", "Fig. 7", "Fig. 9", "Table 1"}
    assert not t[t.figure == "Fig. 6"].confirmed.any() and t[t.figure == "Fig. 1"].confirmed.all()
    fig2 = t[(t.figure == "Fig. 2")]
    assert set(fig2[fig2.confirmed].key) == {"GPT-4/win"}
    assert t[(t.figure == "Fig. 5") & (t.key == "wikiHow")].value.item() == 3.49


@pytest.mark.notebooks
def test_figures_notebook_records_its_summary(run, tmp_path):
    import papermill as pm

    from lima_repro.pipeline import notebooks_dir

    out_nb = tmp_path / "06_figures.ipynb"
    pm.execute_notebook(
        str(notebooks_dir() / "06_figures.ipynb"),
        str(out_nb),
        kernel_name="python3",
        # a test never writes into the repository's figures/
        parameters={"profile": "demo", "run_dir": str(run), "overrides": {"figures.copy_to": None}},
        progress_bar=False,
    )
    text = "\n".join(
        "".join(o.get("text", "")) for c in json.loads(out_nb.read_text())["cells"] for o in c.get("outputs", [])
    )
    line = next(ln for ln in text.splitlines() if ln.startswith('{"figures_summary"'))
    summary = json.loads(line)["figures_summary"]
    assert summary["fig5_ablations"] == "drawn"
    assert summary["fig1_human_preference"].startswith("drawn (paper only: no pairwise human labels yet; to add them")
    assert (run / "figures" / "fig5_ablations.png").exists()


def test_copy_to_repository_names_the_copies_with_relative_paths(run, tmp_path, monkeypatch):
    from lima_repro.config import load_config

    monkeypatch.setattr(figures, "repo_path", lambda p: tmp_path / p)  # the "repository root" is tmp_path
    cfg = load_config("demo", overrides={"run_dir": str(run.resolve()), "figures.copy_to": "figs"})
    (tmp_path / "figs").mkdir()
    for stale in ("safety.png", "fig1_human_preference.pdf", "notes.txt"):  # from an older run, and the user's file
        (tmp_path / "figs" / stale).write_text("old")
    figures.run_figures(cfg)
    # this run has no safety results: its old copy goes, a file no figure writes stays; no human labels: Fig. 1 is
    # the paper's panel alone, written over the old copy
    assert sorted(p.name for p in (tmp_path / "figs").iterdir() if "safety" in p.name or p.suffix == ".txt") == [
        "notes.txt"
    ]
    assert (tmp_path / "figs" / "fig1_human_preference.pdf").read_bytes() != b"old"
    summary = json.loads((tmp_path / "figs" / "figures_summary.json").read_text())
    assert summary["runs"] == ["run"]
    assert summary["figures"]["fig3_absolute"]["source"] == "run"
    assert summary["figures"]["fig3_absolute"]["files"] == [
        "figs/fig3_absolute.csv",
        "figs/fig3_absolute.png",
        "figs/fig3_absolute.pdf",
    ]
    assert (tmp_path / "figs" / "fig3_absolute.png").exists()
    # the run's own summary keeps its absolute paths
    assert json.loads((run / "figures" / "figures_summary.json").read_text())["runs"] == [str(run.resolve())]


def caption_of(drawn) -> str:
    """The caption under a figure as one line (it is wrapped to the figure's width)."""
    return " ".join(drawn.fig._supxlabel.get_text().split())


def test_figures_say_in_words_when_the_judge_cannot_tell_systems_apart(run, tmp_path):
    """A judge whose numbers cannot move is stated under the figure, not left for the reader to guess."""
    res = json.loads((run / "judge" / "results.json").read_text())
    # grades that differ: no caption, the footer alone
    assert figures.absolute([run], tmp_path).fig._supxlabel.get_text().startswith("run: run | base model: ")
    res["absolute"] = {"epoch-2": grades(0, 0, 100), "base": grades(0, 0, 100)}
    res["pairwise_calibration"] = {"base": {"verdict": "The judge cannot tell epoch-2 from base: a coin flip."}}
    write_json(run / "judge" / "results.json", res)
    assert "gave every response of every system the grade Fail" in caption_of(figures.absolute([run], tmp_path))
    assert "cannot tell epoch-2 from base" in caption_of(figures.preference([run], tmp_path, "llm"))
    summ = json.loads((run / "ablations" / "summary.json").read_text())
    for c in summ["conditions"]:
        c.get("likert", {}).update(mean=1.0, lo=1.0, hi=1.0)
    write_json(run / "ablations" / "summary.json", summ)
    assert "same mean score (1.00)" in caption_of(figures_ablations.ablation_means([run], tmp_path))


def test_the_figures_notebook_shows_every_drawn_figure_and_table(run, tmp_path, monkeypatch, capsys):
    """notebook_views.show_figures: a PNG for each drawn figure (with why, when drawn from the paper alone), the
    Markdown of each drawn table (Table 1 and the published comparison alike), a status line for the rest."""
    from lima_repro import notebook_views
    from lima_repro.config import Config
    from lima_repro.config.loader import to_dict
    from lima_repro.runs import RunDir

    cfg = Config(run_dir=str(tmp_path / "shown"))
    write_json(RunDir(run).config, to_dict(Config()))  # a run with its config: the published comparison is drawn
    summary = figures.draw_all([run], RunDir.of(cfg).figures)["figures"]
    shown = []
    monkeypatch.setattr(notebook_views, "display", lambda *objs: shown.extend(objs))
    notebook_views.show_figures(cfg)
    printed = capsys.readouterr().out
    titles = [o.data for o in shown if type(o).__name__ == "Markdown"]
    for name, rec in summary.items():
        drawn_as = [t for t in titles if t.startswith(f"**{name}**")]
        if rec["status"] != "drawn":
            assert f"{name}: {rec['status']}, {rec['reason']}" in printed
        elif any(f.endswith(".png") for f in rec["files"]):
            assert len(drawn_as) == 1 and (not rec["reason"] or rec["reason"] in drawn_as[0])
        else:  # a table: its Markdown, never a "skipped" line
            assert (RunDir.of(cfg).figures / f"{name}.md").read_text() in titles and f"{name}:" not in printed
    assert summary["published_comparison"]["status"] == "drawn"
