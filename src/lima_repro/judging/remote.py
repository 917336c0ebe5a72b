"""Judging with any OpenAI-compatible chat-completions server (OpenAI, vLLM, TGI, Ollama).

`OpenAIJudge` uses the `openai` client with concurrency that adapts to the server (`transport.Throttle`), its own
retries with exponential backoff on 429, 5xx, timeouts and connection errors, a total deadline per request and a
retry budget per run (`judge.max_retry_s`: past it `RetryBudgetError`), and token usage and cost per request. A 200
whose body is not a chat completion (plain text, a JSON list) is a failed request with the reason, not a crash.
Stopping the consumer (Ctrl-C, an error) ends every request in flight within a fraction of a second. The key is read
from the environment variable NAMED in the config (`judge.api_key_env`); it is never stored anywhere: every error
text and answer is redacted (the key, a key written into `judge.base_url`, and whatever follows `Authorization:` or
`Bearer`) before it leaves this module.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import openai
from openai import OpenAI

from .. import redaction
from ..config.judge import JudgeConfig, key_name_problem
from .base import Completion, Judge, JudgeError, Request, RetryBudgetError
from .transport import DeadlineBackend, RetryBudget, Throttle, deadline_http_client, server_identity

# what says the server is overloaded or unreachable: retried, and the throttle halves the requests in flight
OVERLOAD = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)


def redact(text: str, secrets: tuple[str, ...] = (), headers: bool = True) -> str:
    """`text` with each secret, anything that looks like a key and, with `headers`, every credential-looking header
    value (a server's error may echo the request's headers) replaced by [redacted] (`redaction.redact`)."""
    return redaction.redact(text, secrets, headers=headers)


def chat_text(resp) -> tuple[str, dict[str, int]]:
    """(answer text, token usage) of a chat-completions response; ValueError saying what is wrong when the
    server's 200 body is not one (the client returns plain text or a JSON list as they are)."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"the 200 response is not a chat completion (a {type(resp).__name__}: {str(resp)[:120]!r})")
    content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    if content is not None and not isinstance(content, str):
        raise ValueError(f"the 200 response's message content is a {type(content).__name__}, not text")
    u = getattr(resp, "usage", None)
    usage = {k: getattr(u, k, 0) for k in ("prompt_tokens", "completion_tokens")}
    if not all(isinstance(v, int) or v is None for v in usage.values()):
        raise ValueError(f"the 200 response's token usage is not a count: {usage}")
    return content or "", {k: v or 0 for k, v in usage.items()}


def estimate_cost(jc: JudgeConfig, requests: list[Request]) -> dict:
    """Cost estimate before sending (the cost cap, `plan`): prompt tokens ~ characters / 4 of every message sent at
    `price_input_per_mtok`, plus an upper bound of `max_tokens` completion tokens per request at
    `price_output_per_mtok` (parse retries not counted)."""
    prompt_tokens = sum(r.chars() for r in requests) / 4
    completion_tokens = len(requests) * jc.max_tokens
    usd = (prompt_tokens * jc.price_input_per_mtok + completion_tokens * jc.price_output_per_mtok) / 1e6
    return {
        "requests": len(requests),
        "prompt_tokens": round(prompt_tokens),
        "completion_tokens": completion_tokens,
        "usd": usd,
    }


class OpenAIJudge(Judge):
    kind = "openai"

    def __init__(self, jc):
        self.jc = jc
        problem = key_name_problem(jc.api_key_env)
        if problem:
            raise JudgeError(problem)
        key = os.environ.get(jc.api_key_env) if jc.api_key_env else None
        self.server, url_secrets = server_identity(jc.base_url)
        self.secrets = ((key,) if key else ()) + url_secrets
        if jc.api_key_env and not key:
            raise JudgeError(
                f"judge.backend=openai needs an API key in the environment variable {jc.api_key_env!r} "
                f"(export {jc.api_key_env}=...); for a local server without keys set judge.api_key_env to ''"
            )
        # retries are ours (backoff, Retry-After, counted); the client's own are off so they are not doubled
        self.backend = DeadlineBackend()
        self.budget = RetryBudget(jc.max_retry_s)
        self.client = OpenAI(
            api_key=key or "not-needed",
            base_url=jc.base_url,
            max_retries=0,
            http_client=deadline_http_client(self.backend, jc.timeout_s),
        )

    def begin(self) -> None:
        self.budget = RetryBudget(self.jc.max_retry_s)

    def identity(self) -> dict:
        # the server is part of the identity: another server may serve another model under the same name
        return {
            "kind": self.kind,
            "model": self.jc.model,
            "base_url": self.server,
            "temperature": self.jc.temperature,
            "max_tokens": self.jc.max_tokens,
        }

    def estimate_cost(self, requests: list[Request]) -> dict:
        """`estimate_cost` at this judge's settings (the cost cap asks the judge)."""
        return estimate_cost(self.jc, requests)

    def _wait(self, attempt: int, err) -> float:
        retry_after = None
        response = getattr(err, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        backoff = self.jc.backoff_s * (2**attempt) * (1 + 0.25 * random.random())
        return min(max(backoff, retry_after or 0.0), 60.0)

    def _one(self, req: Request) -> Completion:
        c = self._ask(req)
        c.text = redact(c.text, self.secrets, headers=False)  # a judge's answer keeps its words; only the key goes
        c.error = redact(c.error, self.secrets) if c.error else None
        return c

    def _ask(self, req: Request) -> Completion:
        t0, failing = time.time(), False
        try:
            for attempt in range(self.jc.max_retries + 1):
                c, err = self._attempt(req, t0)
                if c is not None:
                    return c
                if attempt == self.jc.max_retries:
                    break
                if not failing:
                    failing = True
                    if not self.budget.fail():
                        raise self._budget_spent(err)
                elif self.budget.spent() > self.jc.max_retry_s:
                    raise self._budget_spent(err)
                if self.backend.abort.wait(self._wait(attempt, err)):
                    return Completion(error="interrupted", latency_s=time.time() - t0)
        finally:
            if failing:
                self.budget.done()
        return Completion(
            error=f"{type(err).__name__} after {self.jc.max_retries + 1} attempts: {err}", latency_s=time.time() - t0
        )

    def _budget_spent(self, err) -> RetryBudgetError:
        last = " ".join(redact(f"{type(err).__name__}: {err}", self.secrets).split())[:200]
        return RetryBudgetError(
            f"judge {self.name}: requests kept failing for over judge.max_retry_s={self.jc.max_retry_s:g} s "
            f"(last: {last}); the stage stopped"
        )

    def _attempt(self, req: Request, t0: float) -> tuple[Completion | None, Exception | None]:
        """One request within its deadline: (the completion, None), or (None, the error worth a retry)."""
        sent_at, deadline, ahead = self.throttle.acquire()
        if ahead < 0:
            return Completion(error="interrupted", latency_s=time.time() - t0), None
        outcome = "other"
        self.backend.local.deadline = deadline
        try:
            resp = self.client.chat.completions.create(
                model=self.jc.model,
                messages=req.chat(),  # as they are: a system message too
                temperature=self.jc.temperature,
                max_tokens=self.jc.max_tokens,
                timeout=deadline - sent_at,  # httpx's is per read: a queued request may wait silently that long
            )
            outcome = "ok"
        except OVERLOAD as e:
            outcome = "overload"
            return None, e
        except openai.APIStatusError as e:  # other 5xx codes (e.g. 502 from a proxy) are worth a retry too
            if e.status_code < 500:
                return Completion(error=f"{type(e).__name__}: {e}", latency_s=time.time() - t0), None
            outcome = "overload"
            return None, e
        except (openai.APIError, ValueError) as e:  # a 200 whose body is not JSON (JSONDecodeError), ...
            return Completion(error=f"malformed response: {type(e).__name__}: {e}", latency_s=time.time() - t0), None
        finally:
            self.backend.local.deadline = float("inf")
            self.throttle.release(sent_at, ahead, outcome)
        try:
            text, usage = chat_text(resp)
        except ValueError as e:
            return Completion(error=f"malformed response: {e}", latency_s=time.time() - t0), None
        cost = (
            usage["prompt_tokens"] * self.jc.price_input_per_mtok
            + usage["completion_tokens"] * self.jc.price_output_per_mtok
        ) / 1e6
        return Completion(text=text, usage=usage, cost=cost, latency_s=time.time() - t0), None

    def complete_many(self, requests: list[Request]) -> Iterator[tuple[int, Completion]]:
        self.backend.abort.clear()
        self.throttle = Throttle(max(1, self.jc.concurrency), self.jc.timeout_s, self.backend.abort)
        pool = ThreadPoolExecutor(max_workers=max(1, self.jc.concurrency))
        futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            # an interrupted consumer (Ctrl-C, a spent retry budget) must not leave queued requests running (and
            # billed), nor wait for those in flight: they end within transport.SLICE_S of the abort
            self.backend.abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
