"""Attention over packed rows that never builds a dense (rows x L x L) mask.

A packed row holds several examples one after another, each with position ids restarting at 0
(`batching.packed_batch`, `fixed_shapes`). A token may attend to the tokens before it in its own example only, and
within a layer's sliding window (Gemma 3's local layers). transformers' `sdpa` and `eager` get that as a dense mask
it builds from the position ids on every forward: today's CPU path, and the reference the others must match.
Two paths here skip the dense mask:

- `lima_flex`: FlexAttention with a document `BlockMask` per window, built once per batch on the device from the
  position ids (block-level tensors only, no host sync) and handed to every layer;
- `lima_varlen`: variable-length FlashAttention over the flattened rows, with `cu_seq_lens` built on the host with
  the batch: PyTorch's own `varlen_attn` (its signature changed between releases and is read at run time), or
  `flash_attn_varlen_func` when flash_attn is installed.

Both names are registered in transformers' `AttentionInterface`, so `attn_implementation="lima_flex"` selects one.
Such a name has no mask function in transformers, so the model builds no mask at all; the per-batch tensors reach
every layer's attention function as keyword arguments of the model's forward (`forward_kwargs`), which transformers
passes down unchanged. Without them the functions refuse to run: a packed row without its mask would silently
attend across examples.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from transformers import AttentionInterface

from .config.base import ConfigError

try:  # torch >= 2.10
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None
try:  # an optional CUDA extra
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


class Kernel(NamedTuple):
    """A varlen kernel and the names of its parameters, read once here: its signature differs between releases,
    and reading it inside a compiled forward would break the graph."""

    fn: Callable
    params: frozenset[str]


def kernel(fn: Callable | None) -> Kernel | None:
    return Kernel(fn, frozenset(inspect.signature(fn).parameters)) if fn is not None else None


TORCH_VARLEN, FLASH_VARLEN = kernel(varlen_attn), kernel(flash_attn_varlen_func)
FLEX, VARLEN = "lima_flex", "lima_varlen"
BLOCK = 128  # FlexAttention's default sparse block (tokens per side of a tile)
MASKS_KWARG = "lima_block_masks"  # {sliding window or None: BlockMask}, a forward keyword argument


def cu_seq_lens(position_ids: torch.Tensor) -> torch.Tensor:
    """int32 offsets of every segment (an example or a padding segment) in the flattened rows, and their total:
    `cu_seqlens` of the varlen kernels. A segment starts where its position id is 0. Computed on the host with the
    batch: on a GPU finding the starts would wait for the device."""
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    return torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)


def document_block_mask(position_ids: torch.Tensor, window: int | None = None, block: int = BLOCK) -> BlockMask:
    """The causal, same-example (and within `window`: query - key < window) mask of packed rows as a BlockMask,
    from the rows' position ids (rows x L, on the device that will run attention).

    A query q may see the keys [lo(q), q], lo(q) = q - min(position(q), window - 1): its example started
    position(q) tokens earlier. lo never decreases along a row, so a tile of queries [a, b] meets the keys
    [lo(a), b], and it sees all of a key tile [c, d] when d <= a and lo(b) <= c. The tile-level mask (rows x
    tiles x tiles) is all that is built: no L x L tensor, no mask function evaluated over the grid, no host sync."""
    rows, n = position_ids.shape
    tiles = -(-n // block)
    pos = torch.nn.functional.pad(position_ids, (0, tiles * block - n))
    reach = pos if window is None else pos.clamp(max=window - 1)
    idx = torch.arange(tiles * block, device=pos.device)
    lo = idx - reach
    first = idx[::block]
    last = (first + block - 1).clamp(max=n - 1)
    q_first, q_last = first[None, :, None], last[None, :, None]
    k_first, k_last = first[None, None, :], last[None, None, :]
    meets = (k_first <= q_last) & (k_last >= lo[:, first][:, :, None])
    # a key tile past the end is never full: the mask function must cut its missing keys
    full = (k_last <= q_first) & (lo[:, last][:, :, None] <= k_first) & (k_first + block <= n)
    partial = meets & ~full

    def mask_mod(b, h, q, k):
        return (k <= q) & (k >= q - reach[b, q])

    def blocks(tiles_mask):
        counts = tiles_mask.sum(-1, dtype=torch.int32)[:, None]
        order = torch.argsort(tiles_mask.to(torch.int8), dim=-1, descending=True, stable=True)
        return counts, order.to(torch.int32)[:, None]

    return BlockMask.from_kv_blocks(
        *blocks(partial), *blocks(full), BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(n, n)
    )


def forward_kwargs(
    path: str, position_ids: torch.Tensor, config, cu_seqlens: torch.Tensor | None = None, block: int = BLOCK
) -> dict:
    """What the model's forward needs besides input_ids and position_ids for attention path `path` over these
    packed rows; once per batch, after the batch is on its device. `sdpa`/`eager`: nothing (transformers builds
    the dense mask from the position ids). `lima_flex`: one BlockMask per window the model uses. `lima_varlen` and
    transformers' `flash_attention_2`: the segments' offsets (`cu_seqlens`, the batch's host-built
    `fixed_shapes` tensor moved with it; computed here otherwise, which waits for a GPU) and the row width as
    their longest possible length (a constant, so a compiled model sees no new value and no host sync)."""
    check_model(config, path)
    if path == FLEX:
        windows = {None, getattr(config, "sliding_window", None)}
        return {MASKS_KWARG: {w: document_block_mask(position_ids, w, block) for w in windows}}
    if path in (VARLEN, "flash_attention_2"):
        cu = cu_seqlens if cu_seqlens is not None else cu_seq_lens(position_ids).to(position_ids.device)
        width = position_ids.shape[1]
        return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": width, "max_length_k": width}
    return {}


def check_model(config, path: str) -> None:
    """Refuse, with the fix, a model whose attention `path` cannot reproduce over packed rows."""
    if path not in (FLEX, VARLEN):
        return
    where = f"model.attn_implementation={path} ({getattr(config, 'model_type', 'this model')})"
    if getattr(config, "attention_chunk_size", None):
        raise ConfigError(f"{where}: chunked attention layers are not supported; use sdpa")
    if not getattr(config, "is_causal", True):
        raise ConfigError(f"{where}: the model is not causal; use sdpa")


def _layer(module, path: str, kwargs: dict, dropout_ok: bool = False) -> tuple:
    """(scale, sliding window, soft-cap) of the calling layer, from the keyword arguments transformers passes every
    attention function, after refusing with the fix what `path` cannot reproduce."""
    where = f"model.attn_implementation={path} ({type(module).__name__})"
    dropout = kwargs.get("dropout", 0.0)
    if dropout and not dropout_ok:
        raise ConfigError(
            f"{where}: attention dropout {dropout} is not supported; set the model's attention dropout to 0"
        )
    if kwargs.get("s_aux") is not None:
        raise ConfigError(f"{where}: attention sinks are not supported; use sdpa or eager")
    if not getattr(module, "is_causal", True):
        raise ConfigError(f"{where}: a non-causal attention layer is not supported; use sdpa")
    return kwargs.get("scaling"), kwargs.get("sliding_window"), kwargs.get("softcap")


def _autocast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in autocast's dtype when it is on (FlexAttention and the varlen kernels are not autocast ops,
    and under autocast over fp32 weights the rotary embedding hands them fp32 queries and keys beside bf16
    values), as they are otherwise."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in tensors)


@contextlib.contextmanager
def attention(model, name: str):
    """`model` with attention implementation `name` inside the block (the trainer's held-out evaluation and its
    checkpoints use sdpa, whatever the training forwards use), as it was after."""
    was = model.config._attn_implementation
    if was == name:
        yield model
        return
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(was)


def _missing(path: str, what: str) -> RuntimeError:
    return RuntimeError(
        f"attention {path} got no {what}: pass packed_attention.forward_kwargs({path!r}, ...) to the model's forward "
        "(without it a packed row would attend across examples)"
    )


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)  # fixed shapes: one compilation


def flex_packed_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers attention function (B x H x L x D in, B x L x H x D out): FlexAttention with the batch's
    BlockMask for this layer's window. Gemma 2's logit soft-capping is a score modifier; the scale is the layer's."""
    scaling, sliding_window, softcap = _layer(module, FLEX, kwargs)
    masks = kwargs.get(MASKS_KWARG)
    if masks is None:
        raise _missing(FLEX, MASKS_KWARG)
    if sliding_window not in masks:
        raise _missing(FLEX, f"BlockMask for sliding window {sliding_window}")

    def capped(score, b, h, q, k):
        return softcap * torch.tanh(score / softcap)

    # on CPU flex runs unfused (the tests); torch.compile inside a compiled model would nest
    on_cpu = query.device.type == "cpu"
    run = flex_attention if on_cpu or torch.compiler.is_compiling() else _compiled_flex()
    query, key, value = _autocast(query, key, value)
    out = run(
        query,
        key,
        value,
        score_mod=capped if softcap else None,
        block_mask=masks[sliding_window],
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def varlen_kernel(softcap: float | None = None, dropout: float = 0.0) -> tuple[str, Kernel] | None:
    """(name, kernel) to use: PyTorch's `varlen_attn` when it has what the layer needs (2.13 has no soft-capping
    and no dropout), else flash_attn's; None when neither can."""
    own = TORCH_VARLEN
    if own is not None and (not softcap or "softcap" in own.params) and not dropout:
        return "torch", own
    if FLASH_VARLEN is not None and (not softcap or "softcap" in FLASH_VARLEN.params):
        return "flash_attn", FLASH_VARLEN
    return None


def _call_torch_varlen(kern: Kernel, q, k, v, cu, width, scale, window, softcap):
    """PyTorch's varlen_attn, whichever signature it has: causal through `window_size` (2.13: (-1, 0); a window
    W -> (W - 1, 0)) or an older `is_causal`; GQA through `enable_gqa` or by repeating the key/value heads; the
    model's scale through `scale` or, without it, folded into the queries (exact: softmax sees the same scores)."""
    params = kern.params
    extra = {"scale": scale} if "scale" in params else {}
    if "scale" not in params and scale is not None:
        q = q * (scale * q.shape[-1] ** 0.5)  # such a kernel scales by head_dim ** -0.5: fold the model's scale into q
    if softcap:
        extra["softcap"] = softcap
    if "window_size" in params:
        extra["window_size"] = (window - 1 if window else -1, 0)
    elif "is_causal" in params and window is None:
        extra["is_causal"] = True
    else:
        cannot = f"a sliding window ({window})" if "is_causal" in params else "causal attention"
        raise ConfigError(
            f"model.attn_implementation={VARLEN}: this torch's varlen_attn cannot do {cannot}; "
            f"install flash_attn or use {FLEX}"
        )
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return kern.fn(q, k, v, cu, cu, width, width, **extra)


def _call_flash_attn(kern: Kernel, q, k, v, cu, width, scale, window, softcap, dropout):
    extra = {"softcap": softcap} if softcap else {}
    if window:
        extra["window_size"] = (window - 1, 0)
    return kern.fn(q, k, v, cu, cu, width, width, dropout_p=dropout, softmax_scale=scale, causal=True, **extra)


def varlen_packed_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers attention function: the rows flattened to one sequence of segments (`cu_seq_lens_q`), each
    attending causally to itself only, within the layer's sliding window."""
    softcap, dropout = kwargs.get("softcap"), kwargs.get("dropout", 0.0)
    chosen = varlen_kernel(softcap, dropout)
    if chosen is None:
        raise ConfigError(
            f"model.attn_implementation={VARLEN}: no varlen kernel here supports this layer "
            f"(softcap={softcap}, dropout={dropout}); install flash_attn or use {FLEX}"
        )
    name, kern = chosen
    scaling, sliding_window, softcap = _layer(module, VARLEN, kwargs, dropout_ok=name == "flash_attn")
    cu, width = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if cu is None or width is None:
        raise _missing(VARLEN, "cu_seq_lens_q/max_length_q")
    rows, heads, n, _ = query.shape
    q, k, v = (t.transpose(1, 2).reshape(rows * n, t.shape[1], t.shape[3]) for t in _autocast(query, key, value))
    if name == "torch":
        out = _call_torch_varlen(kern, q, k, v, cu, width, scaling, sliding_window, softcap)
    else:
        out = _call_flash_attn(kern, q, k, v, cu, width, scaling, sliding_window, softcap, dropout)
    return out.reshape(rows, n, heads, -1), None


def available_paths(device, dtype: torch.dtype = torch.bfloat16) -> dict[str, str | None]:
    """Every attention path for packed rows and why it cannot run on `device` in `dtype` (None: it can)."""
    device = torch.device(device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    gpu = "" if cuda else f"needs a CUDA GPU, not {device.type}"
    if cuda and torch.cuda.get_device_capability(device) < (8, 0):
        gpu = "needs a CUDA GPU of compute capability >= 8.0 (Ampere)"
    half = "" if dtype in (torch.float16, torch.bfloat16) else f"needs bf16 or fp16, not {dtype}"
    kernels = "" if varlen_kernel() else "needs torch.nn.attention.varlen (torch >= 2.10) or flash_attn installed"
    fa2 = "" if FLASH_VARLEN is not None else "needs flash_attn installed"
    return {
        VARLEN: "; ".join(r for r in (gpu, half, kernels) if r) or None,
        "flash_attention_2": "; ".join(r for r in (gpu, half, fa2) if r) or None,
        FLEX: None,  # any device; unfused (a dense score matrix) on CPU, so chosen on GPUs only
        "sdpa": None,
        "eager": None,
    }


def choose_path(device, dtype: torch.dtype = torch.bfloat16, config=None) -> str:
    """The attention for packed rows: varlen FlashAttention on a CUDA GPU when a kernel supports the model, else
    FlexAttention there; SDPA with the dense mask elsewhere (CPU: FlexAttention would run unfused)."""
    if torch.device(device).type != "cuda":
        return "sdpa"
    softcap = getattr(config, "attn_logit_softcapping", None)
    if available_paths(device, dtype)[VARLEN] is None and varlen_kernel(softcap) is not None:
        return VARLEN
    return FLEX


def training_path(option: str, fixed_shapes: bool, device, dtype: torch.dtype, config) -> str:
    """The attention implementation training forwards use, from `train.attention` (`option`): `auto` = with fixed
    shapes `choose_path` for this device and dtype, else the model's own (`model.attn_implementation`); `flex`
    and `varlen` name this module's paths."""
    if option == "auto":
        if not fixed_shapes:
            return config._attn_implementation
        path = choose_path(device, dtype, config)
    else:
        path = {"flex": FLEX, "varlen": VARLEN}.get(option, option)
    check_model(config, path)
    return path


def batch_kwargs(batch: dict, config) -> dict:
    """`forward_kwargs` for a training micro-batch already on its device, for the model's current attention
    implementation; takes the batch's `cu_seq_lens` out of it (the model's forward has no such argument). A batch
    without position ids (padded, not packed) needs none."""
    cu = batch.pop("cu_seq_lens", None)
    if "position_ids" not in batch:
        return {}
    return forward_kwargs(config._attn_implementation, batch["position_ids"], config, cu)


AttentionInterface.register(FLEX, flex_packed_attention)
AttentionInterface.register(VARLEN, varlen_packed_attention)
