"""LIMA's sampler (docs/paper.md sec. 3) on one fixed batch with a static KV cache: the GPU path (issue 22).

`sampling.decode` drops a row from its batch and its cache as soon as the row stops: cheap on a CPU, but every
step then has a new shape, so no step can be captured as a CUDA graph or compiled once. `decode_static` keeps the
batch whole: transformers' `StaticCache` (one preallocated buffer per layer, its length rounded up to
`CACHE_MULTIPLE` so a few shapes serve many batches; Gemma 3's sliding-window layers get transformers' sliding
static layers), finished rows go on decoding and their tokens are dropped at the end, and the host reads the device
only every `SYNC_EVERY` steps (has every row finished?) and once at the end (the tokens). Same sampling as
`sampling.decode`: the repetition penalty on generated tokens only, top-p, temperature, the same stops and caps.
"""

from __future__ import annotations

import inspect

import torch
from transformers import StaticCache

from . import models
from .batching import left_pad
from .config import GenerateConfig

CACHE_MULTIPLE = 256
"""The cache's length is the longest prompt + the largest cap rounded up to this: with `CACHE_MULTIPLE` 256 and a
cap of 2,048 (LIMA sec. 3), prompts of 1 to 256 tokens share one cache shape (one compiled graph)."""
SYNC_EVERY = 16
"""Steps between the host's checks that every row has finished. Each check waits for the device (the host stops
queueing steps ahead of it); checking every step would cost that wait each token, checking never would run every
batch to its largest cap. Every 16 steps the wait is amortised and at most 15 steps run after the last row stops."""


def resolve_sampler(g: GenerateConfig) -> str:
    """`static` or `dynamic` for generate.sampler: `auto` is static on a CUDA machine, dynamic on a CPU (where
    dropping finished rows is cheaper and the generations stay those of earlier runs)."""
    if g.sampler != "auto":
        return g.sampler
    return "static" if torch.cuda.is_available() else "dynamic"


def cache_length(tokens: int) -> int:
    """`tokens` rounded up to a multiple of CACHE_MULTIPLE."""
    return -(-tokens // CACHE_MULTIPLE) * CACHE_MULTIPLE


def penalize_seen(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`sampling.GeneratedRepetitionPenalty`'s arithmetic (CTRL's penalty, LIMA sec. 3) on the tokens marked in
    `seen` (batch x vocabulary, True where the row generated that token): one fixed-shape tensor instead of a
    growing tensor of generated tokens."""
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def nucleus_sample(logits: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """`sampling.top_p_sample` without host syncs. The nucleus (the most likely tokens whose mass before each is
    < top_p) is taken from the whole vocabulary sorted by probability, instead of a k grown until it holds top_p
    (each growth a sync); the draw is the one `torch.multinomial` makes for one sample, argmax(p / q) with q ~ Exp(1)
    per candidate (the Gumbel-max trick), without multinomial's check of the probabilities (a sync). So for the same
    random state it picks top_p_sample's token whenever top_p_sample's k reaches the whole vocabulary, as on a flat
    distribution; otherwise the two draw from the same distribution with different numbers. temperature <= 0:
    greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    top, idx = probs.topk(probs.shape[-1], dim=-1)
    before = top.cumsum(-1) - top
    keep = before < top_p
    keep[:, 0] = True  # at least one token
    weights = top * keep
    choice = (weights / torch.empty_like(weights).exponential_(1)).argmax(-1, keepdim=True)
    return idx.gather(1, choice).squeeze(1)


def _cache_kwargs(model, cache: StaticCache) -> dict:
    """The forward's cache argument (`cache` in transformers >= 5.2x, `past_key_values` before) and, where it takes
    one, `logits_to_keep=1`; looked up once per batch, not per step."""
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    return {**extra, "cache" if "cache" in params else "past_key_values": cache}


def _logits(model, ids, mask, pos, kwargs: dict) -> torch.Tensor:
    """The last position's logits after `ids`, written into the cache of `kwargs` at its next positions."""
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs).logits[:, -1]


_compiled: dict[str, object] = {}


def _compiled_logits(options: dict):
    """`_logits` under torch.compile with `options` (e.g. mode="reduce-overhead": CUDA graphs), one per options."""
    key = repr(sorted(options.items()))
    if key not in _compiled:
        _compiled[key] = torch.compile(_logits, **options)
    return _compiled[key]


@torch.no_grad()
def decode_static(
    model,
    prompts: list[list[int]],
    pad: int,
    stops: list[int],
    g: GenerateConfig,
    caps: list[int] | None = None,
    compile_options: dict | None = None,
) -> list[list[int]]:
    """`sampling.decode`'s contract on one fixed batch: continuations of `prompts` (left-padded), at most `caps[i]`
    new tokens for prompt i (default `g.max_new_tokens`), each ending with its stop token if any. The one-token
    step runs under `torch.compile(**compile_options)` when given (the prompt's forward never: its shape varies);
    `{"mode": "reduce-overhead"}` captures it as a CUDA graph on a GPU."""
    device = next(model.parameters()).device
    caps = caps if caps is not None else [g.max_new_tokens] * len(prompts)
    ids, prompt_mask, pos = (t.to(device) for t in left_pad(prompts, pad))
    rows, width = ids.shape
    steps = max(caps)
    length = cache_length(width + steps)
    cache = StaticCache(config=model.config, max_cache_len=length)
    # one mask for every step: each row's padding, then ones (positions not yet written are hidden by causality)
    mask = torch.cat([prompt_mask, prompt_mask.new_ones((rows, length - width))], 1)
    kwargs = _cache_kwargs(model, cache)
    logits = _logits(model, ids, mask, pos, kwargs)
    step = _compiled_logits(compile_options) if compile_options else _logits
    # a finished row's positions go on growing; clamped so a learned position table (GPT-2) is never overrun
    last_pos = (models.context_length(model.config) or length) - 1
    pos = pos[:, -1:]
    stop = torch.tensor(stops, device=device)
    cap = torch.tensor(caps, device=device)
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=device)
    tokens = torch.empty((rows, steps), dtype=torch.long, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    kept = torch.zeros(rows, dtype=torch.long, device=device)  # each row's tokens up to its stop or cap
    for s in range(steps):
        token = nucleus_sample(penalize_seen(logits, seen, g.repetition_penalty), g.top_p, g.temperature)
        tokens[:, s] = token
        kept += ~done
        done |= torch.isin(token, stop) | (cap <= s + 1)
        if s + 1 == steps or ((s + 1) % SYNC_EVERY == 0 and bool(done.all())):
            break
        seen.scatter_(1, token[:, None], True)
        pos = (pos + 1).clamp(max=last_pos)
        if compile_options:  # a CUDA graph's replay overwrites its last outputs: they are copied out first
            torch.compiler.cudagraph_mark_step_begin()
            logits = step(model, token[:, None], mask, pos, kwargs).clone()
        else:
            logits = step(model, token[:, None], mask, pos, kwargs)
    return [row[:n] for row, n in zip(tokens[:, : s + 1].tolist(), kept.tolist())]
