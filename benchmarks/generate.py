"""lima_repro's samplers (`sampling.sample`, dynamic and static) vs `model.generate`: on left-padded batches, and per
prompt.

    python benchmarks/generate.py                        # demo settings: every demo test prompt, 300 new tokens
    python benchmarks/generate.py --prompts 16 --max-new-tokens 64 --rounds 3
    python benchmarks/generate.py --device cuda --random-init DIR --prompts 64 --batch-size 64 --max-new-tokens 256

Same model (the packaged Gemma 3 270M with LIMA's EOT token, fp32 on a CPU), same prompts (the demo test prompts in the
LIMA format), same sampling (LIMA sec. 3: top-p 0.9, temperature 0.7, repetition penalty 1.2 on generated
tokens only, stop at EOT or EOS, `--max-new-tokens`). The two alternate in one process, A B then B A, with the
same seed per round. Samples differ between the two (they consume random numbers differently), so throughput
is generated tokens per second (each sequence's new tokens, its stop token included). On a GPU (`--device cuda`)
both run in bf16 (`--precision auto`); `--random-init DIR` builds the model from DIR's config.json with random
weights and DIR's tokenizer, for machines without the packaged GGUF (throughput only: such a model rarely stops
early, so nearly every sequence runs to `--max-new-tokens` on both sides).

The strong baseline, `batched generate`, is what a researcher who knows transformers writes: `model.generate` on
left-padded batches of `--batch-size` prompts, batched in the same length-sorted order lima_repro uses, with the
same stop tokens, top-p, temperature and the same generated-tokens-only repetition penalty as a logits processor
(with left padding every prompt ends at the same column, so "generated" starts there for the whole batch). The
last line is machine-readable: `speedup_vs_batched=<x>` (the dynamic sampler over batched generate),
`static_vs_batched=<x>` (the static-cache sampler, `generate.sampler: static`; on `--device cuda` also
`static_compiled_vs_batched=<x>`: its one-token step under torch.compile(mode="reduce-overhead"), CUDA graphs, the
compile paid in the warm-up) and `speedup=<x>` (the dynamic sampler over the per-prompt loop).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from lima_repro import data, models  # noqa: E402
from lima_repro.chat_format import ChatFormat, encode_prompt  # noqa: E402
from lima_repro.config import load_config  # noqa: E402
from lima_repro.sampling import GeneratedRepetitionPenalty, sample  # noqa: E402
from lima_repro.static_decode import decode_static  # noqa: E402


def plain_loop(model, tokenizer, eot_id, prompts, g) -> int:
    """What a researcher writes first: one `generate` call per prompt. Returns generated tokens."""
    stops = [eot_id, tokenizer.eos_token_id]
    n = 0
    for p in prompts:
        out = model.generate(
            input_ids=torch.tensor([p], device=model.device),
            attention_mask=torch.ones(1, len(p), dtype=torch.long, device=model.device),
            do_sample=True,
            top_p=g.top_p,
            top_k=0,
            temperature=g.temperature,
            max_new_tokens=g.max_new_tokens,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            repetition_penalty=None,
            logits_processor=[GeneratedRepetitionPenalty(g.repetition_penalty, len(p))],
        )
        n += out.shape[1] - len(p)
    return n


def batched_generate(model, tokenizer, eot_id, prompts, g) -> int:
    """`model.generate` on left-padded batches (same length-sorted batches as lima_repro). Returns generated tokens,
    each sequence counted up to and including its stop token."""
    stops = [eot_id, tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_id
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    n = 0
    for start in range(0, len(order), g.batch_size):
        batch = [prompts[i] for i in order[start : start + g.batch_size]]
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_p=g.top_p,
            top_k=0,
            temperature=g.temperature,
            max_new_tokens=g.max_new_tokens,
            eos_token_id=stops,
            pad_token_id=pad,
            repetition_penalty=None,
            logits_processor=[GeneratedRepetitionPenalty(g.repetition_penalty, width)],
        )
        for row in out[:, width:].tolist():
            stop_at = next((k for k, t in enumerate(row) if t in stops), None)
            n += len(row) if stop_at is None else stop_at + 1
    return n


def with_sampler(sampler: str):
    """`sampling.sample` with generate.sampler `sampler`. Returns generated tokens, stop tokens included."""

    def side(model, tokenizer, eot_id, prompts, g) -> int:
        rows = sample(model, tokenizer, eot_id, prompts, dataclasses.replace(g, sampler=sampler), progress=False)
        return sum(len(r["ids"]) + (r["stop"] != "max_new_tokens") for r in rows)

    return side


lima, lima_static = with_sampler("dynamic"), with_sampler("static")


def static_compiled(options: dict):
    """`decode_static` with its one-token step under `torch.compile(**options)`, on length-sorted batches as
    `sample` makes them (no config field turns compile on yet: the GPU check decides)."""

    def side(model, tokenizer, eot_id, prompts, g) -> int:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_id
        stops, order = models.stop_ids(tokenizer, eot_id), sorted(prompts, key=len, reverse=True)
        batches = [order[i : i + g.batch_size] for i in range(0, len(order), g.batch_size)]
        return sum(len(row) for b in batches for row in decode_static(model, b, pad, stops, g, compile_options=options))

    return side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cfg = load_config("demo")
    g = cfg.generate
    ap.add_argument(
        "--prompts",
        type=int,
        default=g.max_prompts,
        help="first N demo test prompts, cycled when N exceeds the number there (default: the demo profile's "
        "generate.max_prompts; every test prompt when that is null)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=g.max_new_tokens)
    ap.add_argument("--batch-size", type=int, default=g.batch_size)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 on cuda")
    ap.add_argument("--random-init", metavar="DIR", help="random weights from DIR's config.json, DIR's tokenizer")
    ap.add_argument("--no-loop", action="store_true", help="leave out the per-prompt loop (slow on a GPU)")
    opts = ap.parse_args()
    g.max_new_tokens, g.batch_size, g.num_samples = opts.max_new_tokens, opts.batch_size, 1
    bf16 = opts.precision == "bf16" or (opts.precision == "auto" and opts.device == "cuda")
    dtype = torch.bfloat16 if bf16 else torch.float32
    if opts.random_init:
        tokenizer = AutoTokenizer.from_pretrained(opts.random_init)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(opts.random_init), dtype=dtype)
        eot_id = models.add_eot_token(model, tokenizer, cfg.model.eot_token, cfg.model.eot_init)
    else:
        model, tokenizer, eot_id = models.load_base(cfg.model, dtype)
    model.to(opts.device).eval()
    examples = data.read_examples("demo:test.jsonl", ends_with="user")
    if opts.prompts is not None:  # the demo profile's max_prompts is null: every prompt
        examples = [examples[i % len(examples)] for i in range(opts.prompts)]
    prompts = [encode_prompt(tokenizer, data.prompt_messages(ex), ChatFormat.of(cfg.model)) for ex in examples]
    sides = {
        "plain generate loop": plain_loop,
        "batched generate": batched_generate,
        "lima_repro sample": lima,
        "static sampler": lima_static,
    }
    if opts.device == "cuda":  # inductor on a CPU takes minutes
        sides["static sampler compiled"] = static_compiled({"mode": "reduce-overhead"})
    if opts.no_loop:
        del sides["plain generate loop"]
    totals = {name: [0, 0.0] for name in sides}
    with torch.no_grad():
        # warm-up (kernels, allocator, cuBLAS handles): 4 new tokens each on a CPU; on a GPU the whole length, as
        # a 4-token warm-up left batched generate's first round 2.7x slower than its later ones on an H200
        warm = g.__class__(
            max_new_tokens=g.max_new_tokens if opts.device == "cuda" else 4, batch_size=g.batch_size, num_samples=1
        )
        for side in sides.values():
            side(model, tokenizer, eot_id, prompts[: g.batch_size], warm)
        for r in range(opts.rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                torch.manual_seed(r)
                t0 = time.perf_counter()
                n = sides[name](model, tokenizer, eot_id, prompts, g)
                dt = time.perf_counter() - t0
                totals[name][0] += n
                totals[name][1] += dt
                print(f"round {r + 1} {name:>23}: {n} tokens in {dt:.1f} s = {n / dt:.1f} tok/s", flush=True)
    cpus = f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    where = torch.cuda.get_device_name() if opts.device == "cuda" else cpus
    print(
        f"\nmachine: {platform.machine()}, {where}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}; "
        f"{dtype}; {'random weights' if opts.random_init else 'packaged weights'}; "
        f"{len(prompts)} prompts x {g.max_new_tokens} new tokens, batch {g.batch_size}"
    )
    rate = {name: n / dt for name, (n, dt) in totals.items()}
    vs = {name: rate[name] / rate["batched generate"] for name in sides}
    for name in sides:
        print(
            f"{name:>23}: {rate[name]:.2f} generated tok/s, {totals[name][1]:.1f} s over {opts.rounds} rounds, "
            f"x{vs[name]:.3f} batched generate"
        )
    loop = "" if opts.no_loop else f" speedup={rate['lima_repro sample'] / rate['plain generate loop']:.3f}"
    compiled = "static sampler compiled"
    compiled = f" static_compiled_vs_batched={vs[compiled]:.3f}" if compiled in vs else ""
    print(
        f"speedup_vs_batched={vs['lima_repro sample']:.3f} static_vs_batched={vs['static sampler']:.3f}{compiled}"
        f"{loop} tokens_per_s={rate['lima_repro sample']:.1f} batched_tokens_per_s={rate['batched generate']:.1f}"
    )


if __name__ == "__main__":
    main()
