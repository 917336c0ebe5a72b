"""Judging with any OpenAI-compatible chat-completions server (OpenAI, vLLM, TGI, Ollama).

`OpenAIJudge` uses the `openai` client with bounded concurrency, its own retries with exponential backoff on 429,
5xx, timeouts and connection errors, and token usage and cost per request. The key is read from the environment
variable NAMED in the config (`judge.api_key_env`); it is never stored anywhere.
"""
from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterator

import openai
from openai import OpenAI

from .base import Completion, Judge, JudgeError, Request


class OpenAIJudge(Judge):
    kind = "openai"

    def __init__(self, jc):
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
