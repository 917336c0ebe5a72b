"""Judging throughput: the OpenAI-compatible judge at its configured concurrency vs one request at a time.

    python benchmarks/judge_concurrency.py                      # 48 requests, 200 ms server latency, 2 rounds
    python benchmarks/judge_concurrency.py --requests 96 --latency 0.5 --concurrency 1 8 32

A loopback HTTP server on 127.0.0.1 answers every chat-completions request after a fixed latency (a stand-in for a
hosted judge: the time is the server's, not the CPU's, so the ratio holds on a busy machine). Each setting judges
the same pairwise requests through `judge_requests` with a fresh cache; settings alternate (A B, then B A). Then a
rerun over the filled cache counts the requests that reach the server (it should be 0) and times it. The AlpacaEval
line extrapolates the measured rate to its 805 prompts judged in both orders (1,610 requests).

Last line, machine-readable: `speedup=` (configured concurrency over 1), `requests_per_s=`, `cached_requests=`,
`cached_rerun_s=`, `alpacaeval_minutes=`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lima_repro.config import JudgeConfig
from lima_repro.judging import JudgmentCache, Request, cache_key, judge_requests, make_judge

ALPACAEVAL_REQUESTS = 805 * 2  # AlpacaEval's 805 prompts, each judged in both orders (position balance)


class LatencyServer:
    """Answers every POST after `latency` seconds with a parsable pairwise verdict; counts the requests."""

    def __init__(self, latency: float):
        self.calls = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.calls += 1
                time.sleep(latency)
                data = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "A is more useful.\nVerdict: A"},
                            }
                        ],
                        "usage": {"prompt_tokens": 300, "completion_tokens": 12, "total_tokens": 312},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_requests(jc: JudgeConfig, n: int, tag: str) -> list[Request]:
    judge = make_judge(jc)
    requests = []
    for i in range(n):
        prompt = f"Question {tag}-{i}: which answer serves the user better?\nAnswer A: ...\nAnswer B: ..."
        key = cache_key(judge.identity(), "pairwise", "bench", prompt)
        requests.append(Request(key=key, protocol="pairwise", prompt=prompt, labels=("A", "B", "neither")))
    return requests


def timed_pass(jc: JudgeConfig, requests: list[Request], cache_path: Path) -> tuple[float, dict]:
    judge = make_judge(jc)
    t0 = time.perf_counter()
    rows, stats = judge_requests(judge, requests, JudgmentCache(cache_path), progress=False)
    elapsed = time.perf_counter() - t0
    assert len(rows) == len(requests) and stats["errors"] == 0, stats
    return elapsed, stats


def main() -> None:
    default = JudgeConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server waits before each answer")
    ap.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, default.concurrency],
        help=f"settings to compare; the first is the baseline (default: 1 and judge.concurrency={default.concurrency})",
    )
    ap.add_argument("--rounds", type=int, default=2)
    opts = ap.parse_args()

    server = LatencyServer(opts.latency)
    times: dict[int, list[float]] = {c: [] for c in opts.concurrency}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(opts.rounds):
                order = opts.concurrency if rnd % 2 == 0 else list(reversed(opts.concurrency))
                for c in order:
                    jc = JudgeConfig(
                        backend="openai",
                        model="bench-judge",
                        base_url=server.url,
                        api_key_env="",
                        concurrency=c,
                        max_tokens=32,
                    )
                    requests = make_requests(jc, opts.requests, f"r{rnd}c{c}")
                    elapsed, _ = timed_pass(jc, requests, Path(tmp) / f"r{rnd}c{c}.jsonl")
                    times[c].append(elapsed)
                    print(
                        f"round {rnd + 1} concurrency {c:>3}: {opts.requests} requests in {elapsed:6.2f} s "
                        f"({opts.requests / elapsed:6.1f} req/s)",
                        flush=True,
                    )
            # cached rerun of the last pass: every request is already in the cache file
            before = server.calls
            cached_s, stats = timed_pass(jc, requests, Path(tmp) / f"r{rnd}c{c}.jsonl")
            cached_requests = server.calls - before
            print(
                f"cached rerun: {cached_requests} requests reached the server, {stats['cached']} answered from "
                f"the cache, {cached_s:.3f} s"
            )
    finally:
        server.close()

    base, best = opts.concurrency[0], opts.concurrency[-1]
    med = {c: statistics.median(ts) for c, ts in times.items()}
    rate = opts.requests / med[best]
    spread = [round(opts.requests / t, 1) for t in times[best]]
    print(
        f"machine-independent: server latency {opts.latency * 1000:.0f} ms; ideal at concurrency {best}: "
        f"{best / opts.latency:.1f} req/s; measured per round {spread}"
    )
    print(
        f"speedup={med[base] / med[best]:.2f} requests_per_s={rate:.1f} cached_requests={cached_requests} "
        f"cached_rerun_s={cached_s:.3f} alpacaeval_minutes={ALPACAEVAL_REQUESTS / rate / 60:.1f}"
    )


if __name__ == "__main__":
    main()
