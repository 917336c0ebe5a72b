"""The static-cache sampler (`static_decode.decode_static`, generate.sampler: static) against `sampling.decode` on
tiny random Llama and Gemma 3 models (Gemma 3: two sliding-window layers of 16 tokens, shorter than the prompts +
new tokens here, so transformers' sliding static cache layers wrap)."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import make_tokenizer, tiny_config
from transformers import AutoModelForCausalLM

from lima_repro.config import ConfigError, GenerateConfig
from lima_repro.sampling import GeneratedRepetitionPenalty, decode, sample, sampling_record, top_p_sample
from lima_repro.static_decode import (
    SYNC_EVERY,
    cache_length,
    decode_static,
    nucleus_sample,
    penalize_seen,
    resolve_sampler,
)

FAMILIES = ["llama", "gemma3"]
PROMPTS = [[1, *range(10, 13)], [1, *range(20, 50)], [1, *range(60, 72)]]  # 4, 31 and 13 tokens
CAPS = [40, 25, 33]


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(request.param, len(make_tokenizer()))).eval()


def greedy(**fields) -> GenerateConfig:
    return GenerateConfig(temperature=0.0, **fields)  # greedy decoding: argmax


def both(model, g, stops, caps=CAPS, seed=5):
    """(sampling.decode, decode_static) on PROMPTS from the same random state."""
    torch.manual_seed(seed)
    dynamic = decode(model, PROMPTS, 0, stops, g, caps)
    torch.manual_seed(seed)
    return dynamic, decode_static(model, PROMPTS, 0, stops, g, caps)


def test_penalty_on_seen_tokens_is_generated_repetition_penalty():
    torch.manual_seed(0)
    scores = torch.randn(2, 12)
    generated = torch.tensor([[3, 3, 7, 0], [11, 5, 2, 5]])  # repeats are penalized once
    seen = torch.zeros(2, 12, dtype=torch.bool).scatter_(1, generated, True)
    want = GeneratedRepetitionPenalty(1.2, prompt_len=0)(generated, scores.clone())
    assert torch.equal(penalize_seen(scores, seen, 1.2), want)
    assert torch.equal(penalize_seen(scores, torch.zeros_like(seen), 1.2), scores)


def test_nucleus_sample_draws_top_p_samples_token_without_its_syncs():
    """A flat distribution: top_p_sample's k grows to the whole vocabulary, so both draw from the same random
    numbers in the same shape (one Exp(1) per candidate) and pick the same tokens. A peaked one: only the nucleus
    (the two tokens whose preceding mass is < 0.9) is ever drawn, each as often as its renormalized share."""
    torch.manual_seed(0)
    flat = torch.randn(6, 300) * 0.1
    for temperature in (0.7, 1.0):
        torch.manual_seed(1)
        want = top_p_sample(flat, 0.9, temperature)
        torch.manual_seed(1)
        assert torch.equal(nucleus_sample(flat, 0.9, temperature), want)
    peaked = torch.log(torch.tensor([[0.6, 0.35, 0.03, 0.02]])).expand(4000, 4)
    torch.manual_seed(2)
    counts = torch.bincount(nucleus_sample(peaked, 0.9, 1.0), minlength=4)
    assert counts[2:].sum() == 0 and abs(counts[0] / 4000 - 0.6 / 0.95) < 0.03
    assert torch.equal(nucleus_sample(flat, 0.9, 0.0), flat.argmax(-1))


def test_greedy_is_token_for_token_decode_with_stops_at_different_steps(model):
    """Greedy: each row's tokens do not depend on the others, so both samplers must give every row the tokens of a
    run without stops, cut after the first stop token (or at the row's cap)."""
    g = greedy(max_new_tokens=40)
    free = decode(model, PROMPTS, 0, [-1], g, CAPS)
    assert [len(x) for x in free] == CAPS
    stops = [free[0][2], free[1][9]]
    want = [row[: next((k + 1 for k, t in enumerate(row) if t in stops), len(row))] for row in free]
    stopped_at = [len(w) for w in want]
    assert len(set(stopped_at)) == 3 and stopped_at[0] == 3, stopped_at  # three rows, three different last steps
    dynamic, static = both(model, g, stops)
    assert dynamic == want and static == want
    assert decode_static(model, PROMPTS, 0, [-1], g, CAPS) == free


def test_sampling_matches_decode_for_the_same_seed(model):
    """No row stops early: both keep the whole batch every step, so each step sees the same logits (to ~1e-7: the
    static cache attends over its padded length, a different summation) and draws the same Exp(1) numbers in the
    same shape (top_p_sample's k reaches this flat vocabulary, nucleus_sample takes all of it), so they pick the
    same tokens. Rows with their own caps keep this: a capped row leaves `decode`'s batch only after its last
    token."""
    g = GenerateConfig(max_new_tokens=40)
    dynamic, static = both(model, g, [-1], caps=[40, 40, 40])
    assert dynamic == static and [len(x) for x in static] == [40, 40, 40]
    dynamic, static = both(model, g, [-1], caps=[12, 40, 12], seed=7)
    assert dynamic[1][:12] == static[1][:12] and [len(x) for x in static] == [12, 40, 12]


def test_sampling_with_stops_matches_decode_until_the_first_stop(model):
    """Once a row stops, `decode` drops it and draws for fewer rows (other random numbers for the rest), while
    decode_static draws for every row: the two agree on every token up to the first stop, and the first row to stop
    is the same row with the same tokens."""
    g = GenerateConfig(max_new_tokens=40)
    free = both(model, g, [-1], caps=[40, 40, 40])[1]
    stops = [free[1][6]]
    first = min(next((k + 1 for k, t in enumerate(row) if t in stops), 40) for row in free)
    dynamic, static = both(model, g, stops, caps=[40, 40, 40])
    assert first < 40 and [d[:first] for d in dynamic] == [s[:first] for s in static] == [f[:first] for f in free]
    assert {i for i, d in enumerate(dynamic) if len(d) == first} == {i for i, s in enumerate(static) if len(s) == first}
    assert all(s[-1] in stops or len(s) == 40 for s in static)  # each row ends at a stop or its cap


def test_finished_rows_keep_decoding_until_a_sync_step(model):
    """Every row stops at its first token, yet the batch runs on to the SYNC_EVERY-th step, the first at which the
    host looks: one prompt forward + SYNC_EVERY - 1 one-token forwards."""
    g = greedy(max_new_tokens=100)
    first = decode_static(model, PROMPTS, 0, [-1], g, [1, 1, 1])
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = decode_static(model, PROMPTS, 0, sorted({t for row in first for t in row}), g)
    finally:
        hook.remove()
    assert out == first and len(calls) == SYNC_EVERY


def test_cache_length_rounds_up_so_batches_share_shapes():
    assert [cache_length(n) for n in (1, 256, 257, 2048 + 300)] == [256, 256, 512, 2560]


def test_sample_chooses_the_sampler_from_the_config(monkeypatch, tiny_llama):
    from lima_repro import models
    from lima_repro.config import ModelConfig

    lm, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    runs = {}
    for sampler in ("dynamic", "static"):
        g = greedy(max_new_tokens=30, batch_size=2, sampler=sampler)
        runs[sampler] = sample(lm, tok, eot_id, PROMPTS, g, progress=False)
    assert runs["static"] == runs["dynamic"] and {r["stop"] for r in runs["static"]} == {"max_new_tokens"}
    assert resolve_sampler(GenerateConfig()) == "dynamic"  # a CPU machine: CPU generations stay as they were
    assert sampling_record(GenerateConfig()) == {
        "backend": "torch",
        "decoding": "sampling (temperature 0.7, top_p 0.9)",
        "repetition_penalty_scope": "generated",
        "sampler": "dynamic",
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_sampler(GenerateConfig()) == "static"
    assert resolve_sampler(GenerateConfig(sampler="dynamic")) == "dynamic"
    with pytest.raises(ConfigError, match="generate.sampler must be one of auto, dynamic, static; got 'fast'"):
        GenerateConfig(sampler="fast").check()


@pytest.mark.slow
def test_compiled_step_samples_the_same(model):
    """The one-token step under torch.compile (dynamo's eager backend here: the graph capture without inductor's
    minutes on a CPU; on a GPU mode="reduce-overhead") gives the eager static sampler's tokens."""
    torch._dynamo.reset()
    g = GenerateConfig(max_new_tokens=20)
    torch.manual_seed(3)
    want = decode_static(model, PROMPTS, 0, [-1], g, [20, 9, 14])
    torch.manual_seed(3)
    assert decode_static(model, PROMPTS, 0, [-1], g, [20, 9, 14], compile_options={"backend": "eager"}) == want


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_static_sampler_eager_and_cuda_graphs_match_decode(model):
    """On CUDA, fp32: greedy static decoding (eager, and with the step captured as CUDA graphs) is decode's; the
    compiled step samples the eager static step's tokens for the same seed; and the eager static sampler waits for
    the device at its checks (one per SYNC_EVERY steps), around the prompt's forward and for the final copy."""
    torch._dynamo.reset()
    lm = model.cuda()
    try:
        g = greedy(max_new_tokens=40)
        want = decode(lm, PROMPTS, 0, [-1], g, CAPS)
        assert decode_static(lm, PROMPTS, 0, [-1], g, CAPS) == want
        graphs = {"mode": "reduce-overhead"}
        assert decode_static(lm, PROMPTS, 0, [-1], g, CAPS, compile_options=graphs) == want
        g = GenerateConfig(max_new_tokens=40)
        torch.manual_seed(4)
        eager = decode_static(lm, PROMPTS, 0, [-1], g, CAPS)
        torch.manual_seed(4)
        assert decode_static(lm, PROMPTS, 0, [-1], g, CAPS, compile_options=graphs) == eager
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            decode_static(lm, PROMPTS, 0, [-1], g, CAPS)
        torch.cuda.set_sync_debug_mode(0)
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
        assert len(syncs) <= 16, syncs[:5]  # one per step would be 39 or more
    finally:
        torch.cuda.set_sync_debug_mode(0)
        model.cpu()
