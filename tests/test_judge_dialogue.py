"""Per-turn dialogue judging (LIMA Fig. 7): transcripts saved from a chat, one request per assistant turn in its
context, per-system per-turn shares computed by hand, wired into run_judge with a cached rerun."""

from __future__ import annotations

import csv
import json
import re

import pytest
from helpers import generation_rows

from lima_repro import analysis as an
from lima_repro.config import Config, JudgeConfig
from lima_repro.data import DataError
from lima_repro.files import read_jsonl_plain, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import Completion, Judge
from lima_repro.judging.dialogue import (
    hold_conversations,
    read_script,
    read_transcripts,
    save_transcript,
    turn_requests,
)
from lima_repro.judging.runner import judge_dialogues


class FakeChat:
    """Stands in for `lima_repro.generate.Chat`: only `.history` is used."""

    def __init__(self, turns):
        self.history = []
        for user, reply in turns:
            self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


class TurnJudge(Judge):
    """Grades the last assistant turn by a word in it: good -> Excellent, bad -> Fail, garbled -> no verdict."""

    kind = "script"

    def __init__(self):
        self.sent = 0

    def identity(self):
        return {"kind": self.kind, "model": "turns"}

    def complete_many(self, requests):
        for i, r in enumerate(requests):
            self.sent += 1
            if r.protocol != "dialogue":
                yield i, Completion(text="Grade: Pass")
                continue
            last = re.search(r"\[Last assistant turn\]\n(.*?)\n\n", r.prompt, re.S).group(1)
            text = (
                "I am unsure."
                if "garbled" in last
                else "Grade: Excellent"
                if "good" in last
                else "Grade: Fail"
                if "bad" in last
                else "Grade: Pass"
            )
            yield i, Completion(text=text, usage={"prompt_tokens": 5, "completion_tokens": 2})


def _write(tmp_path):
    without, with_ = tmp_path / "without.jsonl", tmp_path / "with.jsonl"
    # "1,000 ex.": c1 = bad, good, bad; c2 = ok (Pass), garbled (invalid)
    save_transcript(
        FakeChat([("hi", "a bad reply"), ("more", "a good reply"), ("again", "bad again")]),
        without,
        "c1",
        "ignored-name",
    )
    save_transcript(FakeChat([("q", "fine reply"), ("q2", "garbled")]), without, "c2", "ignored-name")
    # "1,030 ex.": c1 = good, good, ok; c2 = good, good
    save_transcript(FakeChat([("hi", "good"), ("more", "good too"), ("again", "fine")]), with_, "c1", "with")
    save_transcript(FakeChat([("q", "good"), ("q2", "good")]), with_, "c2", "with")
    return without, with_


def test_save_transcript_rows_and_turn_requests(tmp_path):
    path = tmp_path / "t.jsonl"
    row = save_transcript(FakeChat([("hello", "hi there"), ("and then?", "then this")]), path, "c1", "1,030 ex.")
    assert row == read_jsonl_plain(path)[0]
    assert set(row) == {"id", "source", "messages", "tags", "system"} and "multi_turn" in row["tags"]
    reqs = turn_requests(read_transcripts(path), {"m": 1})
    assert [r.meta["turn"] for r in reqs] == [1, 2] and all(r.meta["n_turns"] == 2 for r in reqs)
    # turn 2 is judged in its context: the whole conversation before it, then the turn itself
    conv, last = re.search(
        r"\[Conversation\]\n(.*?)\n\n\[Last assistant turn\]\n(.*?)\n\n", reqs[1].prompt, re.S
    ).groups()
    assert conv == "User: hello\n\nAssistant: hi there\n\nUser: and then?" and last == "then this"
    assert reqs[1].meta["item_id"] == "c1|turn2|1,030 ex." and reqs[0].key != reqs[1].key
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "messages": [{"role": "user", "content": "hi"}], "system": "s"}\n')
    with pytest.raises(DataError, match="no assistant turn"):
        read_transcripts(tmp_path / "bad.jsonl")


def test_dialogue_turn_shares_by_hand():
    rows = [
        {"system": "s", "dialogue_id": "c1", "turn": 1, "label": "Fail"},
        {"system": "s", "dialogue_id": "c1", "turn": 2, "label": "Excellent"},
        {"system": "s", "dialogue_id": "c2", "turn": 1, "label": "Pass"},
        {"system": "s", "dialogue_id": "c2", "turn": 2, "label": None},
    ]
    d = an.dialogue_turn_shares(rows)["s"]
    assert d["n"] == 3 and d["invalid"] == 1 and d["turns"] == 4 and d["conversations"] == 2
    assert d["Fail"]["pct"] == pytest.approx(100 / 3) and d["Excellent"]["count"] == 1
    assert d["by_turn"]["1"]["Fail"]["pct"] == 50.0 and d["by_turn"]["2"]["n"] == 1


def test_run_judge_grades_every_turn(tmp_path):
    without, with_ = _write(tmp_path)
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = JudgeConfig(
        token_shift=False,
        n_bootstrap=50,
        protocols=["absolute"],
        parse_retries=0,
        dialogue_files={"1,000 ex.": str(without), "1,030 ex.": str(with_)},
    )
    judge = TurnJudge()
    out = run_judge(cfg, judge=judge)
    res = json.loads((out / "results.json").read_text())
    assert judge.sent == 8 + 5 + 5  # 8 absolute + one request per assistant turn
    a, b = res["dialogue_turns"]["1,000 ex."], res["dialogue_turns"]["1,030 ex."]
    # without: 5 turns, 1 invalid; Fail 2/4, Pass 1/4, Excellent 1/4.  with: Excellent 4/5, Pass 1/5
    assert (a["n"], a["invalid"], a["turns"], a["conversations"]) == (4, 1, 5, 2)
    assert (a["Fail"]["pct"], a["Pass"]["pct"], a["Excellent"]["pct"]) == (50.0, 25.0, 25.0)
    assert (b["Fail"]["pct"], b["Pass"]["pct"], b["Excellent"]["pct"]) == (0.0, 20.0, 80.0)
    # per conversation (Fail 0, Pass 1, Excellent 2): c1 2/3 vs 5/3, c2 1 vs 2 -> 1,030 ex. better in both
    assert res["dialogue_compare"] == [
        {"a": "1,000 ex.", "b": "1,030 ex.", "n": 2, "a_better": 0, "tied": 0, "a_worse": 2}
    ]
    assert res["dialogue"] == {}  # the generation-based final-turn table is not mixed with the transcripts
    with open(out / "dialogue_turns.csv") as fh:
        table = list(csv.DictReader(fh))
    first = next(r for r in table if r["system"] == "1,000 ex." and r["turn"] == "all")
    assert first["Fail_count"] == "2" and first["invalid"] == "1" and float(first["Excellent_pct"]) == 25.0
    assert {r["turn"] for r in table if r["system"] == "1,030 ex."} == {"all", "1", "2", "3"}
    judged = read_jsonl_plain(out / "judgments.jsonl")
    assert sum(j.get("kind") == "dialogue_turn" for j in judged) == 10
    again = TurnJudge()
    run_judge(cfg, judge=again)
    assert again.sent == 0  # every turn came from the cache


def test_judge_dialogues_without_a_run(tmp_path):
    _, with_ = _write(tmp_path)
    cfg = Config(run_dir=str(tmp_path / "run"))
    cfg.judge = JudgeConfig(parse_retries=0)
    res = judge_dialogues(TurnJudge(), cfg.judge, read_transcripts(with_), tmp_path / "cache")
    d = res["dialogue_turns"]["with"]  # the rows' own system name when no override is given
    assert d["turns"] == 5 and d["Excellent"]["count"] == 4 and res["requests"]["sent"] == 5
    assert len(res["turns"]) == 5 and (tmp_path / "cache").is_dir()


class EchoChat:
    """Stands in for `lima_repro.generate.Chat`: answers each user turn with its position and keeps the history."""

    def __init__(self):
        self.history, self.resets = [], 0

    def __call__(self, text):
        self.history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": f"answer {len(self.history) // 2 + 1} to {text}"},
        ]
        return self.history[-1]["content"]

    def reset(self):
        self.history, self.resets = [], self.resets + 1


def test_scripted_conversations_from_a_prompt_list(tmp_path):
    shipped = read_script("demo:dialogue_prompts.jsonl")
    assert len(shipped) == 10 and shipped[0]["id"] == "conv-01" and not any(r["follow_ups"] for r in shipped)
    script = tmp_path / "script.jsonl"
    script.write_text('{"id": "a", "prompt": "p1"}\n\n{"id": "b", "prompt": "p2", "follow_ups": ["own 1", "own 2"]}\n')
    assert [r["id"] for r in read_script(script, 1)] == ["a"]
    chat, path = EchoChat(), tmp_path / "t.jsonl"
    rows = hold_conversations(chat, read_script(script), ["generic"], "1,030 ex.", path, seed=0)
    assert chat.resets == 2 and read_jsonl_plain(path) == rows
    users = [[m["content"] for m in r["messages"] if m["role"] == "user"] for r in rows]
    assert users == [["p1", "generic"], ["p2", "own 1", "own 2"]]  # a row's own follow-ups replace the generic ones
    assert rows[1]["messages"][-1]["content"] == "answer 3 to own 2" and rows[1]["source"] == "scripted"
    reqs = turn_requests(read_transcripts(path), {"m": 1})
    assert [(r.meta["dialogue_id"], r.meta["turn"]) for r in reqs] == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3)]


@pytest.mark.parametrize(
    "text,where,why",
    [
        ('{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": \n', "line 2", "malformed JSON"),
        ('{"id": "a", "text": "p"}\n', "line 1", "no non-empty `prompt`"),
        ('{"id": "a", "prompt": "p", "follow_ups": "more"}\n', "line 1", "`follow_ups` must be a list"),
        ('{"id": "a", "prompt": "p"}\n{"id": "a", "prompt": "q"}\n', "line 2", "duplicate id"),
        ("\n", "", "the prompt list is empty"),
    ],
)
def test_bad_prompt_lists_name_the_line_and_the_fix(tmp_path, text, where, why):
    path = tmp_path / "script.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=why) as e:
        read_script(path)
    # the file and the line: "FILE:N:" from the checked line reader, "FILE, line N" from the row checks
    assert str(path) in str(e.value) and (where in str(e.value) or where.replace("line ", ":") + ":" in str(e.value))
