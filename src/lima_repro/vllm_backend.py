"""Sampling with vLLM instead of lima_repro's torch sampler (`generate.backend: vllm`, or `auto` on a GPU with vLLM).

The same as `sampling.sample`, so `generate.generate_rows` writes the same generations.jsonl columns with the same meaning:
the prompt token ids (built by `sampling.prompt_ids`, so the chat format is identical); LIMA sec. 3's recipe
(top-p 0.9, temperature 0.7, at most `max_new_tokens` new tokens, stop at EOT or EOS), or greedy decoding at
temperature 0 (vLLM's own greedy); `num_samples` samples per prompt; what is counted (`response_tokens` = the
tokens before the stop token, `stopped_at_eot` = that stop token was the format's end of turn); and the response
text, decoded by our own tokenizer rather than taken from vLLM.

What differs:
- Repetition penalty scope. LIMA penalises (1.2) only the tokens generated so far; vLLM's `repetition_penalty` also
  penalises every token of the prompt, and has no output-only switch. Doing it exactly would take a custom logits
  processor, an interface vLLM's docs mark as still changing and that differs between its two model runners, so
  this backend uses vLLM's penalty, logs a warning, and the generate stage records
  `repetition_penalty_scope: prompt+generated` (torch backend: `generated`) in its manifest.
- Random numbers: every request is seeded from `generate.seed` (reruns repeat), but they are not the torch
  backend's random numbers, so the samples differ.
- Greedy decoding: vLLM refuses several samples of one greedy request, so each prompt is decoded once and its answer
  repeated for every sample (greedy gives the same answer every time).
- vLLM loads models from folders: the base model, whose EOT token `models.load_base` adds in memory, is first saved
  to a temporary folder beside the output.
- Several GPUs: one model is split across `generate.tensor_parallel_size` GPUs by vLLM's tensor parallelism
  (default: the largest power of two of the visible GPUs that divides the attention heads: 8 for LLaMa 65B).
- One engine per checkpoint, each in a spawned process of its own that exits when it has sampled: the only way to get
  all of vLLM's GPU memory back before the next checkpoint's engine starts. The engine is sized to the work:
  `max_model_len` = the longest prompt + its new-token cap, `gpu_memory_utilization` from the config (vLLM's 0.9),
  bf16 weights where `generate.precision` resolves to bf16.
- The model's generation_config.json is not read (`generation_config="vllm"`): vLLM would otherwise take its
  `max_new_tokens` (512, a default saved for `pipeline` users) as a hard cap on every request.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

from . import models
from .chat_format import ChatFormat
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


def sampling_params(g: GenerateConfig, stops: list[int], seed: int, max_tokens: int) -> dict:
    """vLLM SamplingParams' arguments for LIMA sec. 3's recipe (see the module docstring for the penalty's scope);
    `max_tokens` is the prompt's cap (`sampling.new_token_caps`). Temperature 0 is vLLM's greedy: one sample, top_p 1
    (older vLLM versions refuse anything else with it)."""
    greedy = g.temperature == 0
    return dict(
        n=1 if greedy else g.num_samples,
        top_p=1.0 if greedy else g.top_p,
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
    drop it, finish_reason "stop" with stop_reason = the token id (None for the model's own EOS) tells which; with
    one stop token (vicuna: EOS ends the turn) any "stop" is the end of turn."""
    ids = list(token_ids)
    if ids and ids[-1] in stops:
        return ids[:-1], ids[-1] == eot_id
    return ids, finish_reason == "stop" and (stop_reason == eot_id or stops == [eot_id])


def _save_base(cfg: Config, folder: Path):
    """The base model with EOT added (`models.load_base`), saved as a folder vLLM can load. Returns its tokenizer."""
    model, tokenizer, _ = models.load_base(cfg.model, dtype=models.torch_dtype(cfg.generate.precision))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    return tokenizer


def run_engine(llm_args: dict, prompts: list[list[int]], params: list[dict]) -> list[list[tuple]]:
    """In the engine's own process: build vLLM's LLM, sample, and return per prompt, per sample (token ids,
    finish_reason, stop_reason) as plain values. The process then exits, which frees all of its GPU memory."""
    from vllm import LLM, SamplingParams

    llm = LLM(**llm_args)
    outputs = llm.generate(
        [{"prompt_token_ids": p} for p in prompts],  # a vllm.inputs.TokensPrompt
        [SamplingParams(**sp) for sp in params],
    )
    # LLM.generate returns outputs in the order of the prompts
    return [[(list(c.token_ids), c.finish_reason, c.stop_reason) for c in out.outputs] for out in outputs]


def in_own_process(fn, *args):
    """`fn(*args)` in a fresh (spawned) process: vLLM leaves CUDA state and memory behind that only the end of
    its process releases, and a forked child cannot use CUDA once the parent has touched it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def max_model_len(prompts: list[list[int]], caps: list[int]) -> int:
    """vLLM's `max_model_len`: the longest prompt + its new-token cap. Never past the model's context, since each
    cap is at most the context left after its prompt (`sampling.new_token_caps`), and no KV cache reserved for
    lengths no request reaches."""
    return max(len(p) + c for p, c in zip(prompts, caps))


def sample_with_vllm(
    cfg: Config, examples: list[dict], path: str | None, prompts_path: Path, scratch: Path
) -> tuple[object, list[list[int]], list[dict]]:
    """Sample responses to `examples` with one checkpoint (None = the base model), its vLLM engine in a process of
    its own (`run_engine`). Returns (tokenizer, prompt ids, results), the results in `sampling.sample`'s shape and
    order: per (prompt, sample) {"prompt_index", "sample", "ids", "stopped_at_eot", "stop", "max_new_tokens"}."""
    g, fmt = cfg.generate, ChatFormat.of(cfg.model)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".vllm-base-") as tmp:  # used for the base model only
        if path is None:
            folder = Path(tmp)
            tokenizer = _save_base(cfg, folder)
        else:
            folder = Path(path)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        eot_id = models.checkpoint_eot_id(tokenizer, path, fmt)
        model_config = AutoConfig.from_pretrained(folder)
        ids = prompt_ids(examples, tokenizer, fmt, model_config, g, prompts_path)
        caps = new_token_caps(ids, model_config, g)
        stops = models.stop_ids(tokenizer, eot_id)
        llm_args = {
            "model": str(folder),
            "tokenizer": str(folder),
            "dtype": "bfloat16" if models.resolve_precision(g.precision) == "bf16" else "float32",  # as torch's
            "seed": g.seed,
            "generation_config": "vllm",
            "trust_remote_code": cfg.model.trust_remote_code,
            "tensor_parallel_size": tensor_parallel_size(g, model_config, torch.cuda.device_count()),
            "max_model_len": max_model_len(ids, caps),
            "gpu_memory_utilization": g.gpu_memory_utilization,
        }
        params = [sampling_params(g, stops, request_seed(g.seed, i, g.num_samples), caps[i]) for i in range(len(ids))]
        outputs = in_own_process(run_engine, llm_args, ids, params)
    results = []
    for i, out in enumerate(outputs):
        out = out * g.num_samples if len(out) == 1 else out  # greedy: one answer, the same for every sample
        for s, (token_ids, finish_reason, stop_reason) in enumerate(out):
            new, at_eot = split_stop(token_ids, finish_reason, stop_reason, stops, eot_id)
            stop = "eot" if at_eot else "eos" if finish_reason == "stop" else "max_new_tokens"
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
