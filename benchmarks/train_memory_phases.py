"""Where a training step's peak memory (RSS) sits on a CPU: the high-water mark within each phase of `train_step`.

    python benchmarks/train_memory_phases.py                                   # 3 steps, as train_vs_trl.py
    MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/train_memory_phases.py     # glibc's fixed mmap threshold

The packaged Gemma 3 270M + EOT, bf16 autocast (fp32 where the CPU has no bf16 units), every embedding row trained,
4 examples a step packed into rows of at most 512 tokens: the lima_repro side of benchmarks/train_vs_trl.py. The
process's RSS high-water mark (VmHWM) is reset through /proc/self/clear_refs at each phase boundary, so each line
gives the RSS when the phase ended and the highest RSS inside it: the fused head's forward (per packed row), the
row's backward, the optimizer step. Linux only (needs /proc/self/clear_refs).

glibc raises its mmap threshold (up to 32 MB) whenever a large block is freed, after which blocks below it come
from the heap, which keeps freed memory resident; `MALLOC_MMAP_THRESHOLD_` (read at process start) fixes the
threshold so that freed large blocks go back to the system at once, at the cost of page faults on every new one.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from accelerate import Accelerator  # noqa: E402

import lima_repro.loss as loss_module  # noqa: E402
from lima_repro import batching, data, models  # noqa: E402
from lima_repro.chat_format import ChatFormat  # noqa: E402
from lima_repro.config import load_config  # noqa: E402
from lima_repro.train import encode_examples, prepare_training, train_step  # noqa: E402
from lima_repro.train_state import TrainState  # noqa: E402


def status(field: str) -> float:
    """A /proc/self/status memory field in GiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 2**20


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--chunk", type=int, help="train.loss_chunk_size (default: the demo's)")
    opts = ap.parse_args()
    overrides = {"train.freeze_embeddings": False, "train.batch_size": 4, "train.max_length": 512}
    if opts.chunk:
        overrides["train.loss_chunk_size"] = opts.chunk
    cfg = load_config("demo", overrides=overrides)
    t = cfg.train
    precision = models.resolve_precision(t.precision)
    acc = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=True)
    model, tok, _ = models.load_base(cfg.model)
    train_set, _ = encode_examples(data.read_many(cfg.curate.train_files), tok, ChatFormat.of(cfg.model), t.max_length)
    per_epoch = batching.steps_per_epoch(len(train_set), t.batch_size)
    loss_model, optimizer, scheduler = prepare_training(acc, model, t, opts.steps)
    state = TrainState(acc, loss_model, optimizer, scheduler, t, train_set, tok.pad_token_id, per_epoch, opts.steps)
    log: list[tuple[str, float, float]] = []

    def mark(name: str) -> None:
        log.append((name, status("VmRSS"), status("VmHWM")))
        reset_peak()

    head, step, backward = loss_module.fused_linear_cross_entropy, type(optimizer).step, acc.backward

    def head_timed(*a, **k):
        mark("forward up to the head")
        out = head(*a, **k)
        mark("fused head (forward)")
        return out

    def step_timed(self, *a, **k):
        mark("clip + before optimizer")
        out = step(self, *a, **k)
        mark("optimizer step")
        return out

    def backward_timed(*a, **k):
        out = backward(*a, **k)
        mark("backward")
        return out

    loss_module.fused_linear_cross_entropy, type(optimizer).step, acc.backward = head_timed, step_timed, backward_timed
    print(
        f"precision {precision}, chunk {t.loss_chunk_size}, MALLOC_MMAP_THRESHOLD_="
        f"{os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}; GiB: RSS at the phase's end, highest RSS inside it"
    )
    worst = 0.0
    for s in range(opts.steps):
        reset_peak()
        train_step(state)
        mark("rest of the step")
        print(f"step {s + 1}")
        for name, rss, peak in log:
            print(f"  {name:24s} {rss:6.2f} {peak:6.2f}")
        if s:  # the first step allocates AdamW's moments part-way
            worst = max([worst] + [peak for _, _, peak in log])
        log.clear()
    print(f"peak_gib={worst:.2f} (steps 2..{opts.steps})")


if __name__ == "__main__":
    main()
