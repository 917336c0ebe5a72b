"""Sampling with vLLM instead of lima_repro's torch sampler (`generate.backend: vllm`, or `auto` on a GPU with vLLM).

The same as `sampling.sample`, so `generate.generate_rows` writes the same generations.jsonl columns with the same meaning:
the prompt token ids (built by `sampling.prompt_ids`, so the LIMA chat format is identical); LIMA sec. 3's recipe
(top-p 0.9, temperature 0.7, at most `max_new_tokens` new tokens, stop at EOT or EOS); `num_samples` samples per
prompt; what is counted (`response_tokens` = the tokens before the stop token, `stopped_at_eot` = that stop token
was EOT); and the response text, decoded by our own tokenizer rather than taken from vLLM.

What differs:
- Repetition penalty scope. LIMA penalises (1.2) only the tokens generated so far; vLLM's `repetition_penalty` also
  penalises every token of the prompt, and has no output-only switch. Doing it exactly would take a custom logits
  processor, an interface vLLM's docs mark as still changing and that differs between its two model runners, so
  this backend uses vLLM's penalty, logs a warning, and the generate stage records
  `repetition_penalty_scope: prompt+generated` (torch backend: `generated`) in its manifest.
- Random numbers: every request is seeded from `generate.seed` (reruns repeat), but they are not the torch
  backend's random numbers, so the samples differ.
- vLLM loads models from folders: the base model, whose EOT token `models.load_base` adds in memory, is first saved
  to a temporary folder beside the output.
- Several GPUs: one model is split across `generate.tensor_parallel_size` GPUs by vLLM's tensor parallelism
  (default: the largest power of two of the visible GPUs that divides the attention heads: 8 for LLaMa 65B).
- The model's generation_config.json is not read (`generation_config="vllm"`): vLLM would otherwise take its
  `max_new_tokens` (512, a default saved for `pipeline` users) as a hard cap on every request.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

from . import models
from .config import Config, GenerateConfig
from .sampling import new_token_caps, prompt_ids

log = logging.getLogger(__name__)


def warn_penalty_scope(g: GenerateConfig) -> None:
    if g.repetition_penalty != 1.0:
        log.warning(
            "generate.backend vllm: repetition_penalty %s also applies to prompt tokens (LIMA sec. 3: "
            "generated tokens only); recorded as repetition_penalty_scope=prompt+generated",
            g.repetition_penalty,
        )


def request_seed(seed: int, prompt_index: int, num_samples: int) -> int:
    """Seed of one prompt's request. vLLM seeds the k-th of its n samples with seed + k, so prompts are spaced
    `num_samples` apart: each (prompt, sample) gets its own random stream, the same one on every rerun."""
    return seed * 2**32 + prompt_index * num_samples


def sampling_params(SamplingParams, g: GenerateConfig, stops: list[int], seed: int, max_tokens: int):
    """vLLM SamplingParams for LIMA sec. 3's recipe (see the module docstring for the penalty's scope);
    `max_tokens` is the prompt's cap (`sampling.new_token_caps`)."""
    return SamplingParams(
        n=g.num_samples,
        top_p=g.top_p,
        temperature=g.temperature,
        repetition_penalty=g.repetition_penalty,
        max_tokens=max_tokens,
        stop_token_ids=stops,
        seed=seed,
    )


def tensor_parallel_size(g: GenerateConfig, model_config, gpus: int) -> int:
    """GPUs to split one model across: `g.tensor_parallel_size`, or the largest power of two up to `gpus` that
    divides the model's attention heads (vLLM needs heads % size == 0: Qwen2.5-7B's 28 heads take 4 of 8 GPUs)."""
    if g.tensor_parallel_size is not None:
        return g.tensor_parallel_size
    heads, size = getattr(model_config, "num_attention_heads", None) or 1, 1
    while size * 2 <= gpus and heads % (size * 2) == 0:
        size *= 2
    return size


def split_stop(
    token_ids, finish_reason: str | None, stop_reason, stops: list[int], eot_id: int
) -> tuple[list[int], bool]:
    """(response ids, stopped_at_eot) counted as the torch sampler counts them: the tokens before the stop token.
    vLLM (V1) keeps the stop token as the last of `token_ids` and leaves it out of the text only; should a version
    drop it, finish_reason "stop" with stop_reason = the token id (None for the model's own EOS) tells which."""
    ids = list(token_ids)
    if ids and ids[-1] in stops:
        return ids[:-1], ids[-1] == eot_id
    return ids, finish_reason == "stop" and stop_reason == eot_id


def _save_base(cfg: Config, folder: Path):
    """The base model with EOT added (`models.load_base`), saved as a folder vLLM can load. Returns its tokenizer."""
    model, tokenizer, _ = models.load_base(cfg.model, dtype=models.torch_dtype(cfg.generate.precision))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    return tokenizer


def _free_gpu() -> None:
    """After the LLM is dropped: vLLM's own cleanup (its maintainers' advice, vllm-project/vllm#23793)."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    gc.collect()
    cleanup_dist_env_and_memory()


def sample_with_vllm(
    cfg: Config, examples: list[dict], path: str | None, prompts_path: Path, scratch: Path
) -> tuple[object, list[list[int]], list[dict]]:
    """Sample responses to `examples` with one checkpoint (None = the base model). Returns (tokenizer, prompt ids,
    results), the results in `sampling.sample`'s shape and order: per (prompt, sample) {"prompt_index", "sample",
    "ids", "stopped_at_eot"}."""
    from vllm import LLM, SamplingParams

    g, eot = cfg.generate, cfg.model.eot_token
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".vllm-base-") as tmp:  # used for the base model only
        if path is None:
            folder = Path(tmp)
            tokenizer = _save_base(cfg, folder)
        else:
            folder = Path(path)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        eot_id = models.checkpoint_eot_id(tokenizer, path, eot)
        model_config = AutoConfig.from_pretrained(folder)
        ids = prompt_ids(examples, tokenizer, eot, model_config, g, prompts_path)
        caps = new_token_caps(ids, model_config, g)
        stops = models.stop_ids(tokenizer, eot_id)
        dtype = "bfloat16" if models.resolve_precision(g.precision) == "bf16" else "float32"  # as the torch backend
        llm = LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=dtype,
            seed=g.seed,
            generation_config="vllm",
            trust_remote_code=cfg.model.trust_remote_code,
            tensor_parallel_size=tensor_parallel_size(g, model_config, torch.cuda.device_count()),
        )
        try:
            outputs = llm.generate(
                [{"prompt_token_ids": p} for p in ids],  # a vllm.inputs.TokensPrompt
                [
                    sampling_params(SamplingParams, g, stops, request_seed(g.seed, i, g.num_samples), caps[i])
                    for i in range(len(ids))
                ],
            )
        finally:
            del llm
            _free_gpu()
    results = []
    for i, out in enumerate(outputs):  # LLM.generate returns outputs in the order of the prompts
        for s, c in enumerate(out.outputs):
            new, at_eot = split_stop(c.token_ids, c.finish_reason, c.stop_reason, stops, eot_id)
            stop = "eot" if at_eot else "eos" if c.finish_reason == "stop" else "max_new_tokens"
            results.append(
                {
                    "prompt_index": i,
                    "sample": s,
                    "ids": new,
                    "stopped_at_eot": at_eot,
                    "stop": stop,
                    "max_new_tokens": caps[i],
                }
            )
    return tokenizer, ids, results
