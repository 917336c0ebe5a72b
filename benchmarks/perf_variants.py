"""The training-step variants benchmarks/gpu_perf_check.py measures, implemented here rather than in lima_repro so
that each one's speed and loss can be measured before the library adopts it.

A `Variant` is a set of switches on how one optimizer step's examples are batched (one packed row per forward as
today, or `rows_per_forward` rows), padded (each row to its own length, or all to the row capacity: one shape),
copied (a pinned copy per tensor per row, or one per step), attended (SDPA with the dense block-diagonal mask that
transformers derives from restarting `position_ids`; transformers' FlexAttention; a document-mask `BlockMask` built
once per forward; PyTorch's varlen attention; FlashAttention-2), and how the output head runs (fp32, TF32 or bf16,
chunk size). `today` is lima_repro's own `train.train_step`, unchanged; every other variant runs `harness_step`,
which at today's switches does what `train_step` does, so the loss each variant reports at the same weights (lr 0)
must equal today's.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace

import torch

from lima_repro import batching
from lima_repro.chat_format import IGNORE
from lima_repro.loss import fused_linear_cross_entropy


@dataclass(frozen=True)
class Variant:
    name: str
    cudnn: bool = True  # SDPA may choose cuDNN attention (torch's default on Hopper; plans are cached per shape)
    padded: bool = False  # rows padded to the capacity: every forward has one shape
    rows_per_forward: int = 1
    # loss positions gathered by host-built indices (no boolean-mask sync), one pinned copy a step, no clip pass
    # with an infinite limit, the head's weight gradient through autograd (no device tensor from a Python scalar),
    # and a dense embedding gradient (the library's sparse one is a CPU tuning)
    own_forward: bool = False
    attn: str = "sdpa"  # sdpa | flex_attention | bench_flex | bench_varlen | flash_attention_2
    head: str = "fp32"  # fp32 (today: in-place addmm_ is not autocast) | tf32 | bf16 (hidden states cast first)
    head_chunk: int = 256

    def but(self, name: str, **changes) -> Variant:
        return replace(self, name=name, **changes)


def step_batch(examples: list[dict], seed: int) -> list[dict]:
    """The step's examples in the order `train.train_step` takes them (one epoch of one step): packing ties agree."""
    return [examples[i] for i in batching.epoch_order(len(examples), seed, 0)]


def build_forwards(batch: list[dict], capacity: int, v: Variant) -> list[dict]:
    """Host tensors of each forward: `rows_per_forward` packed rows, padded to the capacity or the longest row
    (padding is a document of its own: positions from 0, no loss). Also the documents' ids and lengths (attention
    masks) and, for `own_forward`, the flat indices of loss positions and their targets."""
    rows = batching.pack_rows(batch, capacity)
    k = v.rows_per_forward
    out = []
    for g in range(0, len(rows), k):
        group = rows[g : g + k]
        width = capacity if v.padded else max(sum(len(e["input_ids"]) for e in r) for r in group)
        ids, labels, pos, doc, lengths = [], [], [], [], []
        for r in group:
            pad = width - sum(len(e["input_ids"]) for e in r)
            docs = [len(e["input_ids"]) for e in r] + ([pad] if pad else [])
            ids += [t for e in r for t in e["input_ids"]] + [0] * pad
            labels += [t for e in r for t in e["labels"]] + [IGNORE] * pad
            pos += [p for n in docs for p in range(n)]
            doc += [len(lengths) + j for j, n in enumerate(docs) for _ in range(n)]
            lengths += docs
        shape = (len(group), width)
        mb = {
            "input_ids": torch.tensor(ids).view(shape),
            "labels": torch.tensor(labels).view(shape),
            "position_ids": torch.tensor(pos).view(shape),
        }
        if v.own_forward:
            nxt = mb["labels"][:, 1:]
            src = (nxt != IGNORE).nonzero()  # host side: no device sync
            mb = {k_: mb[k_] for k_ in ("input_ids", "position_ids")}
            mb["src"] = src[:, 0] * width + src[:, 1]
            mb["targets"] = nxt[src[:, 0], src[:, 1]]
            mb["doc"] = torch.tensor(doc).view(shape)
            mb["cu_seqlens"] = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
        out.append(mb)
    return out


def copy_forwards(forwards: list[dict], device: torch.device, one_copy: bool) -> list[dict]:
    """Today: `batching.to_device` per forward (a pinned buffer per tensor). `one_copy`: every tensor of the step
    in one pinned buffer and one asynchronous copy, then views on the device."""
    if not one_copy:
        return [batching.to_device(mb, device) for mb in forwards]
    flat = torch.cat([t.reshape(-1).to(torch.int64) for mb in forwards for t in mb.values()])
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    out, at = [], 0
    for mb in forwards:
        moved = {}
        for key, t in mb.items():
            moved[key] = flat[at : at + t.numel()].view(t.shape).to(t.dtype)
            at += t.numel()
        out.append(moved)
    return out


# ---- attention functions registered with transformers' AttentionInterface ------------------------------------
# Registered as bench_flex / bench_varlen: the library's own lima_flex / lima_varlen (packed_attention.py, what the
# trainer now uses) are global names in the same registry, and a benchmark must never replace them.


def _run_dtype(q: torch.Tensor) -> torch.dtype:
    """FlexAttention and varlen are not autocast ops: run them in autocast's dtype, as autocast runs SDPA."""
    dev = q.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype


FLEX = {}  # "fn": flex_attention, compiled on CUDA (its eager form is a slow reference implementation)


def lima_flex(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """FlexAttention with the forward's document-causal `BlockMask` (one per window size, built once per forward)."""
    dt = _run_dtype(query)
    mask = kw["lima_block_masks"][kw.get("sliding_window") or 0]
    out = FLEX["fn"](
        query.to(dt),
        key.to(dt),
        value.to(dt),
        block_mask=mask,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def varlen_params() -> set[str] | None:
    """Keyword names of this torch's `torch.nn.attention.varlen.varlen_attn` (its signature changed between
    releases), or None where it does not exist."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return set(inspect.signature(varlen_attn).parameters)


def lima_varlen(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """PyTorch's varlen attention over the forward's documents (cu_seqlens over all its rows, padding included)."""
    from torch.nn.attention.varlen import varlen_attn

    params, window = varlen_params(), kw.get("sliding_window")
    b, h, s, d = query.shape
    dt = _run_dtype(query)
    q, k_, v_ = (x.transpose(1, 2).reshape(b * s, x.shape[1], d).to(dt) for x in (query, key, value))
    extra = {"scale": scaling} if "scale" in params else {}
    if "scale" not in params and scaling is not None and abs(scaling * math.sqrt(d) - 1) > 1e-6:
        raise NotImplementedError(
            "this torch's varlen_attn has no scale argument, and this model's scale is not 1/sqrt(d)"
        )
    if k_.shape[1] != h:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k_, v_ = (x.repeat_interleave(h // x.shape[1], dim=1) for x in (k_, v_))
    if "window_size" in params:  # (left, right): transformers' window w sees keys q - w < kv <= q
        extra["window_size"] = (window - 1 if window else -1, 0)
    elif window:
        raise NotImplementedError("this torch's varlen_attn has no window_size: sliding-window layers cannot run")
    else:
        extra["is_causal"] = True
    cu, most = kw["lima_cu_seqlens"], kw["lima_max_len"]
    return varlen_attn(q, k_, v_, cu, cu, most, most, **extra).view(b, s, h, d), None


def register_attention(device: torch.device) -> None:
    from torch.nn.attention.flex_attention import flex_attention
    from transformers import AttentionInterface

    FLEX["fn"] = torch.compile(flex_attention, dynamic=False) if device.type == "cuda" else flex_attention
    AttentionInterface.register("bench_flex", lima_flex)
    AttentionInterface.register("bench_varlen", lima_varlen)


def attention_kwargs(v: Variant, mb: dict, windows: set[int], device: torch.device) -> dict:
    """What `bench_flex` / `bench_varlen` read from the model's forward kwargs (transformers passes them down)."""
    if v.attn == "bench_varlen":
        return {"lima_cu_seqlens": mb["cu_seqlens"], "lima_max_len": mb["doc"].shape[1]}
    if v.attn != "bench_flex":
        return {}
    from torch.nn.attention.flex_attention import create_block_mask

    doc = mb["doc"]

    def masks(window: int):
        def mask_mod(b, h, q, kv):
            ok = (doc[b, q] == doc[b, kv]) & (q >= kv)
            return ok & (q - kv < window) if window else ok

        return create_block_mask(mask_mod, doc.shape[0], None, doc.shape[1], doc.shape[1], device=device)

    return {"lima_block_masks": {w: masks(w) for w in windows | {0}}}


def set_attention(lm, name: str) -> None:
    try:
        lm.set_attn_implementation(name)
    except (AttributeError, ValueError):
        lm.config._attn_implementation = name


# ---- one optimizer step ----------------------------------------------------------------------------------------


def own_loss(ctx, v: Variant, mb: dict) -> torch.Tensor:
    """The summed loss of one forward without CausalLMLoss: positions gathered by index, the library's fused head."""
    lm = ctx.lm
    kwargs = attention_kwargs(v, mb, ctx.windows, ctx.device)
    hidden = lm.base_model(
        input_ids=mb["input_ids"], position_ids=mb["position_ids"], use_cache=False, **kwargs
    ).last_hidden_state
    h = hidden.flatten(0, 1).index_select(0, mb["src"])
    if v.head == "bf16":
        h = h.to(torch.bfloat16)  # logits, dlogits @ W and the weight gradient all in bf16 (fp32 accumulation)
    head = lm.get_output_embeddings()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    return fused_linear_cross_entropy(h, head.weight, mb["targets"], getattr(head, "bias", None), v.head_chunk, softcap)


def harness_step(ctx, v: Variant, examples: list[dict]) -> float:
    """One optimizer step over `examples` under `v`; the step's mean loss (one host sync at the end, as
    `train_step`). With `v` at today's switches this is `train_step`'s work."""
    acc, t = ctx.acc, ctx.t
    batch = step_batch(examples, t.seed)
    n_loss = batching.count_loss_tokens(batch)
    scale = 1.0 / n_loss
    if not (v.padded or v.own_forward or v.rows_per_forward > 1):
        host = batching.micro_batches(batch, t.micro_batch_size, 0, True, ctx.cap)
    else:
        host = build_forwards(batch, ctx.cap, v)
    forwards = copy_forwards(host, ctx.device, v.own_forward)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    with acc.autocast():
        for mb in forwards:
            if v.own_forward:
                loss = own_loss(ctx, v, mb)
            else:
                loss, _ = ctx.loss_model(**mb, grad_scale=scale)
            with torch.autocast(ctx.device.type, enabled=False):
                acc.backward(loss * scale)
            loss_sum += loss.detach()
    if not v.own_forward:
        torch.nn.utils.clip_grad_norm_(ctx.loss_model.parameters(), t.max_grad_norm or math.inf)
    ctx.optimizer.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    return float(loss_sum) / n_loss
