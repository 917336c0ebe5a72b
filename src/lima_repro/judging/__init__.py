"""Judging: the paper's protocols, judges behind one interface, the on-disk judgment cache, result tables.

base.py      Judge, Request, Completion, errors        remote.py   OpenAI-compatible servers
local.py     a Hugging Face model as judge             protocols.py templates, labels, verdict parsing
items.py     generation rows -> requests, pairing      runner.py   cached, resumable judging
results.py   judgments -> result tables                labels.py   human labels from the annotator
dialogue.py  per-turn grading of live conversations   transport.py deadlines, adaptive concurrency, server identity
"""

from .base import Completion, CostCapError, Judge, JudgeError, Request, cache_key
from .local import HFJudge
from .remote import OpenAIJudge
from .runner import JudgmentCache, judge_requests

__all__ = [
    "Completion",
    "CostCapError",
    "HFJudge",
    "Judge",
    "JudgeError",
    "JudgmentCache",
    "OpenAIJudge",
    "Request",
    "cache_key",
    "judge_requests",
    "make_judge",
]


def make_judge(jc) -> Judge:
    """The judge `judge.backend` names: `openai` (any OpenAI-compatible server) or `local` (Hugging Face model)."""
    if jc.backend == "openai":
        return OpenAIJudge(jc)
    if jc.backend == "local":
        return HFJudge(jc)
    raise JudgeError(f"judge.backend must be 'openai' or 'local', got {jc.backend!r}")
