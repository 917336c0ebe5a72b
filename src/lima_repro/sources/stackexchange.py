"""Stack Exchange data dumps -> (title or body, top answer) candidates per site (LIMA sec. 1, docs/paper.md sec. 1).

`site_candidates` streams a site's Posts.xml once through `se_dump.question_pool` (a bounded pool of the site's
highest-scoring questions with a self-contained title, each with its current top answer), then applies LIMA's
answer rules (`failed_answer_rule`, the same function the `quality` selector uses) and picks title or body as
the prompt. `tau_sample` draws across sites.
"""

from __future__ import annotations

import random
import re
from collections import deque
from pathlib import Path

from ..config.curate import StackExchangeConfig
from . import StepLog, make_example
from .se_dump import question_pool, site_name
from .text import first_person_count, html_to_markdown, refers_to_others

# LIMA sec. 1's answer rules in the order they are applied, each a counted step of the Stack Exchange source
ANSWER_RULES = ("answer_length", "not_first_person", "no_reference_to_other_answers")


def title_is_self_contained(title: str, min_words: int, context_phrases: list[str]) -> bool:
    """A title that is a question in itself: long enough, not pointing at the body ("this code", "below")."""
    low = " ".join(title.lower().split())
    if len(low.split()) < min_words:
        return False
    if re.search(r"\b(this|that|it|these)( (work|mean|do|happen|correct|right|possible|true))?\s*\??$", low):
        return False
    return not any(p in low for p in context_phrases)


def failed_answer_rule(answer: str, rules: StackExchangeConfig) -> str | None:
    """The first of LIMA's answer rules (docs/paper.md sec. 1) that a cleaned answer breaks, or None: its length
    (`min_answer_chars`..`max_answer_chars`), first person (`max_first_person`), a reference to other answers or
    the site (`reference_phrases`). The Stack Exchange source and the `quality` selector both apply it."""
    if not rules.min_answer_chars <= len(answer) <= rules.max_answer_chars:
        return "answer_length"
    if first_person_count(answer) > rules.max_first_person:
        return "not_first_person"
    if refers_to_others(answer, rules.reference_phrases) is not None:
        return "no_reference_to_other_answers"
    return None


def answer_filters(answer: str, cfg: StackExchangeConfig, log: StepLog, prefix: str) -> bool:
    """LIMA's answer rules on the cleaned text, each a counted step up to the first it breaks; True = kept."""
    failed = failed_answer_rule(answer, cfg)
    for rule in ANSWER_RULES:
        if not log.count(f"{prefix}{rule}", rule != failed):
            return False
    return True


def site_candidates(
    dump: str | Path, cfg, log: StepLog, rng: random.Random, *, name: str | None = None, group: str = ""
) -> tuple[str, int, list[dict]]:
    """Stream one site's dump. Returns (site name, number of questions, candidates by question score desc)."""
    path = Path(dump)
    site = name or site_name(path)

    def self_contained(row: dict) -> bool:
        title = row.get("Title") or ""
        ok = title_is_self_contained(title, cfg.min_title_words, cfg.title_context_phrases)
        return log.count("se.self_contained_title", ok)

    n_questions, n_eligible, pool = question_pool(
        path,
        cfg.candidates_per_site,
        log,
        "stackexchange.dumps",
        ("stackexchange: row without a numeric Id or Score", "stackexchange: fabricated post id"),
        self_contained,
    )
    log.add("se.top_scoring_questions", len(pool), n_eligible - len(pool))
    out = []
    for q in pool:
        ans = q["answer"]
        if not log.count("se.top_answer_score", ans is not None and ans["score"] >= cfg.min_answer_score):
            continue
        answer = html_to_markdown(ans["body"])
        if not answer_filters(answer, cfg, log, "se."):
            continue
        body = html_to_markdown(q["body"])
        use_title = rng.random() < cfg.title_prompt_prob or not body  # LIMA sec. 1: title or body at random
        prompt = q["title"].strip() if use_title else body
        out.append(
            make_example(
                f"se-{site}-{q['id']}",
                f"stackexchange_{group}" if group else "stackexchange",
                prompt,
                answer,
                [f"site:{site}"],
                {"site": site, "score": q["score"], "prompt_kind": "title" if use_title else "body"},
            )
        )
    return site, n_questions, out


def tau_sample(pools: dict[str, list], sizes: dict[str, int], n: int, tau: float, rng: random.Random) -> list:
    """Draw n items: pick an exchange with p proportional to size^(1/tau) among those with items left (LIMA
    sec. 1: tau = 3), then take its best remaining item (pools are ranked)."""
    left = {k: deque(v) for k, v in pools.items() if v}
    out = []
    while len(out) < n and left:
        names = sorted(left)
        site = rng.choices(names, weights=[max(sizes.get(s, 1), 1) ** (1.0 / tau) for s in names])[0]
        out.append(left[site].popleft())
        if not left[site]:
            del left[site]
    return out
