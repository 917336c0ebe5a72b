"""The judge's result tables for the paper's prompt subsets, by hand: Fig. 3's out-of-distribution prompts (tag
`ood`), sec. 4's malicious prompts among the sensitive ones (tag `malicious`), and the per-item pairwise verdicts
kept for agreement with annotators who label later."""

from __future__ import annotations

import pandas as pd
from helpers import ScriptJudge

from lima_repro.config import Config, JudgeConfig
from lima_repro.judging.results import build_results, missing_inputs, write_tables
from lima_repro.runs import RunDir

E, B = "epoch-2", "base"
TAGS = {"p1": ["ood"], "p2": ["ood"], "p3": ["sensitive", "malicious"], "p4": ["sensitive"]}


def rows():
    return [
        {"checkpoint": s, "prompt_id": p, "tags": t, "sample": 0, "response": "x", "messages": []}
        for s in (E, B)
        for p, t in TAGS.items()
    ]


def judged():
    out = [
        {"protocol": "absolute", "system": s, "prompt_id": p, "item_id": f"{p}#0|{s}", "label": lab}
        for s, p, lab in (
            (E, "p1", "Excellent"),
            (E, "p2", "Fail"),
            (E, "p3", "Pass"),
            (E, "p4", "Pass"),
            (B, "p1", "Fail"),
            (B, "p3", "Fail"),
        )
    ]
    out += [
        {"protocol": "safety", "system": s, "prompt_id": p, "item_id": f"{p}#0|{s}", "label": lab}
        for s, p, lab in ((E, "p3", "unsafe"), (E, "p4", "safe"), (B, "p4", "safe"))
    ]
    # p1: ours wins in both orders; p2: "A" both times = disagreement = tie; p3: one order invalid
    out += [
        {
            "protocol": "pairwise",
            "system": E,
            "baseline": B,
            "prompt_id": p,
            "item_id": f"{p}#0|{E}|{B}",
            "order": o,
            "label": lab,
        }
        for p, o, lab in (
            ("p1", "AB", "A"),
            ("p1", "BA", "B"),
            ("p2", "AB", "A"),
            ("p2", "BA", "A"),
            ("p3", "AB", None),
            ("p3", "BA", "A"),
        )
    ]
    return out


def test_ood_and_malicious_subsets_and_per_item_winners(tmp_path):
    # no run directory: the tables alone, without the reference check
    jc = JudgeConfig(n_bootstrap=50, position_calibration="swap", length_control=False, reference_check=False)
    cfg = Config(seed=0, judge=jc)
    res = build_results(cfg, judged(), rows(), E, [B], judge=ScriptJudge(), requests={})
    assert res["absolute"][E]["n"] == 4 and res["absolute"][E]["Pass"]["pct"] == 50.0
    ood = res["absolute_ood"]
    assert (ood[E]["n"], ood[E]["Excellent"]["pct"], ood[E]["Fail"]["pct"]) == (2, 50.0, 50.0)
    assert (ood[B]["n"], ood[B]["Fail"]["pct"]) == (1, 100.0)
    assert res["safety"][E] == {"n": 2, "invalid": 0, "safe_pct": 50.0, "malicious_n": 1, "malicious_safe_pct": 0.0}
    assert res["safety"][B] == {"n": 1, "invalid": 0, "safe_pct": 100.0}  # no malicious prompt judged: no keys
    assert res["pairwise_winners"][B] == {f"p1#0|{E}|{B}": E, f"p2#0|{E}|{B}": "neither", f"p3#0|{E}|{B}": None}
    run = RunDir(tmp_path)
    run.stage("judge").mkdir(parents=True, exist_ok=True)
    write_tables(res, run)
    csv = pd.read_csv(run.judge_table("absolute_ood"))
    assert list(csv.system) == [E, B] and list(csv.n) == [2, 1] and list(csv.Fail_pct) == [50.0, 100.0]


def test_missing_inputs_name_what_the_paper_never_released():
    jc = JudgeConfig(protocols=["pairwise", "absolute", "safety"], baselines=["base", "alpaca", "bard"])
    cfg = Config(judge=jc)
    cfg.curate.dev_files = []
    tagged = [{"prompt_id": "p1", "tags": ["ood"]}, {"prompt_id": "p2", "tags": []}]
    assert missing_inputs(cfg, tagged, ["base"]) == [
        "baseline outputs: alpaca, bard (judge.baseline_files)",
        "sensitive test prompts: no prompt tagged sensitive, so no safety verdicts",
        "dev set: curate.dev_files is empty",
    ]
    cfg.curate.dev_files = ["dev.jsonl"]
    assert missing_inputs(cfg, [{"prompt_id": "p", "tags": ["sensitive", "ood"]}], ["base", "alpaca", "bard"]) == []
