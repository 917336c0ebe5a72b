"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1: 429 then success, a timeout, malformed
output, usage and cost, the key read from the env var the config names, and zero requests on a cached rerun."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lima_repro.config import JudgeConfig
from lima_repro.judging import JudgeError, JudgmentCache, Request, cache_key, judge_requests, make_judge

from lima_repro.judging.protocols import PROTOCOLS


class FakeServer:
    def __init__(self):
        self.calls: Counter = Counter()
        self.auth: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                marker = prompt.split()[-1]
                with server.lock:
                    server.calls[marker] += 1
                    n = server.calls[marker]
                    server.auth.add(self.headers.get("Authorization", ""))
                if marker == "RATE" and n == 1:
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                                      {"Retry-After": "0"})
                if marker == "FLAKY" and n == 1:
                    return self._send(503, {"error": {"message": "overloaded"}})
                if marker == "SLOW" and n == 1:
                    time.sleep(1.5)  # longer than the client's timeout
                text = "I cannot decide." if marker == "BAD" else "Both fine, A is clearer.\nVerdict: A"
                try:
                    self._send(200, {
                        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _jc(url: str, **kw) -> JudgeConfig:
    return JudgeConfig(backend="openai", model="test-judge", base_url=url, api_key_env="LIMA_TEST_JUDGE_KEY",
                       concurrency=3, max_retries=3, backoff_s=0.01, timeout_s=0.5, parse_retries=1,
                       price_input_per_mtok=2.0, price_output_per_mtok=10.0, **kw)


def _requests(judge, markers):
    proto = PROTOCOLS["pairwise"]
    out = []
    for m in markers:
        prompt = f"Which is better? {m}"
        out.append(Request(key=cache_key(judge.identity(), "pairwise", "t", prompt), protocol="pairwise",
                           prompt=prompt, labels=proto.labels, answer_prefix=proto.answer_prefix, meta={"marker": m}))
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
    judge = make_judge(_jc("http://127.0.0.1:9/v1", ))
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
    from lima_repro.config import Config
    from lima_repro.judge import run_judge
    from lima_repro.judging import CostCapError
    from lima_repro.files import write_jsonl
    from helpers import generation_rows

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
