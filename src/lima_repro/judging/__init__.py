"""Judges (OpenAI-compatible servers, local Hugging Face models), the paper's protocols, and the judgment cache."""
from .backends import Completion, CostCapError, Judge, JudgeError, OpenAIJudge, Request, make_judge
from .runner import JudgmentCache, cache_key, judge_requests

__all__ = ["Completion", "CostCapError", "Judge", "JudgeError", "JudgmentCache", "OpenAIJudge", "Request", "cache_key",
           "judge_requests", "make_judge"]
