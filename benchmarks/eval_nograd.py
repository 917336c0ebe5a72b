"""Held-out evaluation: the loss-only path under `torch.no_grad` vs the training path it replaced.

    python benchmarks/eval_nograd.py                 # the demo model on the demo dev set, 2 rounds
    python benchmarks/eval_nograd.py --rounds 3 --examples 8

`train.evaluate_perplexity` runs under `torch.no_grad`, where `loss.fused_linear_cross_entropy` takes its loss-only
path: logits one chunk at a time, no gradient buffers. Before that path existed, evaluation went through the fused
training function (`_FusedLinearCE`), which computes the gradient of the hidden states and of the 262K x 640 output
head in its forward pass even when nobody asks for them. This benchmark runs both on the same model, examples and
precision, each side in a fresh process (its own peak RSS, reset after loading), sides alternated, and checks that
both give the same perplexity. Last line: `speedup=<x> memory_ratio=<y> ppl_diff=<z>` (loss-only over the old path).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rss import reset_peak, status_kb  # noqa: E402  (benchmarks/rss.py: run as a script, its folder is on sys.path)


def worker(conn, side: str, n_examples: int) -> None:
    import torch
    from accelerate import Accelerator

    from lima_repro import data, loss, models
    from lima_repro.chat_format import ChatFormat
    from lima_repro.config import load_config
    from lima_repro.train import encode_examples, evaluate_perplexity

    cfg = load_config("demo")
    precision = models.resolve_precision(cfg.train.precision)
    model, tokenizer, _ = models.load_base(cfg.model)
    examples, _ = encode_examples(
        data.read_examples("demo:dev.jsonl"), tokenizer, ChatFormat.of(cfg.model), cfg.train.max_length
    )
    examples = examples[:n_examples]
    loss_model = loss.CausalLMLoss(model, chunk_size=cfg.train.loss_chunk_size)
    if side == "training path":  # what evaluation did before the loss-only path: the fused training function

        def fused(
            h, weight, targets, bias=None, chunk_size=256, softcap=None, grad_scale=None, row_ids=None, rows=None
        ):
            return loss._FusedLinearCE.apply(h, weight, bias, targets, chunk_size, softcap, None, True, row_ids, rows)

        loss.fused_linear_cross_entropy = fused
    acc = Accelerator(cpu=True, mixed_precision="bf16" if precision == "bf16" else "no")
    evaluate_perplexity(loss_model, examples[:1], tokenizer.pad_token_id, 4, acc.autocast)  # warm-up
    reset = reset_peak()
    t0 = time.perf_counter()
    ev = evaluate_perplexity(loss_model, examples, tokenizer.pad_token_id, cfg.train.micro_batch_size, acc.autocast)
    conn.send(
        {
            "seconds": time.perf_counter() - t0,
            "peak_kb": status_kb("VmHWM"),
            "reset": reset,
            "perplexity": ev["perplexity"],
            "tokens": ev["eval_tokens"],
            "precision": precision,
            "threads": torch.get_num_threads(),
        }
    )


def run(side: str, n: int) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=worker, args=(child, side, n))
    proc.start()
    res = parent.recv()
    proc.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--examples", type=int, default=8, help="demo dev examples evaluated (the dev set has 8)")
    opts = ap.parse_args()
    sides = ["training path", "loss-only"]
    out: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(opts.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            res = run(side, opts.examples)
            out[side].append(res)
            print(
                f"round {r + 1} {side:>13}: {res['tokens']} tokens in {res['seconds']:.2f} s, peak RSS "
                f"{res['peak_kb'] / 2**20:.2f} GB, perplexity {res['perplexity']:.5f}",
                flush=True,
            )
    first = out["loss-only"][0]
    print(
        f"\nprecision {first['precision']}, torch threads {first['threads']}; peak = RSS high-water mark "
        + ("during evaluation (reset after loading)" if first["reset"] else "of the whole process")
    )
    secs = {s: sum(x["seconds"] for x in v) for s, v in out.items()}
    peak = {s: max(x["peak_kb"] for x in v) for s, v in out.items()}
    diff = max(abs(a["perplexity"] - b["perplexity"]) for a in out["loss-only"] for b in out["training path"])
    print(
        f"speedup={secs['training path'] / secs['loss-only']:.3f} "
        f"memory_ratio={peak['loss-only'] / peak['training path']:.3f} ppl_diff={diff:.2e}"
    )


if __name__ == "__main__":
    main()
