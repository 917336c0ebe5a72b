"""`python -m lima_repro plan --profile NAME`: what each stage of a profile needs on GPUs, before anyone rents them.

Per stage: processes/GPUs, parameters, memory per GPU and tokens to process, and a wall time from a stated model
FLOPs utilisation (MFU). Every number is arithmetic on the model's shapes and the resolved config:

- Parameters: the model built on PyTorch's `meta` device from its config (no memory, exact count), plus LIMA's EOT
  row (input embedding, and output head when untied). The config comes from a local folder (`AutoConfig`), or, for
  hub ids that cannot be reached here, from `KNOWN_MODELS` (the published shapes of the paper's LLaMa 7B/65B, of
  the `lima-1k` base models and of `lima-1k-llama2`'s Llama-2-7B).
- Training state under FSDP full shard over W processes, as `train.py` keeps it: the weights are loaded in fp32
  and are the optimizer's own copy (no separate master weights; bf16 is autocast), fp32 gradients, AdamW's two
  fp32 moments: 4 + 4 + 8 = 16 bytes per parameter, divided by W. Plus the bf16 copies FSDP gathers to compute:
  two decoder layers (the one running and the one prefetched) and the embedding and head.
- Activations per micro-batch of `micro_batch_size x max_length` tokens, in bf16, per decoder layer and token:
  without checkpointing the tensors backward keeps, 2 * (6h + 2*kv + 4i) bytes (norm inputs and outputs, q/k/v,
  attention output, the MLP's gate, up, activation and product; FlashAttention/SDPA keep no s x s matrix) plus h
  bytes of residual-dropout masks; with activation checkpointing only each layer's input (2h bytes) plus one
  layer's full set during recomputation. The fused loss adds `loss_chunk_size x vocab` fp32 logits (x2) and the
  head's fp32 gradient accumulator (vocab x h x 4).
- Generation: bf16 weights split over the tensor-parallel GPUs, and the KV cache of `generate.batch_size` sequences
  of prompt + cap tokens (at most the context): 2 (k, v) * layers * kv_heads * head_dim * 2 bytes per token.
- Time: 6N FLOPs per trained token, 2N per generated token, divided by GPUs x peak bf16 FLOP/s x MFU. Decoding is
  bound by memory bandwidth, so its utilisation is far below training's (`--gen-mfu`, default 0.10).
Token counts are ceilings: every training example counted at `train.max_length`, every response at the full cap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, Qwen2Config

from . import data, models
from .config import Config
from .config.base import ConfigError
from .plan_judge import format_judge_plan, judge_plan, judged_prompts
from .vllm_backend import tensor_parallel_size

GB = 1e9
H100_BF16_TFLOPS = 989.0  # NVIDIA H100/H200 SXM datasheet: ~989 TFLOP/s dense bf16 (1,979 with sparsity)
USABLE = 0.90  # share of GPU memory a plan may fill (CUDA context, allocator fragmentation take the rest)
PAPER_TRAIN_EXAMPLES = 1000  # LIMA sec. 2: 1,000 training examples
PAPER_TEST_PROMPTS = 300  # LIMA sec. 4: 300 test prompts
PAPER_DEV_PROMPTS = 50  # LIMA sec. 2: 50 development prompts
# the model shapes benchmarks/gpu_perf_check.py measures (benchmarks/mfu.py), by published parameter count
PERF_MODELS = {"llama-1b": 1_235_814_400, "gemma-270m": 268_098_176}  # Llama-3.2-1B, Gemma 3 270M
KNOWN_PROMPT_SETS = {"alpaca_eval.json": 805, "question.jsonl": 80}  # AlpacaEval's prompts; MT-Bench's questions

_LLAMA1 = dict(vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False)
_LLAMA_7B = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
)
KNOWN_MODELS = {  # published config.json shapes of models the hub may not serve here
    "huggyllama/llama-7b": lambda: LlamaConfig(**_LLAMA_7B, **_LLAMA1),
    # the lima-1k-llama2 profile's base (docs/paper.md sec. 6): LLaMa 7B's shape, twice the context
    "meta-llama/Llama-2-7b-hf": lambda: LlamaConfig(
        **_LLAMA_7B, **{**_LLAMA1, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
    ),
    "huggyllama/llama-65b": lambda: LlamaConfig(
        hidden_size=8192,
        intermediate_size=22016,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=64,
        **_LLAMA1,
    ),
    "Qwen/Qwen2.5-7B": lambda: Qwen2Config(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    ),
    "meta-llama/Llama-3.1-8B": lambda: LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    ),
}


@dataclass
class Shapes:
    params: int  # with the EOT row
    layer_params: int
    edge_params: int  # embedding + head + final norm (what is not in a decoder layer)
    hidden: int
    intermediate: int
    layers: int
    kv_dim: int  # kv_heads * head_dim
    vocab: int
    context: int | None


def model_config(name: str):
    """The model's transformers config: a local folder (or the packaged model), else `KNOWN_MODELS`, else the hub."""
    if Path(name).expanduser().exists() or name == models.PACKAGED_GEMMA:
        return AutoConfig.from_pretrained(models.resolve(name))
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]()
    try:
        return AutoConfig.from_pretrained(name)
    except OSError as e:
        raise ConfigError(
            f"model.name {name!r}: no local folder, not among the built-in shapes "
            f"({', '.join(KNOWN_MODELS)}) and the hub did not answer; point model.name at a folder "
            "holding the model's config.json"
        ) from e


def shapes(config) -> Shapes:
    """Parameter counts from the model built on the meta device, and the sizes the memory formulas use."""
    text = config.get_text_config()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for p in model.base_model.layers[0].parameters())
    tied = model.get_output_embeddings() is None or getattr(text, "tie_word_embeddings", False)
    hidden = text.hidden_size
    head_dim = getattr(text, "head_dim", None) or hidden // text.num_attention_heads
    kv = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    eot_rows = hidden * (1 if tied else 2)  # LIMA sec. 3: one new token (models.add_eot_token)
    return Shapes(
        params=total + eot_rows,
        layer_params=layer,
        edge_params=total + eot_rows - layer * text.num_hidden_layers,
        hidden=hidden,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        kv_dim=kv * head_dim,
        vocab=text.vocab_size + 1,
        context=models.context_length(text),
    )


def train_memory(s: Shapes, world: int, micro_tokens: int, checkpointing: bool, loss_chunk: int) -> dict[str, float]:
    """Bytes per GPU of one training process under FSDP full shard over `world` processes (module docstring)."""
    per_token_layer = 2 * (6 * s.hidden + 2 * s.kv_dim + 4 * s.intermediate) + s.hidden
    if checkpointing:
        acts = micro_tokens * (s.layers * 2 * s.hidden + per_token_layer)
    else:
        acts = micro_tokens * s.layers * per_token_layer
    return {
        "weights_fp32": 4 * s.params / world,
        "grads_fp32": 4 * s.params / world,
        "adamw_fp32": 8 * s.params / world,
        "gathered_bf16": 2 * (2 * s.layer_params + s.edge_params),
        "activations": acts,
        "loss_head": 2 * 4 * loss_chunk * s.vocab + 4 * s.vocab * s.hidden,
    }


def generate_memory(s: Shapes, tp: int, batch: int, seq_len: int) -> dict[str, float]:
    """Bytes per GPU for bf16 inference split over `tp` GPUs with `batch` sequences of `seq_len` tokens cached."""
    return {"weights_bf16": 2 * s.params / tp, "kv_cache": 2 * s.layers * s.kv_dim * 2 * batch * seq_len / tp}


def fewest_gpus(bytes_at, gpu_bytes: float, most: int = 4096) -> int | None:
    """The smallest power-of-two GPU count whose per-GPU bytes fit in the usable share of one GPU."""
    n = 1
    while n <= most:
        if sum(bytes_at(n).values()) <= USABLE * gpu_bytes:
            return n
        n *= 2
    return None


def _rows_in(spec: str | None, default: int) -> int:
    """Examples in a local file (the real count when the user's file is there), else the published count."""
    if spec and not data.is_hub(spec) and data.resolve_path(spec).is_file():
        return len(data.read_examples(spec, ends_with=None))
    return KNOWN_PROMPT_SETS.get(Path(spec or "").name, default)


def prompts_spec(cfg: Config) -> str | None:
    """The test prompts' file (or hub id) the generate stage answers."""
    return cfg.generate.prompts_file or (cfg.curate.test_files or [None])[0]


def read_perf(path: str | Path, params: int) -> tuple[float, str]:
    """(MFU, which line) from `benchmarks/gpu_perf_check.py`'s perf.jsonl: the best kept variant's MFU (`best_mfu` of a
    `variants:<model>` line) of the measured model closest in parameter count to `params`."""
    try:
        lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"plan --perf {path}: not a readable perf.jsonl ({e}); give gpu_perf_check.py's --out/perf.jsonl"
        ) from e
    phases = {f"variants:{m}": m for m in PERF_MODELS}
    found = {phases[x["phase"]]: x for x in lines if x.get("phase") in phases and x.get("best_mfu")}
    if not found:
        raise ConfigError(
            f"plan --perf {path}: no variants line with a best_mfu for {', '.join(PERF_MODELS)}; "
            "rerun benchmarks/gpu_perf_check.py on a GPU, or give --mfu"
        )
    name = min(found, key=lambda m: abs(math.log(PERF_MODELS[m] / params)))
    x = found[name]
    return x["best_mfu"], f"{path} line variants:{name} (best {x.get('best')}, kept {x.get('kept')})"


@dataclass
class Hardware:
    gpus: int = 8
    gpu_memory_gb: float = 80.0
    mfu: float = 0.40
    gen_mfu: float = 0.10
    peak_tflops: float = H100_BF16_TFLOPS
    checkpointing: bool = True  # the shipped FSDP configs (configs/accelerate/fsdp*.yaml) checkpoint every layer


def _hours(flops: float, gpus: int, peak_tflops: float, mfu: float) -> float:
    return flops / (gpus * peak_tflops * 1e12 * mfu) / 3600


def plan(cfg: Config, hw: Hardware) -> list[dict]:
    """One row per stage that needs GPUs: what it needs and how long it takes on `hw`."""
    config = model_config(cfg.model.name)
    s = shapes(config)
    t, g, gpu_bytes = cfg.train, cfg.generate, hw.gpu_memory_gb * GB
    examples = cfg.curate.select_n or _rows_in((cfg.curate.train_files or [None])[0], PAPER_TRAIN_EXAMPLES)
    prompts = min(_rows_in(prompts_spec(cfg), PAPER_TEST_PROMPTS), g.max_prompts or 10**9)
    dev = _rows_in((cfg.curate.dev_files or [None])[0], PAPER_DEV_PROMPTS)
    micro_tokens = t.micro_batch_size * t.max_length
    # cached tokens per sequence: a prompt (at most train.max_length, as trained) + the cap, never past the context
    seq = min(s.context or 10**9, t.max_length + g.max_new_tokens)

    def train_row(name: str, n_examples: int, repeats: int = 1) -> dict:
        at = lambda w: train_memory(s, w, micro_tokens, hw.checkpointing, t.loss_chunk_size)  # noqa: E731
        need = fewest_gpus(at, gpu_bytes)
        use = max(hw.gpus, need or hw.gpus)  # FSDP shards over every process
        tokens = repeats * n_examples * t.epochs * t.max_length
        other = train_memory(s, use, micro_tokens, not hw.checkpointing, t.loss_chunk_size)["activations"]
        return {
            "stage": name,
            "gpus_needed": need,
            "gpus_used": use,
            "memory": at(use),
            "tokens": tokens,
            "flops": 6 * s.params * tokens,
            "mfu": hw.mfu,
            "note": f"activations {'without' if hw.checkpointing else 'with'} checkpointing {other / GB:.1f}",
        }

    def gen_row(name: str, sequences: int, repeats: int = 1) -> dict:
        at = lambda n: generate_memory(s, n, g.batch_size, seq)  # noqa: E731
        need = fewest_gpus(at, gpu_bytes)
        tp = max(need or 1, tensor_parallel_size(g, config, hw.gpus))  # what the vLLM backend would split over
        tokens = repeats * sequences * g.max_new_tokens
        return {
            "stage": name,
            "gpus_needed": need,
            "gpus_used": max(hw.gpus, tp),
            "memory": at(tp),
            "tokens": tokens,
            "flops": 2 * s.params * tokens,
            "mfu": hw.gen_mfu,
        }

    rows = []
    if "02_train" in cfg.notebooks:
        rows.append(train_row("train", examples))
    if g.checkpoints == "selected":
        lo, hi = cfg.judge.selection_window
        rows.append(gen_row(f"select (epochs {lo}-{hi} on dev)", (hi - lo + 1) * dev))
    if "03_generate" in cfg.notebooks:
        tuned = len(g.checkpoints) if isinstance(g.checkpoints, list) else t.epochs if g.checkpoints == "all" else 1
        answered = prompts + (dev if g.dev_responses else 0)  # dev_responses: every target answers the dev set too
        rows.append(gen_row("generate", ((1 if g.include_base else 0) + tuned) * answered * g.num_samples))
    if "05_ablations" in cfg.notebooks:
        a = cfg.ablations
        chosen = a.only or list(a.conditions)
        n = len(chosen)  # each condition trains on its own size `x` (Fig. 6: 2K..32K), else ablations.n_examples
        rows.append(train_row(f"ablation train (x{n})", sum(a.conditions[c].get("x") or a.n_examples for c in chosen)))
        rows.append(gen_row(f"ablation generate (x{n})", prompts * a.num_samples, n))
    for r in rows:
        r["hours"] = _hours(r["flops"], r["gpus_used"], hw.peak_tflops, r["mfu"])
    return [
        {"params": s.params, "context": s.context, "examples": examples, "test_prompts": prompts, **r} for r in rows
    ]


def format_plan(cfg: Config, hw: Hardware, rows: list[dict], mfu_from: str | None = None) -> str:
    """The plan as a readable table: one block per stage; `mfu_from` says where the training MFU was read."""
    head = rows[0] if rows else {}
    lines = [
        f"plan for profile {cfg.profile}: model {cfg.model.name}, {head.get('params', 0) / 1e9:.2f}B parameters "
        f"(with EOT), context {head.get('context')}",
        f"hardware: {hw.gpus} GPU(s) x {hw.gpu_memory_gb:g} GB, peak {hw.peak_tflops:g} TFLOP/s bf16, MFU "
        f"train {hw.mfu:g} / generate {hw.gen_mfu:g}; training: FSDP full shard, activation checkpointing "
        f"{'on' if hw.checkpointing else 'off'}; {USABLE:.0%} of GPU memory usable",
        f"{'stage':30} {'GPUs needed':>16} {'GPUs used':>9} {'GB/GPU':>7} {'tokens':>14} {'hours':>8}  "
        "memory per GPU (GB)",
    ]
    for r in rows:
        parts = ", ".join([f"{k} {v / GB:.1f}" for k, v in r["memory"].items()] + ([r["note"]] if "note" in r else []))
        need = "none fit" if r["gpus_needed"] is None else str(r["gpus_needed"])
        nodes = f" ({math.ceil(r['gpus_needed'] / 8)} nodes)" if r["gpus_needed"] and r["gpus_needed"] > 8 else ""
        lines.append(
            f"{r['stage']:30} {need + nodes:>16} {r['gpus_used']:>9} {sum(r['memory'].values()) / GB:>7.1f} "
            f"{r['tokens']:>14,} {r['hours']:>8.2f}  {parts}"
        )
    lines.append(
        "GPUs needed: fewest (power of two) that fit; used: --gpus, or more when too few (train: FSDP "
        "world size; generate: memory at the tensor-parallel size, time over all GPUs used)"
    )
    lines.append(
        "tokens are ceilings (examples x epochs x train.max_length; responses at the full cap); "
        "hours = FLOPs (6N/token train, 2N generate) / (GPUs used x peak x MFU)"
    )
    if mfu_from:
        lines.append(f"training MFU {hw.mfu:g} measured: {mfu_from}")
    return "\n".join(lines)


def run_plan(cfg: Config, hw: Hardware, perf: str | None = None) -> str:
    """The CLI verb: the formatted plan of `cfg` on `hw` (its training MFU from `perf`, a perf.jsonl, when given),
    and the judge stage's requests, tokens and dollars when the profile runs it."""
    mfu_from = None
    if perf:
        mfu, mfu_from = read_perf(perf, shapes(model_config(cfg.model.name)).params)
        hw = replace(hw, mfu=mfu)
    rows = plan(cfg, hw)
    text = format_plan(cfg, hw, rows, mfu_from)
    if "04_judge" not in cfg.notebooks:
        return text
    count = rows[0]["test_prompts"] if rows else PAPER_TEST_PROMPTS
    prompts = judged_prompts(cfg, prompts_spec(cfg), count)[: cfg.generate.max_prompts]
    return "\n".join([text, *format_judge_plan(cfg.judge, judge_plan(cfg, prompts))])
