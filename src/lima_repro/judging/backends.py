"""Judges behind one interface: `complete_many(requests)` yields `(index, Completion)` as each one finishes.

`OpenAIJudge` talks to any OpenAI-compatible chat-completions server (OpenAI, vLLM, TGI, Ollama) through the
`openai` client with bounded concurrency, its own retries with exponential backoff on 429, 5xx, timeouts and
connection errors, and token usage and cost per request. The key is read from the environment variable NAMED in
the config (`judge.api_key_env`); it is never stored anywhere. The local Hugging Face judge is in `local.py`.
"""
from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Iterator


class JudgeError(RuntimeError):
    """A judge cannot be set up (missing key, unknown backend); the message says what to set."""


class CostCapError(JudgeError):
    """The estimated cost of the uncached requests exceeds `judge.max_cost_usd`; nothing was sent."""


@dataclass
class Request:
    key: str
    """Cache key: hash of judge identity, template hash and the rendered prompt."""
    protocol: str
    prompt: str
    """The rendered template: the user message the judge sees."""
    labels: tuple[str, ...] = ()
    answer_prefix: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class Completion:
    text: str = ""
    label_probs: dict[str, float] | None = None
    """Local judges: probability of each label as the next token after the answer prefix (renormalised)."""
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None
    """Set when the request failed after all retries (not cached: a rerun tries again)."""


class Judge:
    """Base class. `identity()` names the judge in cache keys and outputs; `verdict_source` is `text` or `probs`."""

    kind = "abstract"
    verdict_source = "text"
    weak = False

    def identity(self) -> dict:
        raise NotImplementedError

    def complete_many(self, requests: list[Request]) -> Iterator[tuple[int, Completion]]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.identity()['model']}"


class OpenAIJudge(Judge):
    kind = "openai"

    def __init__(self, jc):
        from openai import OpenAI

        self.jc = jc
        key = os.environ.get(jc.api_key_env) if jc.api_key_env else None
        if jc.api_key_env and not key:
            raise JudgeError(
                f"judge.backend=openai needs an API key in the environment variable {jc.api_key_env!r} "
                f"(export {jc.api_key_env}=...); for a local server without keys set judge.api_key_env to ''"
            )
        # retries are ours (backoff, Retry-After, counted); the client's own are off so they are not doubled
        self.client = OpenAI(api_key=key or "not-needed", base_url=jc.base_url, timeout=jc.timeout_s, max_retries=0)

    def identity(self) -> dict:
        return {"kind": self.kind, "model": self.jc.model, "temperature": self.jc.temperature,
                "max_tokens": self.jc.max_tokens}

    def estimate_cost(self, requests: list[Request]) -> dict:
        """Cost estimate before sending: prompt tokens ~ characters / 4 at `price_input_per_mtok`, plus an upper
        bound of `max_tokens` completion tokens per request at `price_output_per_mtok` (parse retries not counted)."""
        prompt_tokens = sum(len(r.prompt) for r in requests) / 4
        completion_tokens = len(requests) * self.jc.max_tokens
        usd = (prompt_tokens * self.jc.price_input_per_mtok + completion_tokens * self.jc.price_output_per_mtok) / 1e6
        return {"requests": len(requests), "prompt_tokens": round(prompt_tokens), "completion_tokens": completion_tokens,
                "usd": usd}

    def _wait(self, attempt: int, err) -> float:
        retry_after = None
        response = getattr(err, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        backoff = self.jc.backoff_s * (2 ** attempt) * (1 + 0.25 * random.random())
        return min(max(backoff, retry_after or 0.0), 60.0)

    def _one(self, req: Request) -> Completion:
        import openai

        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                     openai.APIConnectionError)
        t0 = time.time()
        for attempt in range(self.jc.max_retries + 1):
            try:
                resp = self.client.chat.completions.create(
                    model=self.jc.model, messages=[{"role": "user", "content": req.prompt}],
                    temperature=self.jc.temperature, max_tokens=self.jc.max_tokens,
                )
            except retryable as e:
                err = e
            except openai.APIStatusError as e:  # other 5xx codes (e.g. 502 from a proxy) are worth a retry too
                if e.status_code < 500:
                    return Completion(error=f"{type(e).__name__}: {e}", latency_s=time.time() - t0)
                err = e
            else:
                text = (resp.choices[0].message.content or "") if resp.choices else ""
                u = resp.usage
                usage = {"prompt_tokens": getattr(u, "prompt_tokens", 0) or 0,
                         "completion_tokens": getattr(u, "completion_tokens", 0) or 0}
                cost = (usage["prompt_tokens"] * self.jc.price_input_per_mtok
                        + usage["completion_tokens"] * self.jc.price_output_per_mtok) / 1e6
                return Completion(text=text, usage=usage, cost=cost, latency_s=time.time() - t0)
            if attempt < self.jc.max_retries:
                time.sleep(self._wait(attempt, err))
        return Completion(error=f"{type(err).__name__} after {self.jc.max_retries + 1} attempts: {err}",
                          latency_s=time.time() - t0)

    def complete_many(self, requests: list[Request]) -> Iterator[tuple[int, Completion]]:
        with ThreadPoolExecutor(max_workers=max(1, self.jc.concurrency)) as pool:
            futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
            try:
                for fut in as_completed(futures):
                    yield futures[fut], fut.result()
            finally:  # an interrupted consumer must not leave queued requests running (and billed)
                for fut in futures:
                    fut.cancel()


def make_judge(jc) -> Judge:
    """The judge `judge.backend` names: `openai` (any OpenAI-compatible server) or `local` (Hugging Face model)."""
    if jc.backend == "openai":
        return OpenAIJudge(jc)
    if jc.backend == "local":
        from .local import HFJudge

        return HFJudge(jc)
    raise JudgeError(f"judge.backend must be 'openai' or 'local', got {jc.backend!r}")
