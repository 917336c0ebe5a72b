"""Judging with an on-disk cache: every judgment is appended (flushed, fsynced) the moment it arrives.

Cache key = `base.cache_key` (judge identity, protocol, template hash, rendered prompt). A rerun sends zero requests for
what is cached; a run killed halfway resumes with what is missing, never duplicating a row. An output that does
not parse is re-requested `parse_retries` times, each time with one more reminder of the answer format appended
(never the same request again: a judge at temperature 0 would repeat itself), then stored as invalid with every raw
text, and counted; a rerun with `judge.retry_invalid` asks for those again. Requests that fail (transport errors
after all retries, malformed responses) are reported as errors and not cached; a stage where every request failed stops
(`judge_rows`), and so does one whose retry budget is spent (`RetryBudgetError`, saying how much is cached).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import warnings
from pathlib import Path

from tqdm import tqdm  # text bars: they stream to the terminal and stay in saved notebooks

from .. import analysis
from ..files import CorruptFileError, append_jsonl, repair_tail
from ..redaction import redact
from . import dialogue, items, protocols
from .base import Completion, CostCapError, Judge, JudgeError, Request, RetryBudgetError


class JudgmentCache:
    """Append-only JSONL of judgments, one file per judge; the last row for a key wins."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict] = {}
        repair_tail(self.path, "a judgment")  # before any append: a torn last line goes to <file>.torn, kept
        if self.path.exists():
            for i, line in enumerate(self.path.read_bytes().split(b"\n")):
                if line.strip():
                    row = _cached_row(line, f"{self.path}:{i + 1}")
                    if row is None:
                        raise CorruptFileError(
                            self.path,
                            i + 1,
                            'corrupt judgment cache line (not a JSON object with a "key")',
                            "delete the line to re-judge it (it holds no complete judgment)",
                        )
                    self.rows[row["key"]] = row

    @classmethod
    def for_judge(cls, folder: str | Path, judge: Judge) -> JudgmentCache:
        """The cache file of `judge` in `folder` (one file per judge, so caches can be shared across runs); a key
        pasted as the judge's model is not spelled in the name (the rows' cache keys still tell judges apart)."""
        return cls(Path(folder) / f"{redact(judge.name).replace(':', '_').replace('/', '_')}.jsonl")

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, row: dict) -> None:
        append_jsonl(self.path, row)
        self.rows[row["key"]] = row


def _cached_row(line: bytes, where: str) -> dict | None:
    """A cache line's row; a line where a torn write was appended onto (old versions) keeps the complete row that
    follows the torn bytes, with a warning, so a paid judgment is never thrown away."""
    for start in [0] + [m.start() for m in re.finditer(rb'\{"', line) if m.start()]:
        try:
            row = json.loads(line[start:].decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            if start:
                warnings.warn(f"{where}: kept the judgment after {start} torn bytes on this line", stacklevel=3)
            return row
    return None


def _verdict(judge: Judge, protocol: protocols.Protocol, c: Completion) -> tuple[str | None, str | None, str | None]:
    """(label used, label parsed from text, argmax label from probabilities)."""
    from_text = protocols.parse(protocol, c.text)
    from_probs = max(c.label_probs, key=c.label_probs.get) if c.label_probs else None
    used = from_probs if judge.verdict_source == "probs" else from_text
    return used, from_text, from_probs


def check_cost(judge: Judge, pending: list[Request], max_cost_usd: float | None) -> dict | None:
    """Refuse (CostCapError, nothing sent) when the judge can estimate its cost (`estimate_cost`: the openai
    backend) and the estimate for the uncached `pending` requests exceeds `max_cost_usd`. Returns the estimate."""
    estimate = getattr(judge, "estimate_cost", None)
    if max_cost_usd is None or not pending or estimate is None:
        return None
    est = estimate(pending)
    if est["usd"] > max_cost_usd:
        raise CostCapError(
            f"judge {judge.name}: {est['requests']} uncached requests are estimated at ${est['usd']:.4f} "
            f"(~{est['prompt_tokens']} prompt tokens at chars/4 + up to {est['completion_tokens']} completion tokens), "
            f"over judge.max_cost_usd=${max_cost_usd:.4f}; nothing was sent. Raise judge.max_cost_usd, set it to "
            f"None, or judge fewer prompts (judge.max_prompts)"
        )
    return est


def sample_prompts(ids: list[str], n: int | None, seed: int) -> list[str]:
    """The prompt ids a judge run covers, in their original order: all, or `n` drawn at random with the run's seed
    (LIMA sec. 4 judged 50 random test prompts; the first n would favour whatever the file lists first)."""
    ids = list(dict.fromkeys(ids))
    if n is None or n >= len(ids):
        return ids
    chosen = set(random.Random(seed).sample(ids, n))
    return [i for i in ids if i in chosen]


def format_reminder(protocol: protocols.Protocol) -> str:
    """What a parse retry appends to the request it retries: a deterministic judge (temperature 0, greedy) answers
    an unchanged request the same way, so each retry must differ from every earlier one (the k-th carries it k
    times); the cached row records what was appended (`retry_suffix`)."""
    return (
        f"\n\nReminder: end your answer with one line `{protocol.keyword}: <label>`, where <label> is one of "
        f"{', '.join(protocol.labels)}."
    )


def judge_requests(
    judge: Judge,
    requests: list[Request],
    cache: JudgmentCache,
    parse_retries: int = 2,
    progress: bool = True,
    max_cost_usd: float | None = None,
    retry_invalid: bool = False,
) -> tuple[list[dict], dict]:
    """Judge `requests` (cache first; with `retry_invalid` a cached invalid verdict is asked again). Returns (one
    row per request, in request order; stats). With `max_cost_usd`, the requests to send are costed first and
    refused over the cap (`check_cost`)."""
    stats = {
        "requests": len(requests),
        "cached": 0,
        "sent": 0,
        "invalid": 0,
        "errors": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
    }
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        by_key.setdefault(r.key, []).append(i)
    pending = [
        requests[idx[0]]
        for key, idx in by_key.items()
        if key not in cache or retry_invalid and not cache.get(key)["valid"]
    ]
    stats["cached"] = len(requests) - sum(len(by_key[r.key]) for r in pending)
    est = check_cost(judge, pending, max_cost_usd)
    if est is not None:
        stats["estimated_cost"] = est["usd"]
    errors: dict[str, str] = {}
    history: dict[str, dict] = {
        r.key: {"raw": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "cost": 0.0} for r in pending
    }
    bar = tqdm(
        total=len(pending),
        desc=redact(f"judge {judge.name}"),
        unit="req",
        disable=not progress or not pending,
        mininterval=2.0,
    )
    judge.begin()
    sent = pending
    for attempt in range(parse_retries + 1):
        retry = []
        try:
            # closed at once when the loop stops (Ctrl-C, an error): the judge stops its requests in flight
            with contextlib.closing(judge.complete_many(sent)) as answers:
                for i, c in answers:
                    req, h = pending[i], history[pending[i].key]
                    stats["sent"] += 1
                    for k in ("prompt_tokens", "completion_tokens"):
                        h["usage"][k] += c.usage.get(k, 0)
                        stats[k] += c.usage.get(k, 0)
                    h["cost"] += c.cost
                    stats["cost"] += c.cost
                    if c.error:
                        errors[req.key] = c.error
                        bar.update(1)
                        continue
                    h["raw"].append(c.text)
                    proto = protocols.get(req.protocol)
                    label, from_text, from_probs = _verdict(judge, proto, c)
                    if label is None and attempt < parse_retries:
                        # the next retry appends its reminder to what this one sent: never the same request twice
                        retry.append(sent[i])
                        continue
                    cache.put(
                        {
                            "key": req.key,
                            "judge": judge.name,
                            "protocol": req.protocol,
                            "label": label,
                            "valid": label is not None,
                            "raw": c.text,
                            "raw_attempts": h["raw"],
                            "label_text": from_text,
                            "label_probs": c.label_probs,
                            "label_probs_argmax": from_probs,
                            "verdict_source": judge.verdict_source,
                            "attempts": len(h["raw"]),
                            "usage": h["usage"],
                            "cost": h["cost"],
                            # what a parse retry changed in the request (the key stays the first prompt's)
                            **({"retry_suffix": format_reminder(proto) * attempt} if attempt else {}),
                        }
                    )
                    bar.update(1)
        except RetryBudgetError as e:
            bar.close()
            done = len({r.key for r in requests if r.key in cache})
            raise RetryBudgetError(
                f"{e}: {done} of {len(by_key)} judgments are cached and a rerun resumes from them. Fix: check the "
                "server at judge.base_url, or raise judge.max_retry_s"
            ) from None
        pending = retry
        sent = [r.appended(format_reminder(protocols.get(r.protocol))) for r in retry]
        if not pending:
            break
    bar.close()
    out = []
    for r in requests:
        hit = cache.get(r.key)
        if hit is None:
            stats["errors"] += 1
            row = {
                "key": r.key,
                "judge": judge.name,
                "protocol": r.protocol,
                "label": None,
                "valid": False,
                "error": errors.get(r.key, "not judged"),
            }
        else:
            row = dict(hit)
            stats["invalid"] += not hit["valid"]
        out.append({**r.meta, **row})
    return out, stats


def judge_rows(
    judge: Judge,
    jc,
    rows: list[dict],
    system: str,
    baselines: list[str],
    protocol_names: list[str],
    cache_folder: str | Path,
    transcripts: list[dict] | None = None,
    seed: int | None = None,
) -> tuple[list[dict], dict]:
    """Judge generation rows (ours = `system` against `baselines`, with `protocol_names`) and each assistant turn of
    `transcripts` in ONE cached run, so the cost cap sees every uncached request before any is sent. With a `seed`
    (the judge stage's; checkpoint selection judges every dev prompt) each protocol is asked on its share of the
    prompts, `judge.sample_sizes`, drawn with it (`items.sample_requests`) and recorded in the stats as `sample`."""
    reqs = items.build_requests(rows, system, baselines, protocol_names, judge.identity(), jc.templates_dir)
    sample = None
    if seed is not None:
        reqs, sample = items.sample_requests(reqs, rows, jc.sample_sizes, seed)
    reqs += dialogue.turn_requests(transcripts or [], judge.identity(), jc.templates_dir)
    judged, stats = judge_requests(
        judge,
        reqs,
        JudgmentCache.for_judge(cache_folder, judge),
        parse_retries=jc.parse_retries,
        max_cost_usd=jc.max_cost_usd,
        retry_invalid=jc.retry_invalid,
    )
    if sample is not None:
        stats["sample"] = sample
    if judged and stats["errors"] == len(judged):
        first = " ".join(judged[0]["error"].split())[:300]  # one line, whatever the server sent
        raise JudgeError(
            f"judge {judge.name}: all {len(judged)} requests failed (first: {first}). "
            "Fix: check that the server at judge.base_url answers, judge.model, and the key in the "
            "variable judge.api_key_env names; then rerun (nothing was cached)"
        )
    return judged, stats


def judge_dialogues(judge: Judge, jc, transcripts: list[dict], cache_folder: str | Path) -> dict:
    """Grade every assistant turn of `transcripts` (rows from `dialogue.read_transcripts`) with the cached runner.
    Returns {"turns": judged rows, "dialogue_turns": per-system shares, "requests": stats}; nothing is written
    but the cache (`run_judge` with `judge.dialogue_files` does the same inside the judge stage)."""
    judged, stats = judge_rows(judge, jc, [], "", [], [], cache_folder, transcripts)
    return {"turns": judged, "dialogue_turns": analysis.dialogue_turn_shares(judged), "requests": stats}
