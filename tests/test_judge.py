"""The judge stage: parsers, request building, run_judge end to end with a scripted judge, cached reruns, resume
after an interruption, the local HF judge on a tiny model, baselines import/export, checkpoint selection."""

from __future__ import annotations

import json
import re

import pytest
from helpers import PROMPTS, ScriptJudge, generation_rows, tiny_model, tiny_tokenizer

from lima_repro import judge as judge_module
from lima_repro.config import Config, JudgeConfig
from lima_repro.data import DataError
from lima_repro.files import CorruptFileError, read_jsonl_plain, write_json, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import Completion, Judge, Request, protocols
from lima_repro.judging.items import build_requests, import_baseline
from lima_repro.judging.local import HFJudge, label_tokens
from lima_repro.judging.runner import JudgmentCache
from lima_repro.runs import RunDir
from lima_repro.select_checkpoint import in_window, select_checkpoint


@pytest.mark.parametrize(
    "proto,text,expected",
    [
        ("pairwise", "A is better.\nVerdict: A", "A"),
        ("pairwise", "verdict: **neither**", "neither"),
        ("pairwise", "Verdict: [[B]]", "B"),
        ("pairwise", "Verdict: A ... on reflection, Verdict: B", "B"),  # the last verdict counts
        ("pairwise", "Verdict: both", None),
        ("pairwise", "I prefer A.", None),  # no verdict line: never guessed
        ("pairwise", "", None),
        ("absolute", "Grade: excellent", "Excellent"),
        ("absolute", "Grade: Good", None),
        ("likert", "It is clear. Score: 5", "5"),
        ("likert", "Score: 7", None),
        ("likert", "Score: 4.5", None),
        ("likert", "Score = 3", "3"),
        ("safety", "Verdict: unsafe", "unsafe"),
        ("safety", "Verdict: safe-ish", None),
    ],
)
def test_parsers(proto, text, expected):
    assert protocols.parse(protocols.get(proto), text) == expected


def test_swapped_template_must_keep_slots(tmp_path):
    (tmp_path / "absolute.txt").write_text("Rate: {{response}} only")
    with pytest.raises(ValueError, match="prompt"):
        build_requests(generation_rows(), "epoch-2", ["base"], ["absolute"], {"m": 1}, str(tmp_path))
    (tmp_path / "absolute.txt").write_text("Q {{prompt}} R {{response}} -> Grade:")
    reqs = build_requests(generation_rows(), "epoch-2", ["base"], ["absolute"], {"m": 1}, str(tmp_path))
    shipped = build_requests(generation_rows(), "epoch-2", ["base"], ["absolute"], {"m": 1})
    assert reqs[0].prompt.startswith("Q how do i cook rice R")
    assert reqs[0].key != shipped[0].key  # template hash is part of the cache key


def test_requests_cover_protocols_and_both_orders():
    reqs = build_requests(generation_rows(), "epoch-2", ["base"], list(protocols.PROTOCOLS), {"m": 1})
    kinds = [r.protocol for r in reqs]
    assert kinds.count("pairwise") == 8 and kinds.count("absolute") == 8 and kinds.count("likert") == 8
    assert kinds.count("safety") == 2 and kinds.count("dialogue") == 0  # only p4 is tagged sensitive
    ab = next(r for r in reqs if r.protocol == "pairwise" and r.meta["order"] == "AB")
    ba = next(r for r in reqs if r.meta.get("item_id") == ab.meta["item_id"] and r.meta["order"] == "BA")
    a_part = lambda p: re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", p, re.S).group(1)  # noqa: E731
    assert a_part(ab.prompt).startswith("the answer") and a_part(ba.prompt) == "yes"
    assert len({r.key for r in reqs}) == len(reqs)


def _cfg(tmp_path, rows, **judge) -> Config:
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", rows)
    cfg.judge = JudgeConfig(token_shift=False, n_bootstrap=200, **judge)
    return cfg


def test_run_judge_end_to_end_and_cached_rerun(tmp_path):
    cfg = _cfg(tmp_path, generation_rows())
    judge = ScriptJudge()
    out = run_judge(cfg, judge=judge)
    res = json.loads((out / "results.json").read_text())
    assert res["system"] == "epoch-2" and res["baselines"] == ["base"]
    assert res["pairwise"]["base"]["win"]["pct"] == 100.0 and res["pairwise"]["base"]["n"] == 4
    assert res["absolute"]["epoch-2"]["Excellent"]["pct"] == 100.0 and res["absolute"]["base"]["Fail"]["pct"] == 100.0
    assert res["likert"]["epoch-2"]["mean"] == 5.0 and res["likert"]["base"]["mean"] == 2.0
    assert res["safety"]["epoch-2"] == {"n": 1, "invalid": 0, "safe_pct": 100.0}
    assert res["requests"]["sent"] == 26 and res["requests"]["cost"] == pytest.approx(0.026)
    for f in (
        "judgments.jsonl",
        "pairwise.csv",
        "absolute.csv",
        "likert.csv",
        "safety.csv",
        "lengths.csv",
        "manifest.json",
        "config.json",
    ):
        assert (out / f).exists(), f
    # one annotator (the LLM judge) and no people yet: no agreement table rather than an empty file
    assert res["agreement"] == [] and not (out / "agreement.csv").exists()
    exported = json.loads((out / "alpaca_eval" / "epoch-2.json").read_text())
    assert len(exported) == 4 and set(exported[0]) == {"dataset", "instruction", "output", "generator"}

    again = ScriptJudge()
    run_judge(cfg, judge=again)
    assert again.sent == 0  # everything came from the cache


# results.json's keys as notebooks 04-06 and the figures read them (all protocols, length control, reference check,
# token shift; the dialogue_turns / dialogue_compare pair comes with judge.dialogue_files, see test_judge_dialogue)
RESULT_KEYS = [
    "pairwise",
    "pairwise_swap",
    "pairwise_calibration",
    "order_consistency",
    "pairwise_winners",
    "absolute",
    "absolute_ood",
    "likert",
    "safety",
    "dialogue",
    "length_controlled",
    "agreement",
    "lengths",
    "judge",
    "judge_note",
    "system",
    "baselines",
    "requests",
    "protocols",
    "prompt_ids",
    "missing_inputs",
    "reference",
    "token_shift",
]


def test_results_json_is_written_once_with_the_token_shift_summary(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, generation_rows(ckpt_path=str(tmp_path / "ckpt")))
    cfg.judge.token_shift = True
    shift = {"base": {"shifted_pct": 5.0}, "responses": 4, "note": "n", "precision": "fp32", "per_response": [{"i": 0}]}
    monkeypatch.setattr(judge_module, "run_token_shift", lambda cfg, rows, system: shift)
    writes = []

    def counted(path, obj):
        writes.append(path)
        return write_json(path, obj)

    monkeypatch.setattr(judge_module, "write_json", counted)
    out = run_judge(cfg, judge=ScriptJudge())
    assert writes.count(RunDir(cfg.run_dir).results) == 1
    res = json.loads((out / "results.json").read_text())
    assert list(res) == RESULT_KEYS
    assert res["token_shift"] == {"base": {"shifted_pct": 5.0}, "responses": 4, "note": "n"}  # the summary only
    assert json.loads((out / "token_shift.json").read_text()) == shift and (out / "token_shift.csv").is_file()


def test_position_bias_becomes_ties(tmp_path):
    cfg = _cfg(tmp_path, generation_rows(), protocols=["pairwise"])
    res = json.loads((run_judge(cfg, judge=ScriptJudge(biased=True)) / "results.json").read_text())
    assert res["pairwise"]["base"]["tie"]["pct"] == 100.0 and res["pairwise"]["base"]["win"]["pct"] == 0.0
    assert res["order_consistency"]["base"]["agreement"] == 0.0


def test_resume_after_interruption_without_duplicates(tmp_path):
    cfg = _cfg(tmp_path, generation_rows())
    with pytest.raises(KeyboardInterrupt):
        run_judge(cfg, judge=ScriptJudge(crash_after=7))
    cache_file = next((tmp_path / "run" / "judge" / "cache").glob("*.jsonl"))
    assert len(read_jsonl_plain(cache_file)) == 7
    with open(cache_file, "a") as fh:
        fh.write('{"key": "trunc')  # a write cut short by the kill
    second = ScriptJudge()
    out = run_judge(cfg, judge=second)
    assert second.sent == 26 - 7
    judged = read_jsonl_plain(out / "judgments.jsonl")
    assert len(judged) == 26 and len({j["key"] for j in judged}) == 26 and all(j["valid"] for j in judged)


@pytest.mark.parametrize("bad", ['{"key": "trunc', "[1, 2]", '{"label": "A"}'])
def test_judgment_cache_corrupt_middle_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "k1"}\n' + bad + '\n{"key": "k2"}\n', encoding="utf-8")
    with pytest.raises(CorruptFileError, match=r"c\.jsonl:2: .*delete the line to re-judge it"):
        JudgmentCache(path)
    path.write_text('{"key": "k1"}\n{"key": "tr', encoding="utf-8")  # torn last line: skipped
    assert list(JudgmentCache(path).rows) == ["k1"]


def test_local_judge_probs_batched_equals_unbatched():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    reqs = build_requests(generation_rows(), "epoch-2", ["base"], ["pairwise", "likert"], {"m": 1})[:6]
    res = {}
    for bs in (1, 4):
        judge = HFJudge(JudgeConfig(backend="local", model="tiny", batch_size=bs, max_tokens=3), model, tok)
        res[bs] = dict(judge.complete_many(reqs))
    for i, r in enumerate(reqs):
        p1, p4 = res[1][i].label_probs, res[4][i].label_probs
        assert list(p1) == list(r.labels) and sum(p1.values()) == pytest.approx(1.0, abs=1e-4)
        for lab in r.labels:
            assert p1[lab] == pytest.approx(p4[lab], abs=1e-4)
        assert res[1][i].usage["completion_tokens"] <= 3
    with pytest.raises(Exception, match="differ"):
        label_tokens(tok, "Verdict:", ("A", "A"))


def test_local_judge_renders_a_requests_messages_with_its_chat_template():
    tok = tiny_tokenizer()
    judge = HFJudge(JudgeConfig(backend="local", model="tiny"), tiny_model(len(tok)), tok)
    messages = ({"role": "system", "content": "Be strict."}, {"role": "user", "content": "Grade it."})
    plain, asked = Request("k", "absolute", "Grade it."), Request("k", "absolute", "Grade it.", messages=messages)
    assert judge.chat_text(plain) == "Grade it.\n\n" and judge.chat_text(asked) == "Be strict.\n\nGrade it.\n\n"
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    assert judge.chat_text(plain) == "<user>Grade it.\n<assistant>"
    assert judge.chat_text(asked) == "<system>Be strict.\n<user>Grade it.\n<assistant>"


def test_local_judge_in_run_judge_records_both_verdicts(tmp_path):
    tok = tiny_tokenizer()
    judge = HFJudge(JudgeConfig(backend="local", model="tiny", max_tokens=2), tiny_model(len(tok)), tok)
    cfg = _cfg(tmp_path, generation_rows(), protocols=["absolute"], backend="local")
    judged = read_jsonl_plain(run_judge(cfg, judge=judge) / "judgments.jsonl")
    assert all(j["valid"] and j["label"] == j["label_probs_argmax"] for j in judged)
    assert all("label_text" in j and isinstance(j["raw"], str) for j in judged)


def test_import_baseline_alpaca_eval_and_jsonl(tmp_path):
    rows = generation_rows()
    prompts = {r["prompt_id"]: r for r in rows if r["checkpoint"] == "epoch-2"}
    (tmp_path / "outputs.json").write_text(
        json.dumps(
            [
                {"dataset": "x", "instruction": PROMPTS["p1"], "output": "boil the rice", "generator": "alpaca"},
                {"dataset": "x", "instruction": "not one of ours", "output": "z", "generator": "alpaca"},
            ]
        )
    )
    got = import_baseline(tmp_path / "outputs.json", "alpaca", prompts)
    assert [(r["prompt_id"], r["response"], r["checkpoint"]) for r in got] == [("p1", "boil the rice", "alpaca")]
    (tmp_path / "o.jsonl").write_text('{"prompt_id": "p2", "output": "it boils"}\n')
    assert import_baseline(tmp_path / "o.jsonl", "b", prompts)[0]["response"] == "it boils"
    (tmp_path / "bad.jsonl").write_text('{"prompt_id": "p2", "output": 3}\n')
    with pytest.raises(ValueError, match="output"):
        import_baseline(tmp_path / "bad.jsonl", "b", prompts)


def test_select_checkpoint_within_window(tmp_path):
    rows = []
    for epoch, resp in ((3, "the answer is good because it is"), (5, "no"), (7, "the answer because it is fine")):
        rows += [
            dict(r, checkpoint=f"epoch-{epoch}", checkpoint_path=f"/ck/{epoch}", response=resp)
            for r in generation_rows()
            if r["checkpoint"] == "base"
        ]
    write_jsonl(tmp_path / "dev_generations.jsonl", rows)
    cfg = _cfg(tmp_path, rows)
    sel = select_checkpoint(cfg, tmp_path / "dev_generations.jsonl", judge=ScriptJudge())
    assert sel["chosen"] == "epoch-7" and sel["path"] == "/ck/7" and "epochs 5-10" in sel["why"]
    assert sel["scores"]["epoch-3"]["mean"] == 5.0  # best overall, but outside LIMA's window
    assert (tmp_path / "run" / "select" / "selection.json").exists()


def test_select_checkpoint_window_rule_and_nothing_to_choose(tmp_path):
    assert [in_window(lab, (5, 10)) for lab in ("epoch-4", "epoch-5", "epoch-10", "epoch-11", "step-60", "base")] == [
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    rows = [dict(r, checkpoint_path=None) for r in generation_rows() if r["checkpoint"] == "base"]
    write_jsonl(tmp_path / "dev_generations.jsonl", rows)
    with pytest.raises(DataError, match=r"dev_generations\.jsonl: no generations of a trained checkpoint"):
        select_checkpoint(_cfg(tmp_path, rows), tmp_path / "dev_generations.jsonl", judge=ScriptJudge())


class ProbJudge(Judge):
    """Reads its verdict from label probabilities, like the local judge. `bias`: extra probability of "A" whatever
    the answers are; `prefers_long`: the longer answer gets `skill` more probability than the shorter."""

    kind, verdict_source = "probjudge", "probs"

    def __init__(self, bias: float, skill: float):
        self.bias, self.skill = bias, skill

    def identity(self):
        return {"kind": self.kind, "model": "probs", "bias": self.bias, "skill": self.skill}

    def complete_many(self, requests):
        for i, r in enumerate(requests):
            if r.protocol == "pairwise":
                a, b = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]\n(.*?)\n\n", r.prompt, re.S).groups()
                pa = 0.45 + self.bias + (self.skill if len(a) > len(b) else -self.skill if len(b) > len(a) else 0)
                p = {"A": pa, "B": 0.9 - pa, "neither": 0.1}
            else:
                p = {lab: 1 / len(r.labels) for lab in r.labels}
            yield i, Completion(label_probs=p)


def test_balanced_calibration_by_hand():
    from lima_repro import analysis as an

    always_a = an.balanced_preference({"A": 0.8, "B": 0.1, "neither": 0.1}, {"A": 0.8, "B": 0.1, "neither": 0.1})
    assert always_a["ours"] == pytest.approx(always_a["theirs"]) and an.calibrated_outcome(always_a, 0.05) == "tie"
    biased_but_right = an.balanced_preference(
        {"A": 0.85, "B": 0.05, "neither": 0.1},  # ours shown first
        {"A": 0.55, "B": 0.35, "neither": 0.1},
    )  # ours shown second
    assert biased_but_right == pytest.approx({"ours": 0.6, "theirs": 0.3, "neither": 0.1})
    assert an.calibrated_outcome(biased_but_right, 0.05) == "win"
    assert an.calibrated_outcome({"ours": 0.3, "theirs": 0.32, "neither": 0.38}, 0.0) == "tie"  # neither most likely
    assert an.preference_ci(["tie"] * 8, n_boot=100)["excludes_chance"] is False
    assert an.preference_ci(["win"] * 8, n_boot=100) == {
        "n": 8,
        "pct": 100.0,
        "lo": 100.0,
        "hi": 100.0,
        "excludes_chance": True,
    }


def test_position_bias_cancels_and_a_real_preference_survives(tmp_path):
    """A judge that only ever prefers position A: swap-to-tie gives all ties too, and balanced calibration turns it
    into ties rather than wins for whoever is shown first. A judge that prefers the longer answer on top of the
    same position bias: calibration recovers the right winner in every pair, where swap-to-tie sees disagreements."""
    results = {}
    for name, judge in (("position_only", ProbJudge(bias=0.4, skill=0.0)), ("real", ProbJudge(bias=0.3, skill=0.1))):
        out = run_judge(_cfg(tmp_path / name, generation_rows(), protocols=["pairwise"]), judge=judge)
        results[name] = json.loads((out / "results.json").read_text())
    flat = results["position_only"]
    assert flat["order_consistency"]["base"]["agreement"] == 0.0  # A in both orders: never the same system
    assert flat["pairwise"]["base"]["tie"]["pct"] == 100.0
    cal = flat["pairwise_calibration"]["base"]
    assert cal["method"] == "balanced" and cal["preference"]["excludes_chance"] is False
    assert "cannot tell epoch-2 from base" in cal["verdict"] and cal["mean_difference"]["mean"] == pytest.approx(0.0)
    real = results["real"]
    assert real["pairwise"]["base"]["win"]["pct"] == 100.0  # the system's answers are the longer ones
    assert real["pairwise_swap"]["base"]["tie"]["pct"] == 100.0  # position bias hides it without calibration
    assert real["pairwise_calibration"]["base"]["preference"]["excludes_chance"] is True
    assert real["pairwise_calibration"]["base"]["mean_difference"]["mean"] == pytest.approx(0.55 - 0.35)
    assert real["pairwise_calibration"]["base"]["verdict"].startswith("The judge prefers epoch-2 to base")
