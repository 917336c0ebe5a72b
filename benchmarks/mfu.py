"""Model FLOPs utilisation (MFU) of lima_repro's training step, against the bf16 matmul rate measured in the same run.

    python benchmarks/mfu.py --model both --steps 10            # GPU: bf16 autocast, packed 2,048-token rows
    python benchmarks/mfu.py --model gemma-270m --attn sdpa --compile false --gradient-checkpointing
    python benchmarks/mfu.py --device cpu --tiny --check-flops  # CPU smoke run: tiny configs, fp32, seconds

Models are random-initialised from configs (no downloads): `llama-1b` has the Llama-3.2-1B shape (hidden 2048, 16
layers, 32 heads, 8 KV heads, MLP 8192, vocab 128256, rope theta 500000 with llama3 scaling, tied embeddings);
`gemma-270m` is Gemma 3 270M (hidden 640, 18 layers, 4 heads, 1 KV head, head_dim 256, MLP 2048, vocab 262144, tied,
a 512-token sliding window on five of every six layers, full attention on layers 6, 12 and 18). Data: synthetic
examples of random ids, lengths from a seeded log-normal (median 600, clipped to 64..2048), loss on the second half
of each (a prompt/response split), packed by `batching.pack_rows` into 2,048-token rows (per-example position ids,
no mask). Each step is lima_repro's own `train.prepare_training` + `train.train_step`: CausalLMLoss with the fused
chunked head, fused AdamW, accelerate's bf16 autocast over fp32 weights, LIMA's residual dropout.

MFU = achieved model FLOP/s / peak; peak = the best of three timed runs of 8192^3 bf16 matmuls in this process (PaLM
appendix B's MFU, but against the measured rather than the datasheet rate). Model FLOPs of one step, forward +
backward = 3 x forward, real tokens only (packed rows have no padding):
      6 * N * T          N = matmul weights of the decoder layers (q, k, v, o, MLP; norms left out), T = tokens
    + 6 * V * d * T_loss output head V x d, counted once though tied to the input embedding (a lookup, no matmul),
                         on the T_loss loss-carrying positions only: all that lima_repro's fused head computes
    + 12 * H * head_dim * sum over layers and examples of P(L, w)
                         attention: QK^T and AV, 2 FLOPs each per query-key pair and head dim, x3; P(L, w) =
                         sum_i min(i + 1, w) = the query-key pairs of one example of length L under its causal mask,
                         L(L+1)/2, or capped at w keys per query on Gemma's sliding-window layers.
Not counted: gradient-checkpointing recomputation (MFU excludes it), and what a kernel spends on masked-out blocks
(SDPA with the packed rows' block-diagonal mask computes whole rows; FlashAttention's varlen kernel does not).
The last lines are machine-readable: `model=<name> mfu=<x> tflops=<y> peak_tflops=<z> tokens_per_s=<t>`.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lima_repro import batching  # noqa: E402
from lima_repro.chat_format import IGNORE  # noqa: E402
from lima_repro.config import TrainConfig  # noqa: E402
from lima_repro.dropout import add_residual_dropout, decoder_layers  # noqa: E402
from lima_repro.loss import CausalLMLoss  # noqa: E402

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
GEMMA3_ROPE = {
    "full_attention": {"rope_type": "default", "rope_theta": 1e6},
    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
}


def model_config(name: str, tiny: bool = False):
    """transformers config of `llama-1b` or `gemma-270m`; `tiny`: same architecture, 2 layers of hidden 64."""
    from transformers import Gemma3TextConfig, LlamaConfig

    if name == "llama-1b":
        d, n, h, kv, mlp, vocab = (64, 2, 4, 2, 256, 1024) if tiny else (2048, 16, 32, 8, 8192, 128256)
        return LlamaConfig(
            hidden_size=d,
            num_hidden_layers=n,
            num_attention_heads=h,
            num_key_value_heads=kv,
            intermediate_size=mlp,
            vocab_size=vocab,
            rope_parameters=dict(LLAMA3_ROPE),
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        )
    if name == "gemma-270m":
        n, d, hd, mlp, vocab, window = (2, 64, 16, 128, 1024, 64) if tiny else (18, 640, 256, 2048, 262144, 512)
        # as the packaged model's config.json: 5 local layers, then 1 global (tiny: 1 and 1)
        types = [
            "full_attention" if (i + 1) % 6 == 0 or (tiny and i == n - 1) else "sliding_attention" for i in range(n)
        ]
        return Gemma3TextConfig(
            hidden_size=d,
            num_hidden_layers=n,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=hd,
            query_pre_attn_scalar=hd,
            intermediate_size=mlp,
            vocab_size=vocab,
            sliding_window=window,
            layer_types=types,
            rope_parameters=dict(GEMMA3_ROPE),
            max_position_embeddings=32768,
            final_logit_softcapping=None,
            tie_word_embeddings=True,
        )
    raise ValueError(f"unknown model {name!r}")


def flop_spec(lm) -> dict:
    """What the FLOP formula needs of a causal LM: decoder matmul weights, head size, heads, per-layer windows."""
    c = lm.config
    types = getattr(c, "layer_types", None) or ["full_attention"] * c.num_hidden_layers
    return {
        "body_params": sum(p.numel() for p in decoder_layers(lm).parameters() if p.ndim >= 2),
        "head_params": lm.get_output_embeddings().weight.numel(),
        "heads": c.num_attention_heads,
        "head_dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        "windows": [c.sliding_window if t == "sliding_attention" else None for t in types],
    }


def attended_pairs(length: int, window: int | None = None) -> int:
    """Query-key pairs of causal attention over `length` tokens, a query seeing at most `window` keys (itself too)."""
    if window is None or window >= length:
        return length * (length + 1) // 2
    return window * (window + 1) // 2 + (length - window) * window


def step_flops(spec: dict, examples: list[dict]) -> dict:
    """Model FLOPs (forward + backward) of one optimizer step over `examples`, by part: see the module docstring."""
    lengths = [len(e["input_ids"]) for e in examples]
    tokens, loss_tokens = sum(lengths), batching.count_loss_tokens(examples)
    pairs = sum(attended_pairs(n, w) for n in lengths for w in spec["windows"])
    parts = {
        "body": 6 * spec["body_params"] * tokens,
        "head": 6 * spec["head_params"] * loss_tokens,
        "attention": 12 * spec["heads"] * spec["head_dim"] * pairs,
    }
    return {**parts, "total": sum(parts.values()), "tokens": tokens, "loss_tokens": loss_tokens}


def make_example(length: int, vocab: int, gen: torch.Generator) -> dict:
    ids = torch.randint(0, vocab, (length,), generator=gen).tolist()
    return {"input_ids": ids, "labels": [IGNORE] * (length // 2) + ids[length // 2 :]}  # loss on the second half


def synthetic_examples(n: int, capacity: int, vocab: int, seed: int = 0) -> list[dict]:
    """`n` examples, lengths log-normal with median 0.3 x capacity (600 of 2048), clipped to capacity/32..capacity."""
    gen = torch.Generator().manual_seed(seed)
    lengths = ((torch.randn(n, generator=gen) * 0.8).exp() * 0.3 * capacity).clamp(capacity // 32, capacity)
    return [make_example(int(x), vocab, gen) for x in lengths.tolist()]


def counter_check(lm, rows: list[list[dict]], spec: dict, chunk: int = 256) -> tuple[int, int]:
    """torch's FlopCounterMode over one fp32 forward+backward of packed `rows` through CausalLMLoss (eager attention),
    and the formula's prediction of that count, which differs from the model FLOPs in two known ways: eager attention
    multiplies each row's full R x R scores whatever the mask (12 * R^2 * H * head_dim per layer instead of the
    per-example causal pairs), and the fused head's in-place `grad_w.addmm_` (its fp32 path) is not in torch's FLOP
    registry (4, not 6, x V x d per loss token). Anything else the counter sees is outside the formula (with torch
    2.13 and transformers 5.23 there is nothing else: the two are equal)."""
    from torch.utils.flop_counter import FlopCounterMode

    assert lm.config._attn_implementation == "eager", "counter_check needs attn_implementation='eager'"
    loss_model = CausalLMLoss(lm, chunk)
    with FlopCounterMode(display=False) as counter:
        for row in rows:
            loss, _ = loss_model(**{k: v.to(lm.device) for k, v in batching.packed_batch(row).items()})
            loss.backward()
    f = step_flops(spec, [e for r in rows for e in r])
    per_row = 12 * spec["heads"] * spec["head_dim"] * len(spec["windows"])
    dense = sum(per_row * sum(len(e["input_ids"]) for e in r) ** 2 for r in rows)
    return counter.get_total_flops(), f["body"] + f["head"] * 4 // 6 + dense


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int, reps: int) -> float:
    """Best of 3 timed runs (after one warm-up run) of `reps` n x n x n matmuls, in TFLOP/s."""
    a, b, c = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(3))
    rates = []
    for _ in range(4):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=c)
        sync(device)
        rates.append(2 * n**3 * reps / (time.perf_counter() - t0) / 1e12)
    return max(rates[1:])


def run_model(name: str, opts, acc, peak: float) -> dict:
    from transformers import AutoModelForCausalLM

    from lima_repro.train import compile_decoder, prepare_training, train_step
    from lima_repro.train_state import TrainState

    cap, dev, total = opts.seq_len, opts.device, opts.warmup + opts.steps
    cfg = model_config(name, opts.tiny)
    t = TrainConfig(
        batch_size=opts.batch_size,
        max_length=cap,
        packing=True,
        max_steps=total,
        save_state=False,
        gradient_checkpointing=opts.gradient_checkpointing,
        residual_dropout=opts.residual_dropout,
        compile=opts.compile if opts.compile == "auto" else opts.compile == "true",
        max_grad_norm=None,
    )
    examples = synthetic_examples(t.batch_size * total, cap, cfg.vocab_size, seed=1)
    order = batching.epoch_order(len(examples), t.seed, 0)  # what train_step takes: one epoch of `total` steps
    steps = [[examples[i] for i in batching.step_examples(order, s, t.batch_size)] for s in range(total)]
    torch.manual_seed(t.seed)
    if opts.check_flops:
        lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).to(dev)
        got, want = counter_check(lm, batching.pack_rows(steps[0], cap), flop_spec(lm), t.loss_chunk_size)
        print(
            f"[{name}] FLOP check, step 1 (fp32, eager): FlopCounterMode {got:.6e}, the formula's prediction of it "
            f"{want:.6e}, ratio {got / want:.6f}",
            flush=True,
        )
        del lm
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation=opts.attn, dtype=torch.float32)
    if t.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    add_residual_dropout(lm, t.residual_dropout)
    spec = flop_spec(lm)
    flops = [step_flops(spec, b) for b in steps[opts.warmup :]]  # host work done before the clock starts
    rows = sum(len(batching.pack_rows(b, cap)) for b in steps[opts.warmup :])
    compiled = compile_decoder(lm, t.compile, torch.device(dev))  # as run_train: after dropout, before prepare
    loss_model, optimizer, scheduler = prepare_training(acc, lm, t, total)
    state = TrainState(acc, loss_model, optimizer, scheduler, t, examples, 0, per_epoch=total, total=total)
    loss_model.train()
    print(
        f"[{name}] {sum(p.numel() for p in lm.parameters()) / 1e6:.1f}M params (decoder matmuls "
        f"{spec['body_params'] / 1e6:.1f}M, head {spec['head_params'] / 1e6:.1f}M), attention "
        f"{lm.config._attn_implementation}, compiled {compiled}, mixed precision {acc.mixed_precision}, "
        f"gradient checkpointing {t.gradient_checkpointing}, {t.batch_size} examples a step",
        flush=True,
    )
    for s in range(total):
        if s == opts.warmup:
            sync(dev)
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        w0 = time.perf_counter()
        row = train_step(state)
        if s < opts.warmup:
            sync(dev)
            print(f"  warm-up step {s + 1}: {time.perf_counter() - w0:.2f} s, loss {row['loss']:.3f}", flush=True)
        else:  # FLOPs were counted on the examples train_step took
            f = flops[s - opts.warmup]
            assert (row["tokens"], row["loss_tokens"]) == (f["tokens"], f["loss_tokens"])
    sync(dev)
    seconds = time.perf_counter() - t0
    tot = {k: sum(f[k] for f in flops) for k in flops[0]}
    tflops = tot["total"] / seconds / 1e12
    mem = (
        f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated"
        if dev == "cuda"
        else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB process RSS"
    )
    print(
        f"  timed: {opts.steps} steps in {seconds:.2f} s, {tot['tokens'] / opts.steps:,.0f} tokens a step in "
        f"{rows / opts.steps:.1f} rows of {cap} (fill {tot['tokens'] / (rows * cap):.1%}), last loss "
        f"{row['loss']:.3f}; {tot['tokens'] / seconds:,.0f} tokens/s\n  model FLOPs a step "
        f"{tot['total'] / opts.steps:.3e} ("
        + ", ".join(f"{k} {tot[k] / tot['total']:.1%}" for k in ("body", "head", "attention"))
        + f"): {tflops:.4g} TFLOP/s of {peak:.4g} measured, MFU {tflops / peak:.1%}; peak memory {mem}",
        flush=True,
    )
    del loss_model, optimizer, scheduler, lm
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return {
        "model": name,
        "mfu": tflops / peak,
        "tflops": tflops,
        "peak_tflops": peak,
        "tokens_per_s": tot["tokens"] / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["llama-1b", "gemma-270m", "both"], default="both")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="2-layer, hidden-64, vocab-1024 configs and 256-token rows")
    ap.add_argument("--steps", type=int, help="timed optimizer steps (default 10; tiny 2)")
    ap.add_argument("--warmup", type=int, help="untimed steps before them, compilation included (default 3; tiny 1)")
    ap.add_argument("--batch-size", type=int, default=32, help="examples per optimizer step (LIMA: 32)")
    ap.add_argument("--seq-len", type=int, help="packed row capacity (default 2048; tiny 256)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 on cuda")
    ap.add_argument(
        "--compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="torch.compile the decoder body (auto: on cuda only)",
    )
    ap.add_argument(
        "--attn",
        choices=["auto", "sdpa", "flash_attention_2", "eager"],
        default="auto",
        help="auto: flash_attention_2 on cuda when flash_attn is installed, else sdpa",
    )
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--residual-dropout", type=float, default=TrainConfig.residual_dropout)
    ap.add_argument("--matmul-size", type=int, help="n of the n^3 peak-rate matmuls (default 8192; tiny 512)")
    ap.add_argument("--check-flops", action="store_true", help="first compare the formula with FlopCounterMode")
    opts = ap.parse_args()
    opts.steps = opts.steps or (2 if opts.tiny else 10)
    opts.warmup = opts.warmup if opts.warmup is not None else (1 if opts.tiny else 3)
    opts.seq_len = opts.seq_len or (256 if opts.tiny else 2048)
    if opts.attn == "auto":
        flash = opts.device == "cuda" and importlib.util.find_spec("flash_attn") is not None
        opts.attn = "flash_attention_2" if flash else "sdpa"
    precision = opts.precision if opts.precision != "auto" else ("bf16" if opts.device == "cuda" else "fp32")
    from accelerate import Accelerator

    acc = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=opts.device == "cpu")
    assert acc.num_processes == 1, "run as one process: FLOPs and tokens are counted for the whole step"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = opts.matmul_size or (512 if opts.tiny else 8192)
    peak = matmul_peak(opts.device, dtype, n, reps=50 if opts.device == "cuda" else 3)
    where = torch.cuda.get_device_name() if opts.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"{where}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}\n"
        f"peak {precision} matmul ({n}^3): {peak:.4g} TFLOP/s",
        flush=True,
    )
    results = [
        run_model(m, opts, acc, peak) for m in (["llama-1b", "gemma-270m"] if opts.model == "both" else [opts.model])
    ]
    for r in results:
        print(
            f"model={r['model']} mfu={r['mfu']:.4f} tflops={r['tflops']:.4g} peak_tflops={r['peak_tflops']:.4g} "
            f"tokens_per_s={r['tokens_per_s']:.0f}"
        )


if __name__ == "__main__":
    main()
