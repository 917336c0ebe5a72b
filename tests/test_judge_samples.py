"""One sample size per judging protocol (`judge.sample_sizes`, docs/paper.md sec. 4: pairwise on every test prompt,
absolute grades on 50 random ones, Fig. 3's 20 out-of-distribution ones): the exact prompts drawn, the same for
every system, independent of order, changing with the seed; the counts asked and available in results.json; the
plan counting what the stage sends; the check of the setting."""

from __future__ import annotations

import json
import random

import pytest
from helpers import ScriptJudge, generation_rows

from lima_repro.config import Config, ConfigError, JudgeConfig, load_config
from lima_repro.files import write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging.items import build_requests, draw_prompts, sample_requests
from lima_repro.plan_judge import judge_plan

IDS = [f"p{i}" for i in range(10)]


def _rows(ood: tuple[str, ...] = ()) -> list[dict]:
    """Ten prompts answered by `base` and `epoch-2`; `ood` tagged out of distribution."""
    return [
        {
            "checkpoint": system,
            "prompt_id": pid,
            "sample": 0,
            "tags": ["ood"] if pid in ood else [],
            "messages": [{"role": "user", "content": f"question {pid}"}],
            "response": f"{system} answers {pid}",
        }
        for system in ("base", "epoch-2")
        for pid in IDS
    ]


def _asked(requests, protocol: str) -> dict[str, set[str]]:
    """prompt id -> the systems asked about it under `protocol`."""
    out: dict[str, set[str]] = {}
    for r in requests:
        if r.protocol == protocol:
            out.setdefault(r.meta["prompt_id"], set()).add(r.meta["system"])
    return out


def test_each_protocol_keeps_its_exact_draw_for_every_system():
    rows = _rows()
    reqs = build_requests(rows, "epoch-2", ["base"], ["pairwise", "absolute"], {"m": 1})
    kept, record = sample_requests(reqs, rows, {"absolute": 3}, seed=0)
    absolute = _asked(kept, "absolute")
    assert sorted(absolute) == ["p2", "p4", "p7"]  # pinned: sha256 of "<seed>:<id>" ranks the prompts
    assert all(systems == {"base", "epoch-2"} for systems in absolute.values())  # compared on the same prompts
    assert sorted(_asked(kept, "pairwise")) == IDS  # absent = every prompt
    assert [r for r in reqs if r in kept] == kept  # in the order they were built
    assert record == {
        "seed": 0,
        "protocols": {
            "pairwise": {"asked": 10, "available": 10},
            "absolute": {"asked": 3, "available": 10},
            "ood": {"asked": 0, "available": 0},  # no prompt is tagged ood
        },
    }
    # the draw depends on the seed and the prompt ids, not on the order the requests come in
    shuffled = random.Random(1).sample(reqs, len(reqs))
    assert sorted(_asked(sample_requests(shuffled, rows, {"absolute": 3}, seed=0)[0], "absolute")) == ["p2", "p4", "p7"]
    assert sorted(_asked(sample_requests(reqs, rows, {"absolute": 3}, seed=2)[0], "absolute")) == ["p1", "p4", "p6"]
    # a larger sample holds a smaller one's prompts; more than there are asks them all, and says so
    assert draw_prompts(IDS, 5, 0) == ["p0", "p2", "p4", "p5", "p7"]
    kept, record = sample_requests(reqs, rows, {"absolute": 50, "pairwise": None}, seed=0)
    assert kept == reqs and record["protocols"]["absolute"] == {"asked": 10, "available": 10}
    assert sample_requests(reqs, rows, {}, seed=0)[0] == reqs  # the default asks what it always asked


def test_ood_prompts_get_absolute_grades_besides_absolutes_own_draw():
    rows = _rows(ood=("p1", "p3", "p8"))
    reqs = build_requests(rows, "epoch-2", ["base"], ["absolute"], {"m": 1})
    kept, record = sample_requests(reqs, rows, {"absolute": 3, "ood": 2}, seed=0)
    ood = draw_prompts(["p1", "p3", "p8"], 2, 0)
    assert sorted(_asked(kept, "absolute")) == sorted({"p2", "p4", "p7", *ood})
    # absolute's own draw is counted (and tabled) alone; the OOD prompts outside it are marked for the OOD table
    assert record["protocols"] == {"absolute": {"asked": 3, "available": 10}, "ood": {"asked": 2, "available": 3}}
    marked = {r.meta["prompt_id"] for r in kept if r.meta.get("draw") == "ood"}
    assert marked == set(ood) - {"p2", "p4", "p7"}
    # absent = every prompt tagged ood, besides absolute's own draw
    kept, record = sample_requests(reqs, rows, {"absolute": 3}, seed=0)
    assert sorted(_asked(kept, "absolute")) == ["p1", "p2", "p3", "p4", "p7", "p8"]
    # p2 and p4 are tagged ood and drawn at random; the OOD draw of 1 keeps one of p2, p4, p8: the other random one
    # counts in the absolute table only (marked "absolute"), p8 if drawn in the OOD table only (marked "ood")
    rows = _rows(ood=("p2", "p4", "p8"))
    reqs = build_requests(rows, "epoch-2", ["base"], ["absolute"], {"m": 1})
    kept, _ = sample_requests(reqs, rows, {"absolute": 3, "ood": 1}, seed=0)
    (drawn,) = draw_prompts(["p2", "p4", "p8"], 1, 0)
    marks = {r.meta["prompt_id"]: r.meta.get("draw", "") for r in kept}
    want = {"p2": "absolute", "p4": "absolute", "p7": "", drawn: "ood" if drawn == "p8" else ""}
    assert marks == want


def test_the_stage_records_what_it_asked_and_the_plan_counts_the_same(tmp_path):
    rows = generation_rows()  # p1-p4, p4 sensitive
    for r in rows:
        r["tags"] += ["ood"] if r["prompt_id"] in ("p1", "p2") else []
    cfg = Config(run_dir=str(tmp_path / "run"), seed=3)
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", rows)
    sizes = {"pairwise": 3, "absolute": 1, "ood": 1, "safety": None}
    cfg.judge = JudgeConfig(protocols=["pairwise", "absolute", "safety"], sample_sizes=sizes, token_shift=False)
    cfg.judge.n_bootstrap, cfg.judge.reference_check = 50, False
    res = json.loads((run_judge(cfg, judge=ScriptJudge()) / "results.json").read_text())
    assert res["requests"]["sample"] == {
        "seed": 3,
        "protocols": {
            "pairwise": {"asked": 3, "available": 4},
            "absolute": {"asked": 1, "available": 4},  # p3 drawn at random (p1, drawn among the ood ones, is not)
            "ood": {"asked": 1, "available": 2},
            "safety": {"asked": 1, "available": 1},
        },
    }
    # the absolute table is absolute's own random draw alone (the paper's 50), the OOD table the OOD draw
    assert res["absolute"]["epoch-2"]["n"] == 1 and res["absolute_ood"]["epoch-2"]["n"] == 1
    assert res["pairwise"]["base"]["n"] == 3
    judged = [json.loads(line) for line in (tmp_path / "run" / "judge" / "judgments.jsonl").read_text().splitlines()]
    assert {j["sample"] for j in judged} == {0}  # each response's sample number, whichever draw asked for it
    prompts = [
        {"id": r["prompt_id"], "messages": r["messages"], "tags": r["tags"]} for r in rows if r["checkpoint"] == "base"
    ]
    plan = judge_plan(cfg, prompts)
    assert {p: plan[p]["requests"] for p in cfg.judge.protocols} == {
        p: sum(j["protocol"] == p for j in judged) for p in cfg.judge.protocols
    }


def test_sample_sizes_are_checked_and_the_paper_profile_sets_lima_s():
    paper = load_config("paper").judge.sample_sizes
    assert paper == {"absolute": 50, "ood": 20}
    assert load_config("demo").judge.sample_sizes == {}
    assert load_config("demo", overrides={"judge.sample_sizes": {"pairwise": None}}).judge.sample_sizes == {
        "pairwise": None
    }
    with pytest.raises(
        ConfigError, match=r"^judge.sample_sizes: unknown judge protocol\(s\) \['absolut'\]; available: "
    ):
        load_config("demo", overrides={"judge.sample_sizes": {"absolut": 50}})
    for bad in (0, 10_000_001):
        with pytest.raises(
            ConfigError, match=r"^judge.sample_sizes: \{'absolute': .*\} must be prompt counts in \[1, "
        ):
            load_config("demo", overrides={"judge.sample_sizes": {"absolute": bad}})
