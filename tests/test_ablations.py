"""The ablation harness on a tiny random Llama with a scripted judge: matched sub-runs, a failing condition is
recorded while the others finish, a rerun resumes finished conditions without retraining them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from helpers import ScriptJudge, tiny_overrides

from lima_repro import ablations, cli, notebook, notebook_views
from lima_repro.ablations import condition_config, is_multi_turn, run_ablations, write_without_multi_turn
from lima_repro.config import ConfigError, dotted_to_nested, load_config
from lima_repro.data import DataError, read_examples
from lima_repro.files import read_jsonl_plain
from lima_repro.judging.dialogue import read_script

CONDITIONS = {
    "random": {"groups": ["selector"], "set": {"curate.selector": "random", "curate.select_n": 4}},
    "longest": {"groups": ["selector"], "set": {"curate.selector": "longest", "curate.select_n": 4}},
    "missing_data": {"groups": ["diversity"], "set": {"curate.train_files": ["/nonexistent/train.jsonl"]}},
}


def _cfg(tiny_llama, tmp_path, **extra):
    return load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "curate.count_tokens": False,
                "judge.n_bootstrap": 50,
                "judge.max_prompts": 2,
                "ablations.conditions": CONDITIONS,
                "ablations.num_samples": 2,
                "ablations.n_examples": 4,
                "ablations.common": {
                    "train.max_steps": 1,
                    "train.epochs": 1,
                    "train.batch_size": 4,
                    "generate.max_prompts": 2,
                    "generate.max_new_tokens": 8,
                },
                **extra,
            },
        ),
    )


def test_condition_config_changes_only_the_data(tiny_llama, tmp_path):
    cfg = _cfg(tiny_llama, tmp_path)
    sub = condition_config(cfg, "random", CONDITIONS["random"])
    assert sub.run_dir == str(tmp_path / "run" / "ablations" / "random")
    assert (sub.curate.selector, sub.curate.select_n, sub.train.max_steps) == ("random", 4, 1)
    assert (sub.generate.num_samples, sub.judge.protocols, sub.judge.baselines) == (2, ["likert"], [])
    assert cfg.curate.selector is None and cfg.train.max_steps is None  # the parent config is untouched
    with pytest.raises(ConfigError, match="unmatch"):
        condition_config(cfg, "bad", {"groups": ["quality"], "set": {"train.lr": 1.0}})
    with pytest.raises(ConfigError, match="unmatch"):
        condition_config(cfg, "bad", {"groups": ["quality"], "set": {"curate.test_files": ["x.jsonl"]}})


def test_failing_condition_is_reported_and_rerun_resumes(tiny_llama, tmp_path, monkeypatch):
    trained = []
    real_train = ablations.run_train
    monkeypatch.setattr(ablations, "run_train", lambda c, **kw: trained.append(c.run_dir) or real_train(c, **kw))
    cfg = _cfg(tiny_llama, tmp_path)
    judge = ScriptJudge()
    out = run_ablations(cfg, judge=judge)

    summary = json.loads((out / "summary.json").read_text())
    by = {c["condition"]: c for c in summary["conditions"]}
    assert list(by) == ["random", "longest", "missing_data"]
    assert by["missing_data"]["status"] == "failed" and by["missing_data"]["failed_stage"] == "curate"
    assert "nonexistent" in by["missing_data"]["error"]
    assert (out / "missing_data" / "error.txt").exists()
    for name in ("random", "longest"):
        c = by[name]
        assert c["status"] == "ok" and c["n_examples"] == 4 and not c["resumed"]
        assert c["likert"]["n"] == 2 and c["likert"]["judgments"] == 4  # 2 prompts x 2 samples
        assert 1 <= c["likert"]["mean"] <= 6
        assert (out / name / "judge" / "results.json").exists()
        assert not (out / name / "train" / "checkpoints").exists()  # deleted after judging (keep_checkpoints false)
    assert summary["counts"] == {"ok": 2, "failed": 1, "not_run": 0} and summary["matched"]["test_prompts"]
    assert summary["matched"]["size_mismatch"] == []
    assert len(trained) == 2 and judge.sent == 8
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("condition,groups,n_examples,likert_mean") and len(csv) == 4

    mtimes = {n: (out / n / "train" / "metrics.jsonl").stat().st_mtime_ns for n in ("random", "longest")}
    again = ScriptJudge()
    run_ablations(cfg, judge=again)
    summary2 = json.loads((out / "summary.json").read_text())
    by2 = {c["condition"]: c for c in summary2["conditions"]}
    assert by2["random"]["resumed"] and by2["longest"]["resumed"] and by2["missing_data"]["status"] == "failed"
    assert by2["random"]["likert"] == by["random"]["likert"]
    assert len(trained) == 2 and again.sent == 0  # nothing retrained or re-judged
    assert mtimes == {n: (out / n / "train" / "metrics.jsonl").stat().st_mtime_ns for n in mtimes}


def test_only_unknown_condition_is_an_error(tiny_llama, tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        run_ablations(_cfg(tiny_llama, tmp_path, **{"ablations.only": ["nope"]}), judge=ScriptJudge())


def test_notebook_parameters_win_over_the_config_and_are_checked():
    cfg = load_config("demo", overrides={"ablations.conditions": CONDITIONS, "ablations.only": ["random"]})
    a = cfg.ablations
    same = ablations.with_parameters(cfg)  # no parameter given: the config's settings
    assert (same.ablations.only, same.ablations.dialogue_follow_ups, same.ablations.dialogue_prompts) == (
        ["random"],
        a.dialogue_follow_ups,
        a.dialogue_prompts,
    )
    given = ablations.with_parameters(
        cfg, conditions=("longest",), follow_ups=["Can you give an example?"], prompts="openings.jsonl"
    )
    assert given.ablations.only == ["longest"] and given.ablations.dialogue_follow_ups == ["Can you give an example?"]
    assert given.ablations.dialogue_prompts == "openings.jsonl"
    assert a.only == ["random"] and given.run_dir == cfg.run_dir  # a copy: the notebook's config is untouched
    with pytest.raises(ConfigError, match=r"ablations.only names unknown conditions \['nope'\]"):
        ablations.with_parameters(cfg, conditions=["nope"])
    with pytest.raises(ConfigError, match="dialogue_follow_ups must be non-empty"):
        ablations.with_parameters(cfg, follow_ups=["  "])


def test_ablation_profiles_are_the_paper_setting():
    cfg = load_config("ablation-7b")
    a = cfg.ablations
    assert cfg.model.name == "huggyllama/llama-7b" and (cfg.train.batch_size, cfg.train.residual_dropout) == (64, 0.2)
    assert (a.n_examples, a.num_samples, a.protocols, cfg.judge.backend) == (2000, 5, ["likert"], "openai")
    groups = {g for c in a.conditions.values() for g in c["groups"]}
    assert groups == {"diversity", "quality", "quantity", "selector", "dialogue"}
    assert sorted(c["x"] for c in a.conditions.values() if "quantity" in c["groups"]) == [
        2000,
        4000,
        8000,
        16000,
        32000,
    ]
    demo = load_config("demo")
    assert demo.ablations.common["train.max_steps"] == 1 and "not evidence" in demo.ablations.note
    assert cfg.notebooks[-2:] == ["05_ablations", "06_figures"]


# ---- Fig. 6 sizes, Fig. 7 dialogue models, conditions as independent jobs ------------------------------------
SE_DUMPS = [f"demo_raw:stackexchange/{s}.stackexchange.com" for s in ("math", "unix", "cooking", "travel")]
SE_ONLY = {
    "curate.train_files": [],
    "curate.wikihow.files": [],
    "curate.writingprompts.submissions": [],
    "curate.natinst.tasks": [],
    "curate.stackexchange.dumps": SE_DUMPS,
}
SIZES = {  # the demo dumps hold 3 filtered questions per group: x = 8 cannot be reached
    "se_2": {"groups": ["quantity"], "x": 2, "set": {**SE_ONLY, "curate.stackexchange.n_per_group": 1}},
    "se_8": {"groups": ["quantity"], "x": 8, "set": {**SE_ONLY, "curate.stackexchange.n_per_group": 4}},
}
DIALOGUE = {
    "dialogue_without": {
        "groups": ["dialogue"],
        "paper": "1,000 ex.",
        "without_multi_turn": True,
        "set": {"curate.train_files": ["demo:train.jsonl"]},
    },
    "dialogue_with": {
        "groups": ["dialogue"],
        "paper": "1,030 ex.",
        "set": {"curate.train_files": ["demo:train.jsonl"]},
    },
}


def _dialogue_cfg(tiny_llama, tmp_path, conditions, **extra):
    return _cfg(
        tiny_llama,
        tmp_path,
        **{
            "ablations.conditions": conditions,
            "ablations.num_samples": 1,
            "ablations.dialogue_conversations": 2,
            "ablations.dialogue_follow_ups": ["Can you give an example?"],
            **extra,
        },
    )


def test_dialogue_ablation_end_to_end(tiny_llama, tmp_path, capsys):
    """Two models from the base model, without / with the 4 multi-turn demo examples; each holds 2 scripted
    conversations of 2 user turns; every assistant turn is judged and Fig. 7 is drawn from those labels."""
    from lima_repro import figures_ablations

    cfg = _dialogue_cfg(tiny_llama, tmp_path, DIALOGUE)
    judge = ScriptJudge()  # grades every dialogue turn Pass
    out = run_ablations(cfg, judge=judge)
    summary = json.loads((out / "summary.json").read_text())
    by = {c["condition"]: c for c in summary["conditions"]}
    without, with_ = by["dialogue_without"], by["dialogue_with"]
    assert without["status"] == "ok" and with_["status"] == "ok", (without.get("error"), with_.get("error"))
    # the pipeline made the `without` file: the 48 demo rows minus the 4 multi-turn ones
    assert (without["read"], without["multi_turn_dropped"]) == (48, 4)
    assert (without["n_examples"], without["n_multi_turn"]) == (44, 0)
    assert (with_["n_examples"], with_["n_multi_turn"]) == (48, 4)
    made = read_examples(out / "dialogue_without" / "train_without_multi_turn.jsonl")
    assert len(made) == 44 and not any(ex["source"] == "dialogue" for ex in made)
    for name, c in by.items():  # 2 conversations x 2 assistant turns, every one graded Pass
        t = c["dialogue_turns"]
        assert (t["n"], t["turns"], t["conversations"], t["Pass"]["pct"]) == (4, 4, 2, 100.0)
        rows = read_jsonl_plain(out / name / "dialogue_transcripts.jsonl")
        assert [r["id"] for r in rows] == ["conv-01", "conv-02"] and all(r["system"] == name for r in rows)
        assert [m["content"] for m in rows[0]["messages"] if m["role"] == "user"] == [
            read_script("demo:dialogue_prompts.jsonl")[0]["prompt"],
            "Can you give an example?",
        ]
    assert judge.sent == 2 * (2 + 4)  # per model: 2 Likert prompts x 1 sample + 4 assistant turns
    assert summary["matched"]["size_mismatch"] == []  # the dialogue models keep their own sizes
    line = notebook.ablations_summary(cfg)  # what 05_ablations prints, and its transcript peek
    assert line["counts"] == {"ok": 2, "failed": 0, "not_run": 0} and line["not_run"] == []
    assert line["conditions"]["dialogue_with"] == {
        "status": "ok",
        "n_examples": 48,
        "likert_mean": with_["likert"]["mean"],
        "error": None,
        "dialogue_turns": {"Excellent": 0.0, "Pass": 100.0, "Fail": 0.0},
    }
    capsys.readouterr()
    notebook_views.show_dialogue_transcripts(cfg, width=20)
    shown = capsys.readouterr().out.splitlines()
    assert [ln for ln in shown if ln.startswith("==")] == [
        "== dialogue_without (1,000 ex.) ==",
        "== dialogue_with (1,030 ex.) ==",
    ]
    assert "user: Can you give an exam" in shown  # each turn cut to 20 characters

    fig_dir = tmp_path / "figs"
    d = figures_ablations.dialogue([cfg.run_dir], fig_dir)
    csv = pd.read_csv(fig_dir / "fig7_dialogue.csv")
    mine = csv[csv.status == "ok"]
    assert list(mine.model) == ["dialogue_without"] * 3 + ["dialogue_with"] * 3
    assert list(mine.pct) == [0.0, 100.0, 0.0] * 2 and list(mine.n) == [4] * 6  # Excellent, Pass, Fail
    assert [round(p.get_width(), 1) for p in d.fig.axes[0].patches][:6] == [45.2, 19.1, 35.7, 76.1, 21.7, 2.2]


def test_unreachable_size_fails_with_every_filter_step_and_jobs_merge(tiny_llama, tmp_path, capsys):
    """x = 8 from dumps with 3 + 3 usable questions fails loudly, naming each filter step's counts; conditions run
    as separate jobs (the CLI's --condition) and the summary merges whatever has finished."""
    conds = {**SIZES, **DIALOGUE}
    cfg = _dialogue_cfg(tiny_llama, tmp_path, conds)
    config_yaml = tmp_path / "cfg.yaml"
    config_yaml.write_text(
        yaml.safe_dump(
            dotted_to_nested(
                {
                    **tiny_overrides(tiny_llama, tmp_path / "ignored"),
                    "curate.count_tokens": False,
                    "ablations.conditions": conds,
                }
            ),
            sort_keys=False,
        )
    )
    assert (
        cli.main(
            [
                "ablations",
                "--profile",
                "paper",
                "--config",
                str(config_yaml),
                "--run-dir",
                cfg.run_dir,
                "--condition",
                "se_8",
            ]
        )
        == 0
    )  # the judge is never loaded: curate already fails
    summary = json.loads((tmp_path / "run" / "ablations" / "summary.json").read_text())
    (failed,) = summary["conditions"]
    assert failed["condition"] == "se_8" and failed["status"] == "failed" and failed["failed_stage"] == "curate"
    assert "curated 6 training examples for its size x = 8" in failed["error"]
    for step in (
        "se.top_scoring_questions 8 kept / 0 dropped",
        "se.answer_length 5 kept / 2 dropped",
        "se.no_reference_to_other_answers 3 kept / 1 dropped",
    ):  # stackexchange_stem, counted by hand
        assert step in failed["error"]
    assert [c["condition"] for c in summary["not_run"]] == ["se_2", "dialogue_without", "dialogue_with"]
    assert summary["counts"] == {"ok": 0, "failed": 1, "not_run": 3}
    assert (
        cli.main(
            [
                "ablations",
                "--profile",
                "paper",
                "--config",
                str(config_yaml),
                "--run-dir",
                cfg.run_dir,
                "--condition",
                "nope",
            ]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err

    cfg.ablations.only = ["se_2"]  # a second job: its condition joins the first job's in the summary
    run_ablations(cfg, judge=ScriptJudge())
    summary = json.loads((tmp_path / "run" / "ablations" / "summary.json").read_text())
    assert [(c["condition"], c["status"]) for c in summary["conditions"]] == [("se_2", "ok"), ("se_8", "failed")]
    assert summary["conditions"][0]["n_examples"] == 2 and summary["counts"]["not_run"] == 2
    table = pd.read_csv(tmp_path / "run" / "ablations" / "summary.csv")
    assert list(table.status) == ["ok", "failed", "not_run", "not_run"] and list(table.x.fillna(0)) == [2, 8, 0, 0]


def test_condition_specs_are_checked():
    from lima_repro.config.ablations import check_condition

    with pytest.raises(ConfigError, match="needs `x`"):
        check_condition("q", {"groups": ["quantity"], "set": {}})
    with pytest.raises(ConfigError, match=r"q\.x: .* in \[1, 10,000,000\], got 0"):
        check_condition("q", {"groups": ["quantity"], "x": 0})
    with pytest.raises(ConfigError, match="without_multi_turn must be true or false"):
        check_condition("d", {"groups": ["dialogue"], "without_multi_turn": "yes"})
    for key, value, message in (
        ("ablations.num_samples", 0, "num_samples must be >= 1"),
        ("ablations.dialogue_conversations", 0, "dialogue_conversations must be >= 1"),
        ("ablations.dialogue_follow_ups", [" "], "dialogue_follow_ups must be non-empty"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config("demo", overrides={key: value})


def test_is_multi_turn_and_nothing_to_drop(tmp_path):
    single = {
        "source": "stackexchange",
        "tags": [],
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }
    assert not is_multi_turn(single)
    assert is_multi_turn({**single, "source": "multi_turn"}) and is_multi_turn({**single, "tags": ["multi_turn"]})
    assert is_multi_turn({**single, "messages": single["messages"] * 2})
    cfg = load_config("demo", overrides={"curate.train_files": ["demo:dev.jsonl"]})
    cfg.curate.train_files = [str(tmp_path / "single.jsonl")]
    (tmp_path / "single.jsonl").write_text(json.dumps({"id": "x", **single}) + "\n")
    with pytest.raises(DataError, match="no multi-turn rows to drop"):
        write_without_multi_turn(cfg, tmp_path / "out.jsonl")
