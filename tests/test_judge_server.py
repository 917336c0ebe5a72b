"""The OpenAI-compatible judge against real servers on 127.0.0.1 that are slow or hostile: one that answers one
request at a time (few duplicate requests at the default settings scaled down), one that trickles its answer byte
by byte, one that answers 429 for ever (the stage ends within its deadline and retry budget, in one line, with every
answer received cached), Ctrl-C on the CLI (status 130 within seconds), and spellings of one server's URL sharing one
cache. Each server stops by itself: its slowest answer is bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import chat_completion, generation_rows

from lima_repro.config import Config, JudgeConfig, to_dict
from lima_repro.files import read_jsonl_plain, write_json, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import JudgmentCache, Request, cache_key, judge_requests, make_judge
from lima_repro.judging.base import RetryBudgetError
from lima_repro.judging.protocols import PROTOCOLS
from lima_repro.judging.transport import Throttle, server_identity
from lima_repro.mt_bench import FastChatJudge

ROOT = Path(__file__).resolve().parents[1]
VERDICT = json.dumps(chat_completion("m", "A is clearer.\nVerdict: A")).encode()


class Server:
    """An HTTP server on 127.0.0.1; `answer(handler, prompt)` writes each POST's response. `prompts` counts the
    requests per prompt (the last message), `messages` keeps each request's messages; with `serial`, one request is
    answered at a time (a server without batching)."""

    def __init__(self, answer, serial: bool = False):
        self.prompts: Counter = Counter()
        self.messages: list[list[dict]] = []
        self.stop = threading.Event()
        lock, one_at_a_time = threading.Lock(), threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                messages = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
                prompt = messages[-1]["content"]
                with lock:
                    server.prompts[prompt] += 1
                    server.messages.append(messages)
                try:
                    if serial:
                        with one_at_a_time:
                            answer(self, prompt)
                    else:
                        answer(self, prompt)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler, code: int, body: bytes, headers: dict | None = None, byte_s: float = 0.0):
    handler.send_response(code)
    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(k, v)
    handler.end_headers()
    if not byte_s:
        handler.wfile.write(body)
        return
    for i in range(len(body)):  # slowloris: every byte just before a per-read timeout would fire
        handler.wfile.write(body[i : i + 1])
        handler.wfile.flush()
        time.sleep(byte_s)


@pytest.fixture
def serve():
    servers = []

    def start(answer, serial=False):
        servers.append(Server(answer, serial))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _jc(url: str, **kw) -> JudgeConfig:
    defaults = dict(backend="openai", model="m", base_url=url, api_key_env="", backoff_s=0.01, token_shift=False)
    return JudgeConfig(**{**defaults, "protocols": ["pairwise"], "n_bootstrap": 50, **kw})


def _cfg(tmp_path, url: str, **kw) -> Config:
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = _jc(url, **kw)
    return cfg


def _requests(judge, prompts):
    proto = PROTOCOLS["pairwise"]
    return [
        Request(cache_key(judge.identity(), "pairwise", "t", p), "pairwise", p, proto.labels, meta={"prompt": p})
        for p in prompts
    ]


def test_a_server_answering_one_request_at_a_time_gets_few_duplicates(serve, tmp_path):
    # issue 23 scaled down: an answer takes 0.1 s, the default 8 requests in flight, a 0.4 s timeout. Deadlines
    # counted from the send alone time out the requests queued behind 4 others, and re-send them while the server
    # still computes them; queue-aware deadlines wait for them.
    def answer(handler, prompt):
        time.sleep(0.1)
        send(handler, 200, VERDICT)

    server = serve(answer, serial=True)
    t0 = time.monotonic()
    out = run_judge(_cfg(tmp_path, server.url, concurrency=8, timeout_s=0.4))
    judged = read_jsonl_plain(out / "judgments.jsonl")
    assert len(judged) == 8 and all(j["valid"] for j in judged)
    assert len(server.prompts) == 8 and sum(server.prompts.values()) <= 9, server.prompts
    assert time.monotonic() - t0 < 30


def test_a_trickling_server_is_cut_at_the_deadline_and_the_stage_stops_with_the_cache_kept(serve, tmp_path):
    def answer(handler, prompt):
        if "TRICKLE" in prompt:  # 20 s for the whole answer, a byte every 0.08 s: no per-read timeout fires
            send(handler, 200, VERDICT[:250], byte_s=0.08)
        else:
            send(handler, 200, VERDICT)

    server = serve(answer)
    judge = make_judge(_jc(server.url, concurrency=2, timeout_s=0.5, max_retries=50, max_retry_s=1.0))
    reqs = _requests(judge, ["Which is better? OK", "Which is better? TRICKLE"])
    t0 = time.monotonic()
    with pytest.raises(RetryBudgetError) as err:
        judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), progress=False)
    assert time.monotonic() - t0 < 6
    msg = str(err.value)
    assert "\n" not in msg and "judge.max_retry_s=1 s" in msg and "APITimeoutError" in msg
    assert "1 of 2 judgments are cached and a rerun resumes from them" in msg
    assert len(read_jsonl_plain(tmp_path / "c.jsonl")) == 1
    assert server.prompts["Which is better? OK"] == 1


def test_a_server_answering_429_for_ever_fails_the_stage_in_one_line(serve, tmp_path):
    def answer(handler, prompt):
        send(handler, 429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"})

    server = serve(answer)
    t0 = time.monotonic()
    with pytest.raises(RetryBudgetError) as err:
        run_judge(_cfg(tmp_path, server.url, max_retries=100, max_retry_s=1.0))
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "\n" not in msg and "RateLimitError" in msg and "0 of 8 judgments are cached" in msg
    status = json.loads((tmp_path / "run" / "judge" / "manifest.json").read_text())["status"]
    assert status.startswith("failed: RetryBudgetError")


@pytest.mark.slow
def test_ctrl_c_stops_the_cli_judge_within_seconds(serve, tmp_path):
    arrived = threading.Event()

    def answer(handler, prompt):  # never answers within the test (stops with the server)
        arrived.set()
        server.stop.wait(60)

    server = serve(answer)
    cfg = _cfg(tmp_path, server.url, timeout_s=60)
    write_json(tmp_path / "config.json", to_dict(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lima_repro", "judge", "--config-json", str(tmp_path / "config.json")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []  # (when, line) of stderr
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), x) for x in proc.stderr), daemon=True)
    reader.start()
    try:
        assert arrived.wait(120), "the judge sent no request"
        time.sleep(0.5)  # every worker is in flight or waiting for a slot
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(5)
    finally:
        proc.kill()
    said = [(t - t0, x) for t, x in lines if "interrupted (Ctrl-C)" in x]
    # the line comes within seconds; the exit follows once the interpreter has unloaded torch (seconds more on a
    # busy 2-core machine, nothing of the judge's: its threads are gone by then)
    assert proc.returncode == 130 and len(said) == 1 and said[0][0] < 5, (said, lines[-5:])
    assert said[0][1].rstrip().endswith("rerun the same command to resume") and not any(
        "Traceback" in x for _, x in lines
    )


def test_spellings_of_one_server_share_one_cache(serve, tmp_path):
    server = serve(lambda handler, prompt: send(handler, 200, VERDICT))
    cache = tmp_path / "cache"
    variants = [
        f"http://127.0.0.1:{server.port}/v1/",
        f"http://localhost:{server.port}/v1",
        f"HTTP://LocalHost:{server.port}/v1//",
        f"http://user:sk-pasted0123456789abcdef@localhost:{server.port}/v1",
    ]
    for url in variants:
        judge = make_judge(_jc(url))
        _, stats = judge_requests(judge, _requests(judge, ["Which?"]), JudgmentCache.for_judge(cache, judge))
        assert stats["sent"] == (url == variants[0]), url
    assert sum(server.prompts.values()) == 1
    assert "sk-pasted" not in "".join(p.read_text() for p in cache.iterdir())


def test_the_server_sees_a_requests_system_message(serve, tmp_path):
    # MT-Bench's judge sends FastChat's system prompt as a system message, not packed into the user's text
    server = serve(lambda handler, prompt: send(handler, 200, VERDICT))
    judge = FastChatJudge(_jc(server.url))
    messages = ({"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Grade."})
    key = cache_key(judge.identity(), "pairwise", "t", "Grade.", messages)
    asked = Request(key, "pairwise", "Grade.", PROTOCOLS["pairwise"].labels, messages=messages)
    plain = _requests(judge, ["Which?"])[0]
    rows, _ = judge_requests(judge, [asked, plain], JudgmentCache(tmp_path / "c.jsonl"), parse_retries=0)
    assert sorted(server.messages, key=len) == [[{"role": "user", "content": "Which?"}], list(messages)]
    assert [r["raw"] for r in rows] == ["A is clearer.\nVerdict: A"] * 2


@pytest.mark.parametrize(
    "url, expected",
    [
        (None, (None, ())),
        ("https://API.OpenAI.com:443/v1/", ("https://api.openai.com/v1", ())),
        ("http://[::1]:8000/v1", ("http://127.0.0.1:8000/v1", ())),
        ("http://localhost:80/v1", ("http://127.0.0.1/v1", ())),
        ("http://10.0.0.5:8000/v1?api_key=abc123&region=eu", ("http://10.0.0.5:8000/v1?region=eu", ("abc123",))),
        ("https://me:s3cret@host.example/v1", ("https://host.example/v1", ("s3cret",))),
    ],
)
def test_server_identity(url, expected):
    assert server_identity(url) == expected


def test_throttle_halves_once_per_wave_and_grows_back_by_one():
    t = Throttle(8, timeout_s=10.0, abort=threading.Event())
    sends = [t.acquire() for _ in range(8)]
    assert [s[2] for s in sends] == list(range(8))  # requests ahead of each
    assert [round(d - s) for s, d, _ in sends] == [10 + 10 * k for k in range(8)]  # no answer seen: timeout_s each
    t.release(sends[0][0], sends[0][2], "overload")
    t.release(sends[1][0], sends[1][2], "overload")  # sent before the cut: the same wave, no second halving
    assert t.limit == 4
    for s, _, ahead in sends[2:6]:
        t.release(s, ahead, "ok")
    assert t.limit == 5 and t.per_answer_s is not None and t.per_answer_s < 1
    sent, deadline, ahead = t.acquire()
    assert ahead == 2 and deadline - sent == pytest.approx(10 + 2 * t.per_answer_s)
