"""The judge stage end to end against a real OpenAI-compatible server (issue 23): `transformers serve` on 127.0.0.1
with the packaged SmolLM2-135M-Instruct (the `judge-server` extra, docs/dependencies.md). Without continuous
batching it answers one request at a time, so requests sent together wait in its queue.

The server logs every request's body as it arrives (`--enable-log-requests --log-level debug`), cancelled ones too:
that log is the count of what was sent, and shows whether the same request was sent twice. With 4 answer tokens the
135M judge never writes a verdict line, so every request takes the parse-retry path (whose fast version is the last
test: the real server showed the second parse retry sending the first one's request again)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from helpers import generation_rows

from lima_repro.config import Config, JudgeConfig
from lima_repro.files import read_json, read_jsonl_plain, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import Completion, Judge, JudgmentCache, Request, judge_requests
from lima_repro.judging.local import smollm2_dir
from lima_repro.judging.protocols import template_text
from lima_repro.runs import RunDir

STARTUP_S = 180  # model load: ~20 s on an idle 2-core machine, ~45 s on a busy one
JUDGE_S = 150  # one judge run: 12 requests of ~1 s each on an idle machine (~4 s on a busy one)
MAX_TOKENS = 4
KEY_ENV = "LIMA_TEST_JUDGE_KEY"
BODY = re.compile(r"Request (\S+) body: (.*)$")


class Served:
    """A `transformers serve` process and its log."""

    def __init__(self, proc: subprocess.Popen, log: Path, url: str, model: str):
        self.proc, self.log, self.url, self.model = proc, log, url, model
        self.latency_s = 0.0

    def bodies(self) -> list[str]:
        """The body of every request the server received so far, as sent (its log cuts a body at 4000 chars)."""
        out = [m.group(2) for line in self.log.read_text().splitlines() if (m := BODY.search(line))]
        for body in out:
            try:
                json.loads(body)
            except ValueError:
                pytest.fail(f"a logged request body was cut, so requests cannot be compared: {body[-200:]}")
        return out

    def ask(self, prompt: str) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS}
        req = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=STARTUP_S).read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(
            module, reason="`transformers serve` needs the judge-server extra: pip install -e '.[judge-server]'"
        )
    model, port = str(smollm2_dir()), free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # one torch thread: on 2 busy cores two threads make each answer ~5x slower (they wait for each other)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", model, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--device", "cpu", "--enable-log-requests", "--log-level", "debug"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    served = Served(proc, log, f"http://127.0.0.1:{port}/v1", model)
    try:
        end = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < end, f"no /health within {STARTUP_S} s:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        t0 = time.monotonic()
        served.ask(template_text("pairwise"))  # a judge-sized prompt: warms the model and times one answer
        served.latency_s = time.monotonic() - t0
        yield served
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and any process it spawned: its own session
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cfg(tmp_path: Path, served: Served, **kw) -> Config:
    """A run directory with generations of 2 prompts by 2 systems (`base`, `epoch-2`), judged by `served`."""
    cfg = Config(run_dir=str(tmp_path / "run"))
    rows = [r for r in generation_rows() if r["prompt_id"] in ("p1", "p2")]
    write_jsonl(RunDir.of(cfg).generations_file(cfg), rows)
    cfg.judge = JudgeConfig(
        **{
            "backend": "openai",
            "model": served.model,  # the server is pinned to the folder it was started with, by that name
            "base_url": served.url,
            "api_key_env": KEY_ENV,
            "protocols": ["pairwise"],
            "max_tokens": MAX_TOKENS,
            "max_retry_s": 30.0,  # a server that keeps failing ends the stage within the test's bound
            "token_shift": False,
            "n_bootstrap": 50,
            **kw,
        }
    )
    return cfg


def _judge(cfg: Config, served: Served) -> tuple[list[str], dict]:
    """Run the judge stage; (the request bodies the server received during it, the runner's counts)."""
    before = len(served.bodies())
    t0 = time.monotonic()
    run_judge(cfg)
    assert time.monotonic() - t0 < JUDGE_S
    return served.bodies()[before:], read_json(RunDir.of(cfg).results)["requests"]


@pytest.mark.slow
def test_the_judge_stage_against_transformers_serve(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-dummy-0123456789")  # the server checks no key; the judge needs one named
    cfg = _cfg(tmp_path, server, concurrency=2)
    sent, stats = _judge(cfg, server)

    judged = read_jsonl_plain(RunDir.of(cfg).judgments)
    assert len(judged) == 4 and stats["errors"] == 0 and not any("error" in j for j in judged)
    # every request answered: a verdict, or none in any of the 1 + parse_retries answers (counted invalid)
    for j in judged:
        assert j["valid"] == (j["label"] is not None) and len(j["raw_attempts"]) == j["attempts"]
        assert j["valid"] or j["attempts"] == 3
    assert stats["invalid"] == sum(not j["valid"] for j in judged)
    assert sorted((j["prompt_id"], j["order"]) for j in judged) == [
        ("p1", "AB"),
        ("p1", "BA"),
        ("p2", "AB"),
        ("p2", "BA"),
    ]
    # the server saw exactly the requests the judge counted, none of them twice (a parse retry changes the request)
    assert len(sent) == stats["sent"] == sum(j["attempts"] for j in judged)
    assert max(Counter(sent).values()) == 1, [b for b, n in Counter(sent).items() if n > 1]
    cache = [row["key"] for p in RunDir.of(cfg).judge_cache(cfg).iterdir() for row in read_jsonl_plain(p)]
    assert sorted(cache) == sorted(j["key"] for j in judged) and len(set(cache)) == 4

    sent_again, stats_again = _judge(cfg, server)  # a rerun answers from the cache
    assert sent_again == [] and stats_again["sent"] == 0 and stats_again["cached"] == 4


@pytest.mark.slow
def test_eight_requests_in_flight_to_a_server_answering_one_at_a_time_are_each_sent_once(server, tmp_path, monkeypatch):
    # issue 23: all 8 requests wait in the server's queue, the last ~8 answers long. A deadline of timeout_s (3
    # answers) counted from sending would abandon the last ones and send them again; queue-aware deadlines wait.
    monkeypatch.setenv(KEY_ENV, "sk-dummy-0123456789")
    timeout_s = max(3 * server.latency_s, 2.0)
    cfg = _cfg(
        tmp_path, server, protocols=["pairwise", "absolute"], concurrency=8, timeout_s=timeout_s, parse_retries=0
    )
    sent, stats = _judge(cfg, server)

    judged = read_jsonl_plain(RunDir.of(cfg).judgments)
    assert len(judged) == 8 and stats["errors"] == 0 and not any("error" in j for j in judged)
    assert len(sent) == len(set(sent)) == stats["sent"] == 8


class Undecided(Judge):
    """Never writes a verdict; records every prompt it is sent."""

    kind = "undecided"

    def __init__(self):
        self.prompts: list[str] = []

    def identity(self) -> dict:
        return {"kind": self.kind, "model": "undecided"}

    def complete_many(self, requests):
        for i, r in enumerate(requests):
            self.prompts.append(r.prompt)
            yield i, Completion(text="I cannot decide.")


def test_each_parse_retry_sends_a_request_unlike_every_earlier_one(tmp_path):
    judge = Undecided()
    reqs = [Request(key=k, protocol="pairwise", prompt=f"Which is better? {k}") for k in ("x", "y")]
    rows, stats = judge_requests(judge, reqs, JudgmentCache(tmp_path / "c.jsonl"), parse_retries=3, progress=False)
    assert len(judge.prompts) == len(set(judge.prompts)) == 8 and stats["invalid"] == 2
    reminder = "\n\nReminder: end your answer with one line `Verdict: <label>`, where <label> is one of A, B, neither."
    assert [p for p in judge.prompts if p.startswith("Which is better? x")] == [
        "Which is better? x" + reminder * k for k in range(4)
    ]
    assert all(r["retry_suffix"] == reminder * 3 and r["attempts"] == 4 for r in rows)
