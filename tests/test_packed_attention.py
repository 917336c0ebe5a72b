"""Packed rows without a dense mask, in fixed shapes (issue 22): every attention path that runs here gives each
example the logits and the loss of its own unpacked forward, padding segments included; paths that need a GPU
are skipped with the reason and checked by the `gpu` tests at the end."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from torch.nn.attention.flex_attention import create_block_mask
from transformers import AutoModelForCausalLM

from lima_repro import packed_attention as pa
from lima_repro.batching import count_loss_tokens, pack_rows
from lima_repro.chat_format import IGNORE
from lima_repro.config.base import ConfigError
from lima_repro.fixed_shapes import fixed_micro_batches, pad_row
from lima_repro.loss import CausalLMLoss, fused_linear_cross_entropy, loss_positions

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

VOCAB, LENGTH, ROWS = 64, 48, 3
LENGTHS = (23, 5, 17, 9, 30, 3)  # packed into 2 rows of 48 (30+17, 23+9+5+3), topped up by 1 padding row
MODEL_FAMILIES = ("llama", "gemma3", "qwen2", "gpt2")


def examples(lengths=LENGTHS, seed=0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, VOCAB, (n,), generator=g)
        labels = torch.where(torch.rand(n, generator=g) < 0.3, IGNORE, ids)
        labels[0] = ids[0]  # a first label that a packed row must not learn from the previous example
        out.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    return out


def tiny_model(family: str, path: str, head_dim: int | None = None):
    cfg = tiny_config(family, VOCAB)
    if head_dim:  # GPU kernels want heads of 16 and more
        cfg.head_dim, cfg.hidden_size = head_dim, head_dim * cfg.num_attention_heads
    if family == "gemma3":
        cfg.query_pre_attn_scalar = 5  # a scale other than head_dim ** -0.5, so an ignored scale shows
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=path).eval()


def reference_varlen(
    query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False
):
    """torch 2.13's varlen_attn signature, computed segment by segment with a dense mask (varlen needs CUDA)."""
    out = torch.empty_like(query)
    left, right = window_size
    assert right == 0, "packed rows are causal"
    cu = cu_seq_q.tolist()
    for a, b in zip(cu[:-1], cu[1:]):
        q, k, v = (t[a:b].transpose(0, 1) for t in (query, key, value))
        i = torch.arange(b - a)
        d = i[:, None] - i[None, :]  # query - key
        allowed = (d >= 0) & (d <= left) if left >= 0 else d >= 0
        out[a:b] = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, scale=scale, enable_gqa=enable_gqa
        ).transpose(0, 1)
    return out


def older_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, scale=None):
    """An older signature: `is_causal`, no window, no GQA."""
    assert query.shape[1] == key.shape[1], "this signature has no GQA: the caller must repeat the key/value heads"
    return reference_varlen(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=(-1, 0) if is_causal else (-1, -1)
    )


def dense_reference(pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """rows x L x L: causal, same segment (a segment starts at position 0), query - key < window."""
    seg = (pos == 0).cumsum(-1)
    q, k = torch.arange(pos.shape[1])[:, None], torch.arange(pos.shape[1])[None, :]
    ok = (k <= q) & (seg[:, :, None] == seg[:, None, :])
    return ok & (q - k < window) if window else ok


def tile_grid(num: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """A BlockMask's (counts, ordered indices) as rows x tiles x tiles booleans."""
    keep = torch.arange(idx.shape[-1]) < num[..., None]
    return torch.zeros(idx.shape, dtype=torch.bool).scatter_(-1, idx.long(), keep)[:, 0]


@pytest.mark.parametrize("window", [None, 4, 11])
@pytest.mark.parametrize("lengths", [(5, 9, 3, 20), (37,), (1, 1, 30, 5)])
def test_block_mask_tiles_and_mask_match_the_dense_mask(lengths, window):
    n, block = sum(lengths), 8  # 37 tokens: the last tile is incomplete
    pos = torch.cat([torch.arange(x) for x in lengths])[None].repeat(2, 1)
    pos[1] = torch.arange(n)  # a second row holding one example
    dense = dense_reference(pos, window)
    bm = pa.document_block_mask(pos, window, block)
    tiles = -(-n // block)
    extra = tiles * block - n
    seen = F.pad(dense, (0, extra, 0, extra)).view(2, tiles, block, tiles, block).any(dim=(2, 4))
    # queries past the end are never computed, so they cannot keep a tile from being full; keys past the end can
    all_seen = F.pad(F.pad(dense, (0, extra), value=False), (0, 0, 0, extra), value=True)
    all_seen = all_seen.view(2, tiles, block, tiles, block).all(dim=(2, 4))
    partial, full = tile_grid(bm.kv_num_blocks, bm.kv_indices), tile_grid(bm.full_kv_num_blocks, bm.full_kv_indices)
    assert torch.equal(partial | full, seen)
    assert torch.equal(full, all_seen)
    assert not (partial & full).any()
    b, q, k = torch.arange(2)[:, None, None], torch.arange(n)[None, :, None], torch.arange(n)[None, None, :]
    assert torch.equal(bm.mask_mod(b, 0, q, k), dense)
    reach = pos if window is None else pos.clamp(max=window - 1)
    ref = create_block_mask(lambda b, h, q, k: (k <= q) & (k >= q - reach[b, q]), 2, None, n, n, "cpu", block)
    assert torch.equal(bm.to_dense(), ref.to_dense())


def test_fixed_shapes_pad_rows_into_one_shape_with_padding_segments():
    ex = examples()
    batches = fixed_micro_batches(ex, ROWS, LENGTH, pad_id=0)
    assert [tuple(b["input_ids"].shape) for b in batches] == [(ROWS, LENGTH)]
    b = batches[0]
    rows = pack_rows(ex, LENGTH)
    starts = [0, 30, 47, 48, 71, 80, 85, 88, 96]  # 30+17 | pad 1 | 23+9+5+3 | pad 8 | a padding row of 48
    assert b["cu_seq_lens"].tolist() == starts + [ROWS * LENGTH] and b["cu_seq_lens"].dtype == torch.int32
    assert [len(e["input_ids"]) for r in rows for e in r] == [30, 17, 23, 9, 5, 3]
    flat = {k: b[k].reshape(-1) for k in ("input_ids", "labels", "position_ids")}
    assert (flat["labels"][starts] == IGNORE).all()  # every segment's first label
    for a, z in zip(starts, starts[1:] + [ROWS * LENGTH]):
        assert flat["position_ids"][a:z].tolist() == list(range(z - a))
    assert (b["labels"] != IGNORE).sum() == count_loss_tokens(ex)  # the loss tokens of the unpacked examples
    assert (b["input_ids"][2] == 0).all() and (b["labels"][2] == IGNORE).all()
    with pytest.raises(ValueError, match="does not fit"):
        pad_row(
            {k: torch.zeros((1, LENGTH + 1), dtype=torch.long) for k in ("input_ids", "labels", "position_ids")},
            LENGTH,
            0,
        )


def cpu_paths() -> list:
    runs_here = pa.available_paths("cpu", torch.float32)
    out = []
    for path in ("eager", "sdpa", pa.FLEX, pa.VARLEN, "flash_attention_2"):
        why = runs_here[path]
        out.append(pytest.param(path, marks=pytest.mark.skip(reason=f"{path}: {why}")) if why else path)
    return out + [
        pytest.param("lima_varlen+reference", id="lima_varlen-reference-kernel"),
        pytest.param("lima_varlen+noscale", id="lima_varlen-kernel-without-scale"),
    ]


def noscale_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, window_size=(-1, -1), enable_gqa=False):
    """A signature without `scale` (it scales by head_dim ** -0.5): the caller must fold another scale into q."""
    return reference_varlen(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size=window_size, enable_gqa=enable_gqa
    )


@functools.cache
def unpacked(family: str, seed: int) -> list[tuple]:
    """Each example's own forward on the SDPA model: (logits, summed loss and loss tokens as loss.py counts them)."""
    ref = tiny_model(family, "sdpa")
    with torch.no_grad():
        return [
            (ref(input_ids=torch.tensor([e["input_ids"]])).logits[0],)
            + CausalLMLoss(ref)(torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]]))
            for e in examples(seed=seed)
        ]


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("path", cpu_paths())
def test_packed_fixed_shape_forward_equals_each_examples_own_forward(family, path, monkeypatch):
    if path.startswith("lima_varlen+"):  # the varlen path's plumbing, with a CPU stand-in for the CUDA kernel
        stand_in = reference_varlen if path.endswith("reference") else noscale_varlen
        monkeypatch.setattr(pa, "TORCH_VARLEN", pa.kernel(stand_in))
        path = pa.VARLEN
    seed = MODEL_FAMILIES.index(family)
    ex, alone = examples(seed=seed), unpacked(family, seed)
    model = tiny_model(family, path)
    head, softcap = model.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None)
    rows = pack_rows(ex, LENGTH)
    where = {
        id(e): (r, sum(len(x["input_ids"]) for x in row[:i])) for r, row in enumerate(rows) for i, e in enumerate(row)
    }
    [b] = fixed_micro_batches(ex, ROWS, LENGTH, pad_id=0)  # 2 rows of examples and 1 of padding: one forward
    with torch.no_grad():
        kwargs = pa.forward_kwargs(path, b["position_ids"], model.config, b["cu_seq_lens"])
        # use_cache=False as loss.py passes it: with a cache, transformers does not look for packed rows
        hidden = model.base_model(
            input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False, **kwargs
        ).last_hidden_state
        mask, targets = loss_positions(b["labels"])
        loss = fused_linear_cross_entropy(hidden[:, :-1][mask], head.weight, targets, softcap=softcap)
        logits = head(hidden)
    for e, (want, _, _) in zip(ex, alone):
        r, at = where[id(e)]
        got = logits[r, at : at + len(e["input_ids"])]
        got = softcap * torch.tanh(got / softcap) if softcap else got
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    tokens = sum(n for _, _, n in alone)
    assert targets.numel() == tokens
    torch.testing.assert_close(loss / tokens, sum(x for _, x, _ in alone) / tokens, atol=1e-6, rtol=1e-5)


def test_older_varlen_signature_is_causal_and_repeats_heads_but_refuses_windows(monkeypatch):
    monkeypatch.setattr(pa, "TORCH_VARLEN", pa.kernel(older_varlen))
    ex = examples((12, 7))
    b = fixed_micro_batches(ex, 1, 24, pad_id=0)[0]
    model, ref = tiny_model("llama", pa.VARLEN), tiny_model("llama", "sdpa")  # 4 query heads, 2 key/value heads
    kwargs = pa.forward_kwargs(pa.VARLEN, b["position_ids"], model.config, b["cu_seq_lens"])
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False, **kwargs).logits
        torch.testing.assert_close(logits[0, :12], ref(input_ids=torch.tensor([ex[0]["input_ids"]])).logits[0])
    gemma = tiny_model("gemma3", pa.VARLEN)
    with torch.no_grad(), pytest.raises(ConfigError, match="cannot do a sliding window"):
        gemma(input_ids=b["input_ids"], position_ids=b["position_ids"], **kwargs)


class Layer(torch.nn.Module):
    is_causal = True


def test_flex_honours_soft_capping_and_scale():
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1]])
    q, k, v = (torch.randn(1, 2, 11, 8, generator=torch.Generator().manual_seed(s)) * 3 for s in range(3))
    masks = {None: pa.document_block_mask(pos, block=8)}
    out, _ = pa.flex_packed_attention(Layer(), q, k, v, None, scaling=0.3, softcap=2.0, lima_block_masks=masks)
    scores = 2.0 * torch.tanh(q @ k.transpose(-1, -2) * 0.3 / 2.0)
    want = scores.masked_fill(~dense_reference(pos, None)[:, None], float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(out, want.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_paths_refuse_what_they_cannot_do(monkeypatch):
    q = torch.randn(1, 2, 6, 8)
    pos = torch.tensor([[0, 1, 2, 0, 1, 2]])
    with pytest.raises(RuntimeError, match="forward_kwargs"):
        pa.flex_packed_attention(Layer(), q, q, q, None)  # a packed row without its mask would attend across
    masks = {None: pa.document_block_mask(pos)}
    with pytest.raises(RuntimeError, match="sliding window 4"):
        pa.flex_packed_attention(Layer(), q, q, q, None, sliding_window=4, lima_block_masks=masks)
    with pytest.raises(ConfigError, match="attention dropout 0.1"):
        pa.flex_packed_attention(Layer(), q, q, q, None, dropout=0.1, lima_block_masks=masks)
    with pytest.raises(ConfigError, match="attention sinks"):
        pa.flex_packed_attention(Layer(), q, q, q, None, s_aux=torch.zeros(2), lima_block_masks=masks)
    monkeypatch.setattr(pa, "TORCH_VARLEN", pa.kernel(reference_varlen))
    with pytest.raises(RuntimeError, match="cu_seq_lens_q"):
        pa.varlen_packed_attention(Layer(), q, q, q, None)
    monkeypatch.setattr(pa, "FLASH_VARLEN", None)
    with pytest.raises(ConfigError, match="softcap=50.0"):  # torch's varlen_attn has no soft-capping
        pa.varlen_packed_attention(Layer(), q, q, q, None, softcap=50.0)
    cfg = tiny_config("llama", VOCAB)
    cfg.attention_chunk_size = 8
    with pytest.raises(ConfigError, match="chunked attention"):
        pa.forward_kwargs(pa.FLEX, pos, cfg)


def test_cpu_chooses_sdpa_and_says_why_varlen_cannot_run():
    paths = pa.available_paths("cpu", torch.float32)
    assert paths["sdpa"] is None and paths[pa.FLEX] is None
    assert "CUDA" in paths[pa.VARLEN] and "bf16 or fp16" in paths[pa.VARLEN]
    assert pa.choose_path("cpu") == "sdpa"
    assert pa.forward_kwargs("sdpa", torch.zeros((1, 4), dtype=torch.long), tiny_config("llama", VOCAB)) == {}


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2"])
@pytest.mark.parametrize("path", [pa.VARLEN, pa.FLEX, "flash_attention_2"])
def test_gpu_paths_match_unpacked_forwards_in_bf16_with_gradients(family, path):
    why = pa.available_paths("cuda", torch.bfloat16)[path]
    if why:
        pytest.skip(f"{path}: {why}")
    ex = examples(seed=1)
    model = tiny_model(family, path, head_dim=32).cuda().to(torch.bfloat16)
    ref = tiny_model(family, "sdpa", head_dim=32).cuda().to(torch.bfloat16)
    b = {k: v.cuda() for k, v in fixed_micro_batches(ex, ROWS, LENGTH, pad_id=0)[0].items()}
    with torch.cuda.device(0):
        torch.cuda.set_sync_debug_mode("error")  # building the per-batch tensors must not wait for the GPU
        try:
            kwargs = pa.forward_kwargs(path, b["position_ids"], model.config, b["cu_seq_lens"])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    hidden = model.base_model(
        input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False, **kwargs
    ).last_hidden_state
    mask, targets = loss_positions(b["labels"])
    loss = fused_linear_cross_entropy(hidden[:, :-1][mask], model.get_output_embeddings().weight, targets)
    loss.backward()
    each = [CausalLMLoss(ref)(torch.tensor([e["input_ids"]]).cuda(), torch.tensor([e["labels"]]).cuda()) for e in ex]
    sum(x for x, _ in each).backward()
    want = sum(x for x, _ in each).float()
    assert abs(loss.float() - want) / want < 1e-2  # bf16: the same sums in another order
    g = model.base_model.layers[0].self_attn.q_proj.weight.grad.float()
    g_ref = ref.base_model.layers[0].self_attn.q_proj.weight.grad.float()
    assert (g - g_ref).norm() / g_ref.norm() < 5e-2


@pytest.mark.gpu
@cuda
def test_gpu_flex_compiles_once_for_fixed_shapes():
    torch._dynamo.reset()
    model = tiny_model("gemma3", pa.FLEX, head_dim=32).cuda().to(torch.bfloat16)
    for seed in range(3):  # different packings, one shape
        b = {k: v.cuda() for k, v in fixed_micro_batches(examples(seed=seed), ROWS, LENGTH, 0)[0].items()}
        kwargs = pa.forward_kwargs(pa.FLEX, b["position_ids"], model.config)
        model(input_ids=b["input_ids"], position_ids=b["position_ids"], **kwargs).logits.sum().backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2  # flex forward (+ its backward graph)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_trainer_batches_through_flex_give_the_sdpa_loss_also_under_bf16_autocast(family):
    """What `train.train_step` does with `train.attention: flex` (`batch_kwargs`, host-built loss indices),
    forward only (FlexAttention has no CPU backward): the loss of the dense-mask SDPA path, in fp32 and under
    bf16 autocast over fp32 weights (the trainer's GPU setting, where RoPE hands flex fp32 queries and bf16 values)."""
    ex = examples(seed=2)
    flex, ref = tiny_model(family, pa.FLEX), tiny_model(family, "sdpa")
    [b] = fixed_micro_batches(ex, ROWS, LENGTH, pad_id=0)
    for autocast in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            batch = dict(b)
            kwargs = pa.batch_kwargs(batch, flex.config)
            assert "cu_seq_lens" not in batch and set(kwargs) == {pa.MASKS_KWARG}
            got, n = CausalLMLoss(flex)(**batch, **kwargs)
            want, n_ref = CausalLMLoss(ref)(b["input_ids"], b["labels"], position_ids=b["position_ids"])
        assert n == n_ref == count_loss_tokens(ex)
        torch.testing.assert_close(got, want, rtol=1e-2 if autocast else 1e-5, atol=1e-5)


def test_training_path_resolves_train_attention():
    cfg = tiny_config("gemma3", VOCAB)
    cfg._attn_implementation = "sdpa"
    assert pa.training_path("auto", False, "cuda", torch.bfloat16, cfg) == "sdpa"  # no fixed shapes: the model's own
    assert pa.training_path("auto", True, "cpu", torch.float32, cfg) == "sdpa"  # choose_path on CPU
    assert pa.training_path("flex", False, "cpu", torch.float32, cfg) == pa.FLEX
    assert pa.training_path("varlen", True, "cpu", torch.float32, cfg) == pa.VARLEN
    cfg.attention_chunk_size = 8
    with pytest.raises(ConfigError, match="chunked attention"):
        pa.training_path("flex", True, "cpu", torch.float32, cfg)


def test_attention_switches_for_a_block_and_back():
    model = tiny_model("llama", pa.FLEX)
    with pa.attention(model, "sdpa"):
        assert model.config._attn_implementation == "sdpa"
        model(input_ids=torch.tensor([[3, 4, 5]]))  # a plain forward, no packed-attention arguments
    assert model.config._attn_implementation == pa.FLEX
