"""The ablation harness on a tiny random Llama with a scripted judge: matched sub-runs, a failing condition is
recorded while the others finish, a rerun resumes finished conditions without retraining them."""
from __future__ import annotations

import json

import pytest

from helpers import ScriptJudge, tiny_overrides
from lima_repro import ablations
from lima_repro.ablations import condition_config, run_ablations
from lima_repro.config import ConfigError, load_config

CONDITIONS = {
    "random": {"groups": ["selector"], "set": {"curate.selector": "random", "curate.select_n": 4}},
    "longest": {"groups": ["selector"], "set": {"curate.selector": "longest", "curate.select_n": 4}},
    "missing_data": {"groups": ["diversity"], "set": {"curate.train_files": ["/nonexistent/train.jsonl"]}},
}


def _cfg(tiny_llama, tmp_path, **extra):
    return load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{
        "curate.count_tokens": False, "judge.n_bootstrap": 50, "judge.max_prompts": 2,
        "ablations.conditions": CONDITIONS, "ablations.num_samples": 2, "ablations.n_examples": 4,
        "ablations.common": {"train.max_steps": 1, "train.epochs": 1, "train.batch_size": 4,
                             "generate.max_prompts": 2, "generate.max_new_tokens": 8}, **extra}))


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
    assert summary["counts"] == {"ok": 2, "failed": 1} and summary["matched"]["test_prompts"]
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


def test_ablation_profiles_are_the_paper_setting():
    cfg = load_config("ablation-7b")
    a = cfg.ablations
    assert cfg.model.name == "huggyllama/llama-7b" and (cfg.train.batch_size, cfg.train.residual_dropout) == (64, 0.2)
    assert (a.n_examples, a.num_samples, a.protocols, cfg.judge.backend) == (2000, 5, ["likert"], "openai")
    groups = {g for c in a.conditions.values() for g in c["groups"]}
    assert groups == {"diversity", "quality", "quantity", "selector", "dialogue"}
    assert sorted(c["x"] for c in a.conditions.values() if "quantity" in c["groups"]) == [2000, 4000, 8000, 16000, 32000]
    demo = load_config("demo")
    assert demo.ablations.common["train.max_steps"] == 1 and "not evidence" in demo.ablations.note
    assert cfg.notebooks[-2:] == ["05_ablations", "06_figures"]
