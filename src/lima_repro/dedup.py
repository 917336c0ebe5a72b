"""Deduplication and decontamination of candidate examples, and the text helpers the selectors share.

Deduplication compares prompts: exact after normalisation (case, whitespace, punctuation), and near-duplicate
by MinHash over character n-grams with LSH banding, confirmed by the estimated Jaccard similarity.
`char_ngrams` is the one n-gram helper: MinHash shingles, exact Jaccard and `selectors.hashing_embed` use it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np

_PRIME = (1 << 61) - 1


def prompt_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"] if m["role"] == "user")


def response_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"] if m["role"] == "assistant")


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def char_ngrams(text: str, n: int) -> list[str]:
    """The character n-grams of the normalised text in order, repeats kept; a text shorter than n is one gram."""
    t = normalize(text)
    return [t[i : i + n] for i in range(max(len(t) - n + 1, 1))]


class MinHasher:
    """MinHash signatures of character n-gram sets (our implementation; crc32 shingles, universal hashing)."""

    def __init__(self, num_perm: int = 64, ngram: int = 5, seed: int = 0):
        rng = np.random.default_rng(seed)
        # a < 2^31 and 32-bit shingle hashes keep a*x + b below 2^64, so uint64 arithmetic cannot overflow
        self.a = rng.integers(1, 1 << 31, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 31, num_perm, dtype=np.uint64)
        self.ngram, self.num_perm = ngram, num_perm

    def shingles(self, text: str) -> np.ndarray:
        grams = set(char_ngrams(text, self.ngram))
        return np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))

    def signature(self, text: str) -> np.ndarray:
        x = self.shingles(text)
        return ((self.a[:, None] * x[None, :] + self.b[:, None]) % np.uint64(_PRIME)).min(axis=1)


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact character n-gram Jaccard similarity of two normalised texts (what MinHash estimates)."""
    ga, gb = set(char_ngrams(a, ngram)), set(char_ngrams(b, ngram))
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
