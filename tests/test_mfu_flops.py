"""The model-FLOP count of benchmarks/mfu.py: exact on a hand-computed case, and against torch's FlopCounterMode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lima_repro import batching

_spec = importlib.util.spec_from_file_location("mfu_bench", Path(__file__).parents[1] / "benchmarks" / "mfu.py")
mfu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mfu)


def _examples(lengths, vocab=1024, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [mfu.make_example(n, vocab, gen) for n in lengths]


def test_attended_pairs():
    assert mfu.attended_pairs(5) == 15  # 1 + 2 + 3 + 4 + 5
    assert mfu.attended_pairs(5, window=8) == 15
    assert mfu.attended_pairs(20, window=8) == 36 + 12 * 8  # 1..8, then 8 keys for each of the other 12 queries
    assert sum(min(i + 1, 8) for i in range(20)) == mfu.attended_pairs(20, 8)


def test_step_flops_hand_computed_gemma_with_sliding_window():
    from transformers import AutoModelForCausalLM

    cfg = mfu.model_config("gemma-270m", tiny=True)  # layers: sliding (window 64), full
    cfg.sliding_window = 8
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    spec = mfu.flop_spec(lm)
    d, heads, kv, hd, mlp, vocab = 64, 4, 1, 16, 128, 1024
    per_layer = d * heads * hd + 2 * d * kv * hd + heads * hd * d + 3 * d * mlp  # q, k, v, o, gate/up/down
    assert spec == {
        "body_params": 2 * per_layer,
        "head_params": vocab * d,
        "heads": heads,
        "head_dim": hd,
        "windows": [8, None],
    }
    f = mfu.step_flops(spec, _examples([5, 20]))
    # loss on the second half: 3 of 5 and 10 of 20 tokens; pairs: sliding layer 15 + 132, full layer 15 + 210
    assert (f["tokens"], f["loss_tokens"]) == (25, 13)
    assert f["body"] == 6 * 2 * 34816 * 25
    assert f["head"] == 6 * 65536 * 13
    assert f["attention"] == 3 * 4 * 4 * 16 * (15 + 132 + 15 + 210)
    assert f["total"] == f["body"] + f["head"] + f["attention"] == 10_444_800 + 5_111_808 + 285_696


def test_matches_flop_counter_on_tiny_llama():
    """One fp32 forward+backward through lima_repro's CausalLMLoss, eager attention, rows packed as in training.

    What FlopCounterMode sees differs from the model-FLOP formula in two known ways, both added here by hand:
    eager attention multiplies each packed row's full R x R score matrix (the block-diagonal causal mask is
    applied afterwards), so it counts 3 * 4 * R^2 * H * head_dim per layer instead of the per-example causal
    pairs; and the fused head's weight-gradient `grad_w.addmm_` is in-place, which torch's FLOP registry does not
    cover, so the head shows up as 4 (not 6) x V x d per loss token. Tolerance 0.5%: room for small matmuls outside
    the formula (none today: the counts are equal)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(mfu.model_config("llama-1b", tiny=True), attn_implementation="eager")
    lengths = [70, 50, 40, 24, 30]
    examples = _examples(lengths)
    rows = batching.pack_rows(examples, 96)
    spec = mfu.flop_spec(lm)
    counted, predicted = mfu.counter_check(lm, rows, spec, chunk=32)  # FlopCounterMode around CausalLMLoss
    d, heads, hd, layers, vocab = 64, 4, 16, 2, 1024
    linear = layers * (d * heads * hd + 2 * d * 2 * hd + heads * hd * d + 3 * d * 256)  # q, k, v, o, MLP
    tokens, loss_tokens = sum(lengths), sum(n - n // 2 for n in lengths)  # loss on the second halves
    row_lengths = [sum(len(e["input_ids"]) for e in r) for r in rows]
    assert row_lengths == [94, 90, 30]  # first-fit decreasing: 70 + 24 | 50 + 40 | 30
    expected = (
        6 * linear * tokens
        + 4 * vocab * d * loss_tokens
        + sum(3 * 4 * r * r * heads * hd * layers for r in row_lengths)
    )
    assert counted == pytest.approx(expected, rel=5e-3)
    assert predicted == expected
    f = mfu.step_flops(spec, examples)
    assert (f["tokens"], f["loss_tokens"]) == (tokens, loss_tokens)
    assert f["body"] == 6 * linear * tokens and f["head"] == 6 * vocab * d * loss_tokens
