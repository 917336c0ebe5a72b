"""The demo's training step under its speed levers: precision (fp32 / bf16 autocast) x embeddings (all trained /
frozen but the new EOT row, `train.freeze_embeddings`). Same model, data, step order and optimizer on every side.

    python benchmarks/demo_step.py                 # 4 variants, 2 rounds, 4 timed steps each
    python benchmarks/demo_step.py --rounds 3 --steps 6

Each variant runs in a fresh process (accelerate fixes the precision once per process), variants alternate round
by round so machine load hits all alike, and the table gives each one's median step time relative to fp32 with
every weight trained, with the CPU's bf16 units (`amx_bf16`, `avx512_bf16`) printed: on an AVX2-only CPU bf16
matmuls are emulated and far slower. Losses are printed so the variants can be seen to train the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]


def worker(precision: str, freeze: bool, steps: int) -> None:
    from accelerate import Accelerator

    from lima_repro import batching, data, models
    from lima_repro.chat_format import ChatFormat
    from lima_repro.config import load_config
    from lima_repro.dropout import add_residual_dropout
    from lima_repro.train import encode_examples, prepare_training, train_step
    from lima_repro.train_state import TrainState

    cfg = load_config("demo", overrides={"train.precision": precision, "train.freeze_embeddings": freeze})
    t = cfg.train
    acc = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no")
    model, tok, eot_id = models.load_base(cfg.model)
    add_residual_dropout(model, t.residual_dropout)
    examples = data.read_many(cfg.curate.train_files)
    train_set, _ = encode_examples(examples, tok, ChatFormat.of(cfg.model), t.max_length)
    per_epoch = batching.steps_per_epoch(len(train_set), t.batch_size)
    lm, opt, sch = prepare_training(acc, model, t, steps + 1, [eot_id] if freeze else None)
    state = TrainState(acc, lm, opt, sch, t, train_set, tok.pad_token_id, per_epoch, steps + 1)
    times, losses = [], []
    for _ in range(steps + 1):  # step 0 warms up
        t0 = time.perf_counter()
        row = train_step(state)
        times.append(time.perf_counter() - t0)
        losses.append(round(row["loss"], 5))
    print(json.dumps({"times": times[1:], "losses": losses}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--worker", nargs=2, metavar=("PRECISION", "FREEZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1] == "1", args.steps)
        return
    from lima_repro.models import cpu_flags

    print(f"CPU bf16 units: {sorted(cpu_flags() & {'amx_bf16', 'avx512_bf16'}) or 'none (AVX2-only: bf16 emulated)'}")
    times: dict[tuple, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for precision, freeze in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, "--steps", str(args.steps), "--worker", precision, str(int(freeze))],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            times[(precision, freeze)] += res["times"]
            print(
                f"round {r + 1} {precision} frozen={freeze}: s/step {[round(x, 2) for x in res['times']]} "
                f"losses {res['losses']}",
                flush=True,
            )
    ref = statistics.median(times[VARIANTS[0]])
    print("\n| precision | embeddings | median s/step | speedup vs fp32, all trained |\n|---|---|---|---|")
    for (precision, freeze), ts in times.items():
        med = statistics.median(ts)
        print(f"| {precision} | {'frozen but EOT' if freeze else 'all trained'} | {med:.2f} | {ref / med:.2f}x |")


if __name__ == "__main__":
    main()
