"""LIMA's sampler (sec. 3, docs/paper.md sec. 3), shared by every sampling path.

Nucleus sampling p = 0.9, temperature 0.7, a repetition penalty of 1.2 on tokens generated so far (not on the
prompt), at most `max_new_tokens` new tokens, stopping at EOT (or EOS); `generate.temperature: 0` decodes greedily
(the most likely token at every step, no random numbers drawn). Prompts are sorted by length and generated in
left-padded batches with the KV cache; a row leaves its batch (and the cache) as soon as it samples
a stop token, so finished rows cost nothing. `generate.py` (the stage), `select_checkpoint.py`, `vllm_backend.py` and the
notebooks' `Chat` all sample through this module.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: they stream to the terminal and stay in saved notebooks
from transformers import LogitsProcessor

from . import data, models
from .batching import left_pad
from .chat_format import ChatFormat, encode_prompt
from .config import GenerateConfig
from .config.generate import decoding
from .static_decode import decode_static, resolve_sampler

REPETITION_PENALTY_SCOPE = {"torch": "generated", "vllm": "prompt+generated"}  # see vllm_backend's docstring


class GeneratedRepetitionPenalty(LogitsProcessor):
    """CTRL-style repetition penalty applied only to tokens generated after `prompt_len` (LIMA sec. 3)."""

    def __init__(self, penalty: float, prompt_len: int):
        self.penalty, self.prompt_len = penalty, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :]
        if self.penalty == 1.0 or generated.shape[1] == 0:
            return scores
        picked = scores.gather(1, generated)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, generated, picked)


def top_p_sample(logits: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """One token per row from softmax(logits / temperature) restricted to the nucleus: the most likely tokens
    whose mass before each is < top_p (transformers' TopPLogitsWarper keeps the same set). The nucleus is found
    among the top k tokens, k growing until it holds top_p of the mass, instead of sorting a 262K vocabulary.
    Temperature 0: greedy, the most likely token (`generate.temperature: 0`)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    k = min(64, probs.shape[-1])
    while True:
        top, idx = probs.topk(k, dim=-1)
        cum = top.cumsum(-1)
        if k == probs.shape[-1] or bool((cum[:, -1] >= top_p).all()):
            break
        k = min(k * 8, probs.shape[-1])
    keep = (cum - top) < top_p
    keep[:, 0] = True  # at least one token
    choice = torch.multinomial(top * keep, 1)
    return idx.gather(1, choice).squeeze(1)


def _last_logits(
    model, takes_logits_to_keep: bool, cache_arg: str, cache=None, **inputs
) -> tuple[torch.Tensor, object]:
    """The last position's logits and the KV cache. `cache_arg`: the forward's name for the cache (`cache` in
    transformers >= 5.2x, where `past_key_values` is deprecated with a FutureWarning; `past_key_values` before)."""
    extra = {"logits_to_keep": 1} if takes_logits_to_keep else {}
    if cache is not None:
        extra[cache_arg] = cache
    out = model(**inputs, use_cache=True, **extra)
    return out.logits[:, -1], out[cache_arg]


@torch.no_grad()
def decode(
    model, prompts: list[list[int]], pad: int, stops: list[int], g: GenerateConfig, caps: list[int] | None = None
) -> list[list[int]]:
    """Sample continuations of `prompts` (left-padded into one batch) with the KV cache, at most `caps[i]` new
    tokens for prompt i (default `g.max_new_tokens`). A row that reaches a stop token or its cap leaves the batch
    and the cache at once, so finished rows cost nothing. Each result ends with its stop token if any."""
    device = next(model.parameters()).device
    ids, mask, pos = (t.to(device) for t in left_pad(prompts, pad))
    params = inspect.signature(model.forward).parameters
    takes, cache_arg = "logits_to_keep" in params, "cache" if "cache" in params else "past_key_values"
    logits, cache = _last_logits(model, takes, cache_arg, input_ids=ids, attention_mask=mask, position_ids=pos)
    penalty = GeneratedRepetitionPenalty(g.repetition_penalty, prompt_len=0)
    stop = torch.tensor(stops, device=device)
    rows = torch.arange(len(prompts), device=device)  # which prompt each live row is
    generated = torch.empty((len(prompts), 0), dtype=torch.long, device=device)  # live rows' tokens so far
    cap = torch.tensor(caps if caps is not None else [g.max_new_tokens] * len(prompts), device=device)
    out: list[list[int]] = [[] for _ in prompts]
    for step in range(int(cap.max())):
        token = top_p_sample(penalty(generated, logits), g.top_p, g.temperature)
        for r, t in zip(rows.tolist(), token.tolist()):
            out[r].append(t)
        live = ~torch.isin(token, stop) & (cap[rows] > step + 1)  # every live row has step + 1 tokens now
        if not bool(live.any()):
            break
        if not bool(live.all()):
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, mask, pos, generated = rows[keep], token[keep], mask[keep], pos[keep], generated[keep]
        generated = torch.cat([generated, token[:, None]], 1)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], 1)
        pos = pos[:, -1:] + 1
        logits, cache = _last_logits(
            model, takes, cache_arg, cache, input_ids=token[:, None], attention_mask=mask, position_ids=pos
        )
    return out


@torch.no_grad()
def sample(
    model,
    tokenizer,
    eot_id: int,
    prompts: list[list[int]],
    g: GenerateConfig,
    desc: str = "generate",
    progress: bool = True,
) -> list[dict]:
    """Sample `g.num_samples` continuations of each tokenized prompt. Returns, per (prompt, sample) in input
    order, {"prompt_index", "sample", "ids", "stopped_at_eot", "stop", "max_new_tokens"}: `stop` is `eot` (the
    format's end of turn `eot_id`: LIMA's EOT, or EOS under vicuna, whose turns end with it), `eos` (the base
    model's own end token, where that is another token; it also ends generation) or `max_new_tokens` (cut off at
    the row's cap: `g.max_new_tokens` or, when the prompt leaves less room, the rest of the context)."""
    model.eval()
    caps = new_token_caps(prompts, model.config, g)
    if caps and min(caps) < 1:
        i = caps.index(min(caps))
        raise data.DataError(
            desc,
            f"prompt {i}",
            f"has {len(prompts[i])} tokens, which fills the model's context of {models.context_length(model.config)}",
            "shorten that conversation (Chat: reset())",
        )
    items = sorted(((len(p), i, s) for i, p in enumerate(prompts) for s in range(g.num_samples)), reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_id
    stops = models.stop_ids(tokenizer, eot_id)
    results: dict[tuple[int, int], dict] = {}
    decode_batch = decode_static if resolve_sampler(g) == "static" else decode
    bar = tqdm(total=len(items), desc=desc, unit="seq", disable=not progress, mininterval=2.0)
    for start in range(0, len(items), g.batch_size):  # sorted by length: each batch holds similar lengths
        chunk = items[start : start + g.batch_size]
        batch = decode_batch(model, [prompts[i] for _, i, _ in chunk], pad, stops, g, [caps[i] for _, i, _ in chunk])
        for (_, i, s), new in zip(chunk, batch):
            stop_at = next((k for k, t in enumerate(new) if t in stops), None)
            stop = "max_new_tokens" if stop_at is None else "eot" if new[stop_at] == eot_id else "eos"
            results[(i, s)] = {
                "prompt_index": i,
                "sample": s,
                "ids": new[:stop_at] if stop_at is not None else new,
                "stopped_at_eot": stop == "eot",
                "stop": stop,
                "max_new_tokens": caps[i],
            }
        bar.update(len(chunk))
    bar.close()
    return [results[(i, s)] for i in range(len(prompts)) for s in range(g.num_samples)]


def prompt_ids(
    examples: list[dict], tokenizer, fmt: ChatFormat, model_config, g: GenerateConfig, path: Path
) -> list[list[int]]:
    """Token ids of each example's prompt in format `fmt` (`chat_format.encode_prompt`); a prompt that fills the
    model's whole context (no room for a single new token) is a DataError naming the file, the example and the fix."""
    limit = models.context_length(model_config)
    out = []
    for ex in examples:
        ids = encode_prompt(tokenizer, data.prompt_messages(ex), fmt)
        if limit is not None and len(ids) >= limit:
            raise data.DataError(
                path,
                f"id {ex['id']}",
                f"prompt has {len(ids)} tokens, which leaves no room for a response in the model's context of {limit}",
                "shorten the prompt or use a model with a longer context",
            )
        out.append(ids)
    return out


def new_token_caps(prompts: list[list[int]], model_config, g: GenerateConfig) -> list[int]:
    """Most new tokens per prompt: `g.max_new_tokens`, or what is left of the model's context after the prompt when
    that is less. LIMA sec. 3's 2,048 is the LLaMa context, so the paper's prompt + response never exceeds it; the
    cap is recorded on every generated row (`max_new_tokens`)."""
    limit = models.context_length(model_config)
    return [g.max_new_tokens if limit is None else min(g.max_new_tokens, limit - len(p)) for p in prompts]


def resolve_backend(g: GenerateConfig) -> str:
    """`torch` or `vllm` for generate.backend: `auto` is vLLM when a CUDA GPU is present and vLLM imports."""
    if g.backend == "torch" or (g.backend == "auto" and not torch.cuda.is_available()):
        return "torch"
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        if g.backend == "auto":
            return "torch"
        raise ImportError(
            "generate.backend is 'vllm' but vLLM cannot be imported: `pip install vllm` (needs a "
            "CUDA GPU), or set generate.backend: torch"
        ) from e
    return "vllm"


def sampling_record(g: GenerateConfig) -> dict:
    """How responses are sampled under `g`, for the stage records (generate manifest, selection.json)."""
    backend = resolve_backend(g)
    sampler = {"sampler": resolve_sampler(g)} if backend == "torch" else {}
    return {
        "backend": backend,
        "decoding": decoding(g.temperature, g.top_p),
        "repetition_penalty_scope": REPETITION_PENALTY_SCOPE[backend],
        **sampler,
    }
