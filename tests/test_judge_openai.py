"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1: 429 then success, a timeout, malformed
output, 200 responses that are no chat completion, usage and cost, the key read from the env var the config names,
zero requests on a cached rerun, the server in the cache key, asking again for invalid verdicts, and requests that
carry their own messages (a system prompt) sent as they are."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from helpers import ChatServer, chat_completion

from lima_repro.config import JudgeConfig
from lima_repro.files import read_jsonl_plain
from lima_repro.judging import JudgeError, JudgmentCache, Request, cache_key, judge_requests, make_judge
from lima_repro.judging.protocols import PROTOCOLS

RAW_200 = {
    "NOTJSON": (b"<html>gateway</html>", "application/json"),
    "TEXT": (b"hello", "text/plain"),
    "LIST": (b'[{"choices": []}]', "application/json"),
    "NUMBER": (b'{"choices": [{"message": {"content": 5}}]}', "application/json"),
}


class FakeServer(ChatServer):
    """The judge server: the last word of a prompt's first line is a marker saying how to answer (RATE: 429 once,
    FLAKY: 503 once, SLOW: slower than the client's deadline once, RAW_200 markers: a 200 that is no chat
    completion, BAD/EMPTY: an unparsable verdict, FIXED: unparsable the first time); `calls` counts requests per
    marker, `prompts` keeps each one's prompts and `messages` each one's messages."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.prompts: dict[str, list[str]] = {}
        self.messages: dict[str, list[list[dict]]] = {}
        self.auth: set[str] = set()
        lock = threading.Lock()

        def respond(body, headers):
            prompt = body["messages"][-1]["content"]
            marker = prompt.split("\n")[0].split()[-1]
            with lock:
                self.calls[marker] += 1
                self.prompts.setdefault(marker, []).append(prompt)
                self.messages.setdefault(marker, []).append(body["messages"])
                n = self.calls[marker]
                self.auth.add(headers.get("Authorization", ""))
            if marker == "RATE" and n == 1:
                return 429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0"}
            if marker == "FLAKY" and n == 1:
                return 503, {"error": {"message": "overloaded"}}, None
            if marker == "SLOW" and n == 1:
                time.sleep(2.5)  # longer than the client's deadline: 0.5 s + 0.5 s per request ahead (3 in flight)
            if marker in RAW_200:  # a 200 whose body is no chat completion
                data, ctype = RAW_200[marker]
                return 200, data, {"Content-Type": ctype}
            text = {"BAD": "I cannot decide.", "EMPTY": ""}.get(marker, "Both fine, A is clearer.\nVerdict: A")
            if marker == "FIXED":  # invalid the first time, valid when asked again
                text = "Verdict: B" if n > 1 else "no idea"
            return 200, chat_completion(body["model"], text), None

        super().__init__(respond)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _jc(url: str, **kw) -> JudgeConfig:
    return JudgeConfig(
        backend="openai",
        model="test-judge",
        base_url=url,
        api_key_env="LIMA_TEST_JUDGE_KEY",
        concurrency=3,
        max_retries=3,
        backoff_s=0.01,
        timeout_s=0.5,
        parse_retries=1,
        price_input_per_mtok=2.0,
        price_output_per_mtok=10.0,
        **kw,
    )


def _requests(judge, markers):
    proto = PROTOCOLS["pairwise"]
    out = []
    for m in markers:
        prompt = f"Which is better? {m}"
        out.append(
            Request(
                key=cache_key(judge.identity(), "pairwise", "t", prompt),
                protocol="pairwise",
                prompt=prompt,
                labels=proto.labels,
                answer_prefix=proto.answer_prefix,
                meta={"marker": m},
            )
        )
    return out


def test_openai_judge_retries_timeouts_invalid_and_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "sk-secret-123")
    judge = make_judge(_jc(server.url))
    reqs = _requests(judge, ["OK1", "OK2", "RATE", "FLAKY", "SLOW", "BAD"])
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    rows, stats = judge_requests(judge, reqs, cache, parse_retries=1, progress=False)

    by = {r["marker"]: r for r in rows}
    for m in ("OK1", "OK2", "RATE", "FLAKY", "SLOW"):
        assert by[m]["valid"] and by[m]["label"] == "A", by[m]
    assert server.calls["RATE"] == 2 and server.calls["FLAKY"] == 2 and server.calls["SLOW"] == 2
    # malformed output: asked again once (parse_retries=1), then stored invalid with every raw text, not guessed
    assert server.calls["BAD"] == 2
    assert by["BAD"]["valid"] is False and by["BAD"]["label"] is None
    assert by["BAD"]["raw_attempts"] == ["I cannot decide."] * 2 and by["BAD"]["attempts"] == 2
    # a parse retry never re-sends the same request (at temperature 0 it would get the same answer): it appends a
    # reminder of the answer format, and the cached row records it
    first, again = server.prompts["BAD"]
    assert (
        again
        == first
        + "\n\nReminder: end your answer with one line `Verdict: <label>`, where <label> is one of A, B, neither."
    )
    assert by["BAD"]["retry_suffix"] == again[len(first) :] and "retry_suffix" not in by["OK1"]
    assert stats["invalid"] == 1 and stats["errors"] == 0 and stats["cached"] == 0
    # usage and cost: 7 successful completions of 100 + 10 tokens at $2 / $10 per million
    assert stats["prompt_tokens"] == 700 and stats["completion_tokens"] == 70
    assert stats["cost"] == pytest.approx(7 * (100 * 2 + 10 * 10) / 1e6)
    assert by["BAD"]["usage"] == {"prompt_tokens": 200, "completion_tokens": 20}
    assert server.auth == {"Bearer sk-secret-123"}
    assert "sk-secret-123" not in (tmp_path / "cache.jsonl").read_text()

    # rerun with a fresh cache object on the same file: zero requests
    before = sum(server.calls.values())
    rows2, stats2 = judge_requests(judge, reqs, JudgmentCache(tmp_path / "cache.jsonl"), progress=False)
    assert sum(server.calls.values()) == before and stats2["sent"] == 0 and stats2["cached"] == len(reqs)
    assert [r["label"] for r in rows2] == [r["label"] for r in rows]


def test_openai_judge_gives_up_as_error_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    # nothing listens on this port: connection errors, retried, then reported as errors and not cached
    judge = make_judge(
        _jc(
            "http://127.0.0.1:9/v1",
        )
    )
    judge.jc.max_retries = 1
    reqs = _requests(judge, ["X"])
    cache = JudgmentCache(tmp_path / "c.jsonl")
    rows, stats = judge_requests(judge, reqs, cache, progress=False)
    assert stats["errors"] == 1 and rows[0]["valid"] is False and "APIConnectionError" in rows[0]["error"]
    assert not (tmp_path / "c.jsonl").exists()


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("LIMA_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="LIMA_TEST_JUDGE_KEY"):
        make_judge(_jc("http://127.0.0.1:9/v1"))


def test_cost_cap_refuses_before_sending(server, tmp_path, monkeypatch):
    from helpers import generation_rows

    from lima_repro.config import Config
    from lima_repro.files import write_jsonl
    from lima_repro.judge import run_judge
    from lima_repro.judging import CostCapError

    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    judge = make_judge(_jc(server.url, max_tokens=512))
    reqs = _requests(judge, ["OK1", "OK2", "OK3"])
    # each prompt "Which is better? OKn" is 20 chars = 5 tokens at $2/M, plus up to 512 completion tokens at $10/M:
    # 3 * (5 * 2 + 512 * 10) / 1e6 = $0.01539
    assert judge.estimate_cost(reqs)["usd"] == pytest.approx(0.01539)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    with pytest.raises(CostCapError, match=r"\$0\.0154.*judge\.max_cost_usd=\$0\.0100"):
        judge_requests(judge, reqs, cache, progress=False, max_cost_usd=0.01)
    assert sum(server.calls.values()) == 0 and not (tmp_path / "cache.jsonl").exists()
    _, stats = judge_requests(judge, reqs, cache, progress=False, max_cost_usd=0.02)
    assert sum(server.calls.values()) == 3 and stats["estimated_cost"] == pytest.approx(0.01539)
    # only uncached requests are costed: a cached rerun passes even a zero cap
    _, stats = judge_requests(judge, reqs, cache, progress=False, max_cost_usd=0.0)
    assert stats["sent"] == 0 and sum(server.calls.values()) == 3

    # wired through run_judge: judge.max_cost_usd refuses the whole stage before any request
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = _jc(server.url, max_cost_usd=0.001, protocols=["pairwise"], token_shift=False)
    with pytest.raises(CostCapError, match="max_cost_usd"):
        run_judge(cfg, judge=make_judge(cfg.judge))
    assert sum(server.calls.values()) == 3


def test_a_200_that_is_no_chat_completion_is_a_failed_request(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    judge = make_judge(_jc(server.url))
    reqs = _requests(judge, ["NOTJSON", "TEXT", "LIST", "NUMBER", "OK1"])
    rows, stats = judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), progress=False)
    by = {r["marker"]: r for r in rows}
    assert by["OK1"]["valid"] and stats["errors"] == 4
    assert by["NOTJSON"]["error"].startswith("malformed response: JSONDecodeError")
    assert by["TEXT"]["error"] == "malformed response: the 200 response is not a chat completion (a str: 'hello')"
    assert by["LIST"]["error"].startswith("malformed response: the 200 response is not a chat completion (a list")
    assert by["NUMBER"]["error"] == "malformed response: the 200 response's message content is a int, not text"
    assert all(server.calls[m] == 1 for m in RAW_200)  # not retried, and not cached: a rerun asks again
    assert len(read_jsonl_plain(tmp_path / "c.jsonl")) == 1


def test_the_server_is_part_of_the_cache_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    other = FakeServer()
    try:
        a, b = make_judge(_jc(server.url)), make_judge(_jc(other.url))
        assert a.name == b.name and a.identity() != b.identity()
        cache = tmp_path / "cache"
        judge_requests(a, _requests(a, ["OK1"]), JudgmentCache.for_judge(cache, a), progress=False)
        _, stats = judge_requests(b, _requests(b, ["OK1"]), JudgmentCache.for_judge(cache, b), progress=False)
        assert stats["sent"] == 1 and stats["cached"] == 0 and other.calls["OK1"] == 1
        assert make_judge(_jc(server.url + "/")).identity() == a.identity()
    finally:
        other.close()


def test_invalid_verdicts_are_asked_again_with_retry_invalid(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    judge = make_judge(_jc(server.url))
    reqs = _requests(judge, ["EMPTY", "FIXED", "OK1"])
    rows, stats = judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), parse_retries=0, progress=False)
    assert [r["valid"] for r in rows] == [False, False, True] and stats["invalid"] == 2
    _, stats = judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), parse_retries=0, progress=False)
    assert stats["sent"] == 0 and stats["invalid"] == 2  # by default a rerun keeps them (paid once)
    rows, stats = judge_requests(
        judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), parse_retries=0, progress=False, retry_invalid=True
    )
    assert stats["sent"] == 2 and stats["cached"] == 1 and server.calls["OK1"] == 1
    assert [r["label"] for r in rows] == [None, "B", "A"] and stats["invalid"] == 1
    again = judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), progress=False)[0]
    assert [r["label"] for r in again] == [None, "B", "A"]  # the last row for a key wins


def test_a_request_with_messages_is_sent_as_they_are_and_a_parse_retry_keeps_the_system_message(
    server, tmp_path, monkeypatch
):
    monkeypatch.setenv("LIMA_TEST_JUDGE_KEY", "k")
    judge = make_judge(_jc(server.url))
    system, user = {"role": "system", "content": "You are a strict grader."}, "Which is better? FIXED"
    messages = (system, {"role": "user", "content": user})
    key = cache_key(judge.identity(), "pairwise", "t", user, messages)
    req = Request(key, "pairwise", user, PROTOCOLS["pairwise"].labels, "Verdict:", {"marker": "FIXED"}, messages)
    rows, stats = judge_requests(judge, [req], JudgmentCache(tmp_path / "c.jsonl"), parse_retries=1, progress=False)
    reminder = rows[0]["retry_suffix"]
    assert server.messages["FIXED"] == [
        [system, {"role": "user", "content": user}],
        [system, {"role": "user", "content": user + reminder}],  # the reminder goes to the last message only
    ]
    assert rows[0]["label"] == "B" and stats["sent"] == 2 and req.messages[-1]["content"] == user


def test_cache_keys_of_plain_prompts_are_unchanged_and_messages_are_in_the_key():
    judge = {"kind": "openai", "model": "gpt-4"}
    # pinned before requests carried messages: every judgment cached for a plain prompt stays found
    assert cache_key(judge, "pairwise", "abc", "Which is better?") == (
        "acc4b24c367366509838e289e1c962dceef07fe2300dbdd3e5a476cd379d9f07"
    )
    messages = ({"role": "system", "content": "Be fair é."}, {"role": "user", "content": "Which is better?"})
    key = cache_key(judge, "mt_bench", "abc", "Which is better?", messages)
    # MT-Bench packed its messages' JSON into the prompt before: those cached judgments stay found too
    assert key == cache_key(judge, "mt_bench", "abc", json.dumps(list(messages), ensure_ascii=False))
    assert key != cache_key(judge, "mt_bench", "abc", "Which is better?")
    other = ({"role": "system", "content": "Be kind."}, messages[1])
    assert key != cache_key(judge, "mt_bench", "abc", "Which is better?", other)
