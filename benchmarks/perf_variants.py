"""The training-step variants benchmarks/gpu_perf_check.py measures, implemented here rather than in lima_repro so
that each one's speed and loss can be measured before the library adopts it.

A `Variant` is a set of switches on how one optimizer step's examples are batched (one packed row per forward as
today, or `rows_per_forward` rows), padded (each row to its own length, or all to the row capacity: one shape),
copied (a pinned copy per tensor per row, or one per step), attended (SDPA with the dense block-diagonal mask that
transformers derives from restarting `position_ids`; transformers' FlexAttention; the library's own packed paths,
FlexAttention with a document `BlockMask` and varlen attention (`bench_flex` / `bench_varlen`: what the trainer runs
as `lima_flex` / `lima_varlen`); FlashAttention-2), and how the output head runs (fp32, TF32 or bf16, chunk size).
`today` is lima_repro's own `train.train_step`, unchanged; every other variant runs `harness_step`, which at today's
switches does what `train_step` does, so the loss each variant reports at the same weights (lr 0) must equal
today's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from transformers import AttentionInterface

from lima_repro import batching, packed_attention
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
    attn: str = "sdpa"  # sdpa | flex_attention | bench_flex | bench_varlen (the library's) | flash_attention_2
    head: str = "fp32"  # fp32 (today: in-place addmm_ is not autocast) | tf32 | bf16 (hidden states cast first)
    head_chunk: int = 256

    def but(self, name: str, **changes) -> Variant:
        return replace(self, name=name, **changes)


def step_batch(examples: list[dict], seed: int) -> list[dict]:
    """The step's examples in the order `train.train_step` takes them (one epoch of one step): packing ties agree."""
    return [examples[i] for i in batching.epoch_order(len(examples), seed, 0)]


def build_forwards(batch: list[dict], capacity: int, v: Variant) -> list[dict]:
    """Host tensors of each forward: `rows_per_forward` packed rows, padded to the capacity or the longest row
    (padding is a document of its own: positions from 0, no loss). For `own_forward` also the flat indices of loss
    positions and their targets, and the segments' offsets (`cu_seqlens`, for the varlen kernels)."""
    rows = batching.pack_rows(batch, capacity)
    k = v.rows_per_forward
    out = []
    for g in range(0, len(rows), k):
        group = rows[g : g + k]
        width = capacity if v.padded else max(sum(len(e["input_ids"]) for e in r) for r in group)
        ids, labels, pos = [], [], []
        for r in group:
            pad = width - sum(len(e["input_ids"]) for e in r)
            docs = [len(e["input_ids"]) for e in r] + ([pad] if pad else [])
            ids += [t for e in r for t in e["input_ids"]] + [0] * pad
            labels += [t for e in r for t in e["labels"]] + [IGNORE] * pad
            pos += [p for n in docs for p in range(n)]
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
            mb["cu_seqlens"] = packed_attention.cu_seq_lens(mb["position_ids"])  # as fixed_shapes builds it
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


# ---- attention: the library's own (packed_attention.py), what the trainer runs ---------------------------------
# The variants keep the names gpu_perf_check.py and earlier perf.jsonl files give them: bench_flex and bench_varlen
# are the library's lima_flex and lima_varlen registered again under those names (the library's names stay as
# they are), and their forward kwargs are built by the library's forward_kwargs, as train_step builds them.
LIBRARY_PATH = {"bench_flex": packed_attention.FLEX, "bench_varlen": packed_attention.VARLEN}


def varlen_params() -> set[str] | None:
    """Keyword names of this torch's `torch.nn.attention.varlen.varlen_attn`, as the library read them, or None
    where it does not exist."""
    kern = packed_attention.TORCH_VARLEN
    return None if kern is None else set(kern.params)


def register_attention(device: torch.device) -> None:
    """bench_flex / bench_varlen as the library's functions. `device` is not needed: the library compiles
    FlexAttention itself on a GPU."""
    AttentionInterface.register("bench_flex", packed_attention.flex_packed_attention)
    AttentionInterface.register("bench_varlen", packed_attention.varlen_packed_attention)


def attention_kwargs(v: Variant, mb: dict, config) -> dict:
    """What the model's forward needs for `v.attn` besides input_ids and position_ids: the library's
    `packed_attention.forward_kwargs`, with the forward's host-built `cu_seqlens`."""
    path = LIBRARY_PATH.get(v.attn, v.attn)
    return packed_attention.forward_kwargs(path, mb["position_ids"], config, mb.get("cu_seqlens"))


def set_attention(lm, name: str) -> None:
    try:
        lm.set_attn_implementation(name)
    except (AttributeError, ValueError):
        lm.config._attn_implementation = name


# ---- one optimizer step ----------------------------------------------------------------------------------------


def own_loss(ctx, v: Variant, mb: dict) -> torch.Tensor:
    """The summed loss of one forward without CausalLMLoss: positions gathered by index, the library's fused head."""
    lm = ctx.lm
    kwargs = attention_kwargs(v, mb, lm.config)
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
