"""The reference-based check (reference.py) by hand: perplexity of the dev references before and after training,
and answer-to-reference similarity per system with a bootstrap CI, on a fake run directory."""

from __future__ import annotations

import numpy as np
import pytest

from lima_repro.files import write_json, write_jsonl
from lima_repro.reference import reference_check, reference_perplexity, reference_similarity
from lima_repro.runs import RunDir


def fake_embed(texts):
    """Bag of three words: texts sharing words point the same way."""
    return np.array([[t.count("rice"), t.count("water"), t.count("noise")] for t in texts], dtype=float) + 1e-6


def rows():
    ref = "rice water rice"
    out = []
    for pid in ("d1", "d2"):
        out.append({"checkpoint": "epoch-2", "prompt_id": pid, "sample": 0, "response": "rice water", "reference": ref})
        out.append({"checkpoint": "base", "prompt_id": pid, "sample": 0, "response": "noise noise", "reference": ref})
    out.append({"checkpoint": "base", "prompt_id": "t1", "sample": 0, "response": "x", "reference": None})
    return out


def test_similarity_per_system_by_hand():
    sims = reference_similarity(rows(), n_boot=50, seed=0, embed=fake_embed)
    expected = (2 * 1 + 1 * 1) / (np.sqrt(5) * np.sqrt(2))  # cos((2,1,0), (1,1,0))
    assert sims["epoch-2"]["mean"] == pytest.approx(expected, rel=1e-5) and sims["epoch-2"]["n"] == 2
    assert sims["base"]["mean"] == pytest.approx(0.0, abs=1e-5)  # prompts without a reference are left out


def test_perplexity_before_and_after_from_the_train_stage(tmp_path):
    run = RunDir(tmp_path)
    write_jsonl(
        run.metrics,
        [
            {"type": "eval", "step": 0, "epoch": 0, "perplexity": 15.6},
            {"type": "train", "step": 1, "loss": 3.0},
            {"type": "eval", "step": 6, "epoch": 1, "perplexity": 16.1},
        ],
    )
    write_json(run.checkpoint_index, [{"name": "epoch-1", "path": "x", "step": 6, "epoch": 1}])
    assert reference_perplexity(run, ["epoch-1", "base", "alpaca"]) == {"epoch-1": 16.1, "base": 15.6, "alpaca": None}
    res = reference_check(run, ["epoch-1", "base"], n_boot=10, seed=0)
    assert res["similarity"] == {} and "generate.dev_responses" in res["similarity_skipped"]
