"""Fig. 9 (dev and test scores as separate series, the held-out set named) and Table 1 (sources mapped onto the
paper's rows; the data card of a GAIR/lima-format file without a run), with hand-computed expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import tiny_tokenizer

from lima_repro import cli, curate, figures
from lima_repro.config import ConfigError, load_config, to_dict
from lima_repro.config.figures import FiguresConfig
from lima_repro.files import write_json, write_jsonl
from lima_repro.runs import RunDir

GAIR_10 = Path(__file__).parent / "fixtures" / "gair_lima_table1.jsonl"
GAIR = Path(__file__).parent / "fixtures" / "gair_lima" / "train.jsonl"


def make_run(tmp_path, dev=True, test=True, eval_file=None):
    r = RunDir(tmp_path / "run")
    write_jsonl(
        r.metrics,
        [
            {"type": "eval", "step": 0, "epoch": 0, "perplexity": 4.0},
            {"type": "train", "step": 2, "epoch": 1, "loss": 2.0},
            {"type": "eval", "step": 2, "epoch": 1, "perplexity": 5.0},
            {"type": "eval", "step": 4, "epoch": 2, "perplexity": 6.5},
        ],
    )
    write_json(r.checkpoint_index, [{"name": "epoch-1", "step": 2}, {"name": "epoch-2", "step": 4}])
    write_json(r.config, {"train": {"eval_file": eval_file, "max_eval_examples": 2000 if eval_file else None}})
    if dev:
        write_json(
            r.selection,
            {
                "chosen": "epoch-2",
                "scores": {
                    "epoch-1": {"n": 5, "mean": 2.0, "lo": 1.5, "hi": 2.5},
                    "epoch-2": {"n": 5, "mean": 3.0, "lo": 2.5, "hi": 3.5},
                },
            },
        )
    if test:
        write_json(
            r.results,
            {"likert": {"epoch-2": {"n": 7, "mean": 3.5, "lo": 3.0, "hi": 4.0}, "base": {"n": 7, "mean": 1.5}}},
        )  # base is no checkpoint: not drawn
    return r.root


def plain(row):
    return [None if pd.isna(v) else v for v in row]


def test_fig9_dev_and_test_scores_are_separate_series(tmp_path):
    run = make_run(tmp_path, eval_file="/data/se_heldout.jsonl")
    d = figures.perplexity_score([run], tmp_path)
    ax, ax2 = d.fig.axes
    assert list(ax.lines[0].get_xdata()) == [0, 2, 4] and list(ax.lines[0].get_ydata()) == [4.0, 5.0, 6.5]
    assert ax.lines[0].get_label() == "held-out perplexity (se_heldout.jsonl, first 2000 examples)"
    dev, test = ax2.lines
    assert (list(dev.get_xdata()), list(dev.get_ydata())) == ([2, 4], [2.0, 3.0])
    assert (list(test.get_xdata()), list(test.get_ydata())) == ([4], [3.5])
    assert dev.get_label() == "1-6 score, dev set (checkpoint selection), n = 5 prompts"
    assert test.get_label() == "1-6 score, test set (judge), n = 7 prompts"
    legend = [t.get_text() for t in d.fig.axes[-1].get_legend().get_texts()]
    assert legend == [ax.lines[0].get_label(), dev.get_label(), test.get_label()]
    csv = pd.read_csv(tmp_path / "fig9_perplexity_vs_score.csv")
    assert list(csv.series) == ["dev_score", "dev_score", "perplexity", "perplexity", "perplexity", "test_score"]
    assert "2,000 held-out Stack Exchange examples" in ax.texts[0].get_text()


def test_fig9_draws_only_the_series_it_has_and_no_empty_legend_entry(tmp_path):
    d = figures.perplexity_score([make_run(tmp_path, dev=False, test=False)], tmp_path)
    (ax,) = d.fig.axes  # no score axis without scores
    assert ax.lines[0].get_label() == "held-out perplexity (dev set)"
    assert [t.get_text() for t in d.fig.axes[-1].get_legend().get_texts()] == ["held-out perplexity (dev set)"]
    assert ax.get_title().endswith("(no per-checkpoint scores)")
    d = figures.perplexity_score([make_run(tmp_path, dev=True, test=False)], tmp_path)
    assert [ln.get_label() for ln in d.fig.axes[1].lines] == [
        "1-6 score, dev set (checkpoint selection), n = 5 prompts"
    ]


def test_table1_of_a_gair_lima_file_maps_sources_onto_the_paper_rows(tmp_path):
    card = curate.file_datacard(GAIR_10, tiny_tokenizer())  # one token per word: the fixture has no punctuation
    d = figures.datacard([], tmp_path, card=card, name="table1_gair_lima")
    assert d.status == "drawn" and d.source == str(GAIR_10)
    csv = pd.read_csv(tmp_path / "table1_gair_lima.csv").fillna({"sources": ""})
    # stackexchange: prompts of 6, 5, 5 words, answers of 11, 8, 6 -> 5.3 / 8.3; the paper's two Stack Exchange
    # rows added up: 400 examples, (117 + 119) / 2 = 118 and (523 + 530) / 2 = 526.5 tokens
    assert csv.iloc[0].tolist() == ["Stack Exchange (STEM + Other)", 400, 118.0, 526.5, "stackexchange", 3, 5.3, 8.3]
    assert list(csv.row) == [
        "Stack Exchange (STEM + Other)",
        "wikiHow",
        "Pushshift r/WritingPrompts",
        "Natural Instructions",
        "Paper Authors (Group A)",
        "Dialogue chains (sec. 1, the 1,030 set)",
        "total",
    ]
    assert list(csv.sources) == ["stackexchange", "wikihow", "writingprompts", "nlp", "authors", "multi_turn", ""]
    assert list(csv.n) == [3, 2, 1, 1, 2, 1, 10]
    assert list(csv.paper_n) == [400, 200, 150, 50, 200, 30, 1030]
    # wikihow 5 and 5 -> 16 and 14 words; nlp 9 -> 3; authors 8, 8 -> 9, 8; the chain's two user turns 6 + 3 words,
    # its two answers 4 + 5; total (16 + 10 + 9 + 9 + 16 + 9) / 10 = 6.9 and (25 + 30 + 8 + 3 + 17 + 9) / 10 = 9.2
    assert list(csv.avg_input_tokens) == [5.3, 5.0, 9.0, 9.0, 8.0, 9.0, 6.9]
    assert list(csv.avg_output_tokens) == [8.3, 15.0, 8.0, 3.0, 8.5, 9.0, 9.2]
    md = (tmp_path / "table1_gair_lima.md").read_text()
    assert "| paper row | paper n | paper input tokens | paper output tokens | this run: sources | n |" in md
    assert "| Natural Instructions | 50 | 236 | 92 | nlp | 1 | 9 | 3 |" in md
    assert "gair_lima_table1.jsonl" in md.splitlines()[0] and f"counted {card['tokenizer']} tokens" in md


def test_gair_lima_table1_counts_tokens_with_the_configured_tokenizer(tiny_llama, tmp_path):
    # curate.tokenizer wins over model.name (the packaged Gemma); the tiny model's tokenizer has one token per byte,
    # so on this ASCII file every average in tokens is the average in characters
    cfg = load_config("demo", overrides={"curate.tokenizer": str(tiny_llama)})
    d = figures.gair_lima_table1(cfg, GAIR, tmp_path / "figs")
    assert (d.name, d.status, d.source) == ("table1_gair_lima", "drawn", str(GAIR))
    card = {r["source"]: r for r in curate.file_datacard(GAIR)["splits"]["train"]}  # characters only
    csv = pd.read_csv(tmp_path / "figs" / "table1_gair_lima.csv").fillna({"sources": ""}).set_index("sources")
    counts = {"stackexchange": 3, "wikihow": 2, "writingprompts": 1, "nlp": 1, "authors": 1, "multi_turn": 2}  # README
    assert csv.loc[list(counts), "n"].tolist() == list(counts.values())
    for src in counts:
        assert csv.loc[src, ["avg_input_tokens", "avg_output_tokens"]].tolist() == [
            card[src]["avg_input_chars"],
            card[src]["avg_output_chars"],
        ]
    md = (tmp_path / "figs" / "table1_gair_lima.md").read_text()
    assert "vs train.jsonl" in md.splitlines()[0] and f"counted {tiny_llama} tokens" in md


def test_table1_of_a_run_with_split_stack_exchange_keeps_the_paper_rows(tmp_path):
    rows = [
        {"source": "stackexchange_stem", "n": 2, "avg_input_tokens": 10.0, "avg_output_tokens": 100.0},
        {"source": "stackexchange_other", "n": 1, "avg_input_tokens": 20.0, "avg_output_tokens": 200.0},
        {"source": "code", "n": 1, "avg_input_tokens": 5.0, "avg_output_tokens": 50.0},
        {"source": "advice", "n": 3, "avg_input_tokens": None, "avg_output_tokens": None},
    ]
    df = figures.table1(rows)
    assert list(df.row)[:2] == ["Stack Exchange (STEM)", "Stack Exchange (Other)"]
    assert plain(df.iloc[-2]) == ["not a paper source", None, None, None, "code, advice", 4, None, None]
    assert df.iloc[-1].n == 7 and df.iloc[-1].paper_n == 1000  # no multi_turn source: the chains are no row
    assert "Dialogue chains (sec. 1, the 1,030 set)" not in list(df.row)
    assert plain(df[df.row == "wikiHow"].iloc[0])[4:] == ["", 0, None, None]  # no wikiHow in this run


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"dpi": 0}, "figures.dpi"),
        ({"dpi": 5000}, "at most 1,200"),
        ({"formats": ["png", "gif"]}, r"unknown image format\(s\) \['gif'\]"),
        ({"formats": []}, "at least one"),
        ({"runs": [""]}, "figures.runs"),
        ({"copy_to": ""}, "copy_to"),
        ({"baseline_names": {"a": ""}}, "baseline_names"),
    ],
)
def test_figures_config_is_range_checked(kw, msg):
    FiguresConfig().check()
    with pytest.raises(ConfigError, match=msg):
        FiguresConfig(**kw).check()


def published_run(tmp_path, model, template):
    r = tmp_path / "run"
    train = {"epochs": 15, "lr": 1e-5, "batch_size": 128, "residual_dropout": 0.0}
    gen = {"checkpoints": "last", "temperature": 0.7, "top_p": 0.9}
    write_json(
        r / "config.json", {"model": {"name": model, "chat_template": template}, "train": train, "generate": gen}
    )
    # the files as mt_bench.run_mt_bench and `alpaca-eval --evaluate` write them (finished stage manifests included)
    write_json(r / "mt_bench" / "results.json", {"score": {"n": 160, "mean": 4.1, "lo": 3.8, "hi": 4.4}})
    write_json(r / "mt_bench" / "manifest.json", {"stage": "mt_bench", "status": "ok"})
    write_json(
        r / "alpaca_eval" / "mine" / "leaderboard.json",
        {"generator": "mine", "win_rate": 3.5, "length_controlled_winrate": 5.0},
    )
    return r


def test_published_comparison_shows_the_run_only_where_the_setup_matches(tmp_path):
    r = published_run(tmp_path, "meta-llama/Llama-2-7b-hf", "vicuna")
    write_json(RunDir(r).checkpoint_index, [{"name": "epoch-15", "step": 120, "chat_template": "vicuna"}])
    d = figures.published_comparison([r], tmp_path / "f")
    rows = {(r.benchmark, r.published_value): r for r in d.data.itertuples()}
    assert rows[("mt_bench", 3.95)].this_run == "4.1" and rows[("mt_bench", 3.95)].differs == ""
    alpaca = rows[("alpaca_eval_2", 2.74)]
    assert alpaca.this_run == "not comparable"
    assert alpaca.differs == (
        "metric: run lc_win, published unresolved; decoding: run sampling (temperature 0.7, top_p 0.9), published greedy"
    )
    assert rows[("alpaca_eval_2", 6.76)].published.endswith("(unconfirmed)")
    assert "published number has no source (unconfirmed)" in rows[("alpaca_eval_2", 6.76)].differs
    assert "benchmark: run alpaca_eval_2, published alpaca_eval_1" in rows[("alpaca_eval_1", 41.98)].differs
    assert (tmp_path / "f" / "published_comparison.md").is_file()
    config = json.loads((r / "config.json").read_text())
    config["generate"]["temperature"] = 0  # greedy, as the published AlpacaEval answers
    write_json(r / "config.json", config)
    greedy = figures.published_comparison([r], tmp_path / "g").data
    assert greedy[greedy.published_value == 2.74].iloc[0].differs == "metric: run lc_win, published unresolved"


def test_published_comparison_says_not_run_and_a_template_train_did_not_apply(tmp_path):
    """Checkpoints that record no format were trained before train applied model.chat_template: LIMA's format."""
    r = published_run(tmp_path, "Qwen/Qwen2.5-7B", "vicuna")
    write_json(RunDir(r).checkpoint_index, [{"name": "epoch-15", "step": 120, "eot_token": "<|eot|>"}])
    for f in (r / "mt_bench" / "results.json", r / "alpaca_eval" / "mine" / "leaderboard.json"):
        f.unlink()
    d = figures.published_comparison([r], tmp_path / "f")
    mt = d.data[d.data.published_value == 3.95].iloc[0]
    assert mt.this_run == "not run"
    assert mt.differs == (
        "base model: run Qwen/Qwen2.5-7B, published Llama-2-7B; "
        "chat_template: run lima (vicuna configured, not applied), published vicuna"
    )


def _run_with_figure_settings(tmp_path, **figure_settings) -> Path:
    """A run whose config.json is complete (the demo profile's, copy_to included) with these figure settings."""
    run = make_run(tmp_path)
    cfg = load_config("demo")
    for k, v in figure_settings.items():
        setattr(cfg.figures, k, v)
    write_json(RunDir(run).config, to_dict(cfg))
    return run


def test_cli_figures_uses_the_run_s_own_figure_settings_unless_overridden(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(figures, "repo_path", lambda p: tmp_path / "repo" / p)  # the demo's copy_to must not be used
    run = _run_with_figure_settings(tmp_path, formats=["svg"], dpi=50)
    assert cli.main(["figures", str(run)]) == 0
    assert "fig9_perplexity_vs_score: drawn" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "figures").glob("fig9_perplexity_vs_score.*")) == [
        "fig9_perplexity_vs_score.csv",
        "fig9_perplexity_vs_score.svg",
    ]
    assert not (tmp_path / "repo").exists()
    assert (
        cli.main(["figures", "--run-dir", str(run), "--set", "figures.formats=[png]", "--out", str(tmp_path / "o")])
        == 0
    )
    assert sorted(p.suffix for p in (tmp_path / "o").glob("fig9_perplexity_vs_score.*")) == [".csv", ".png"]


def test_cli_figures_takes_run_dir_like_every_stage_and_more_runs_after_it(tmp_path, capsys):
    run = make_run(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert cli.main(["figures", "--run-dir", str(other), str(run), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / figures.SUMMARY).read_text())
    assert summary["runs"] == [str(other), str(run)]
    assert summary["figures"]["fig9_perplexity_vs_score"]["source"] == str(run)


@pytest.mark.parametrize("argv", [["/nonexistent"], ["--run-dir", "/nonexistent"], []])
def test_cli_figures_of_no_run_or_a_missing_one_is_a_usage_error(argv, tmp_path, capsys):
    assert cli.main(["figures", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("/nonexistent is not a run directory" in err or "give RUN_DIR or --run-dir" in err)
    assert not Path("/nonexistent").exists()
