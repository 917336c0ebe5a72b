"""The judge interface: `complete_many(requests)` yields `(index, Completion)` as each one finishes.

Backends: `remote.OpenAIJudge` (any OpenAI-compatible server) and `local.HFJudge` (a Hugging Face model);
`judging.make_judge` picks one from the config. A new backend subclasses `Judge` (see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..config.base import UserError


def cache_key(
    identity: dict, protocol: str, template_hash: str, prompt: str, messages: tuple[dict, ...] | None = None
) -> str:
    """The judgment cache's key of a request: a plain prompt's key is what it always was; a request with `messages`
    hashes their JSON in the prompt's place, the very text MT-Bench's requests packed their messages into before
    requests carried messages, so judgments cached then are found again."""
    if messages is not None:
        prompt = json.dumps(list(messages), ensure_ascii=False)
    blob = json.dumps(
        {"judge": identity, "protocol": protocol, "template": template_hash, "prompt": prompt},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeError(UserError, RuntimeError):
    """A judge cannot be set up (missing key, unknown backend) or answered no request; the message says what to
    set (a user error: the CLI prints its one line)."""


class CostCapError(JudgeError):
    """The estimated cost of the uncached requests exceeds `judge.max_cost_usd`; nothing was sent."""


class RetryBudgetError(JudgeError):
    """Requests kept failing for longer than `judge.max_retry_s`: the stage stops (what was answered is cached)."""


@dataclass
class Request:
    key: str
    """Cache key (`cache_key`): hash of judge identity, template hash and the rendered prompt (or the messages)."""
    protocol: str
    prompt: str
    """The rendered template: the user message the judge sees (with `messages`, the last one's text)."""
    labels: tuple[str, ...] = ()
    answer_prefix: str = ""
    meta: dict = field(default_factory=dict)
    messages: tuple[dict, ...] | None = None
    """Chat messages ({role, content}: a system message, then the user's) sent as they are, for a judge that needs
    a system prompt or several turns (MT-Bench); None = `prompt` as the one user message."""

    def chat(self) -> list[dict]:
        """The messages a judge is sent: `messages`, or `prompt` as the one user message."""
        return [dict(m) for m in self.messages] if self.messages else [{"role": "user", "content": self.prompt}]

    def chars(self) -> int:
        """Characters of every message sent (cost estimates, batching by length)."""
        return sum(len(m["content"]) for m in self.chat())

    def appended(self, text: str) -> Request:
        """This request with `text` appended to what the judge reads last (a parse retry's reminder); the key stays."""
        messages = self.messages
        if messages:
            messages = (*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + text})
        return replace(self, prompt=self.prompt + text, messages=messages)


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

    def begin(self) -> None:
        """A judging run starts (`runner.judge_requests`): a backend with a per-run retry budget renews it here."""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.identity()['model']}"
