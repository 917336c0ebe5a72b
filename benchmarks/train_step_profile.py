"""Where a demo training step goes, and the effect of the knobs that keep its math identical.

    python benchmarks/train_step_profile.py                 # chunk sizes and AdamW variants, alternated
    python benchmarks/train_step_profile.py --chunks 128 256 --rounds 3

One process: the packaged Gemma 3 270M, the demo's first step (8 examples, packed as in the demo profile).
Variants alternate round by round so machine load hits all of them alike; the table reports each variant's
median time relative to the first. Peak memory per variant is not separable in one process: see
train_vs_trl.py for peaks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lima_repro import batching, data, models  # noqa: E402
from lima_repro.chat_format import ChatFormat  # noqa: E402
from lima_repro.config import load_config  # noqa: E402
from lima_repro.loss import CausalLMLoss  # noqa: E402
from lima_repro.train import encode_examples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, nargs="+", default=[256, 128, 512], help="loss_chunk_size variants")
    ap.add_argument("--rounds", type=int, default=2)
    opts = ap.parse_args()
    cfg = load_config("demo")
    t = cfg.train
    torch.manual_seed(t.seed)
    model, tok, _ = models.load_base(cfg.model)
    model.train()
    train_set, _ = encode_examples(data.read_examples("demo:train.jsonl"), tok, ChatFormat.of(cfg.model), t.max_length)
    order = batching.epoch_order(len(train_set), t.seed, 0)
    batch = [train_set[i] for i in batching.step_examples(order, 0, t.batch_size)]
    mbs = batching.micro_batches(batch, t.micro_batch_size, tok.pad_token_id, True, t.max_length * t.micro_batch_size)
    n_loss = batching.count_loss_tokens(batch)
    print(f"step: {len(batch)} examples, {sum(len(e['input_ids']) for e in batch)} tokens in {len(mbs)} packed rows")

    def fwd_bwd(chunk: int) -> float:
        lm = CausalLMLoss(model, chunk)
        for mb in mbs:
            loss, _ = lm(**mb)
            (loss / n_loss).backward()
        return float(loss)

    params = [p for p in model.parameters()]
    optimizers = {
        name: torch.optim.AdamW(params, lr=1e-12, betas=(t.beta1, t.beta2), weight_decay=0.0, **kw)
        for name, kw in (
            ("adamw for-loop (CPU default)", {"foreach": False}),
            ("adamw foreach", {"foreach": True}),
            ("adamw fused", {"fused": True}),
        )
    }
    times: dict[str, list[float]] = {}
    fwd_bwd(t.loss_chunk_size)  # warm-up: first-touch allocations
    for opt in optimizers.values():
        opt.step()  # allocates the states
    for r in range(opts.rounds):
        for chunk in opts.chunks if r % 2 == 0 else opts.chunks[::-1]:
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fwd_bwd(chunk)
            times.setdefault(f"forward+backward, loss_chunk_size={chunk}", []).append(time.perf_counter() - t0)
        for name, opt in list(optimizers.items()) if r % 2 == 0 else list(optimizers.items())[::-1]:
            t0 = time.perf_counter()
            opt.step()
            times.setdefault(f"optimizer step, {name}", []).append(time.perf_counter() - t0)
    print(f"threads {torch.get_num_threads()}; {time.strftime('%Y-%m-%d')}")
    groups: dict[str, float] = {}
    for name, ts in times.items():
        kind = name.split(",")[0]
        med = statistics.median(ts)
        groups.setdefault(kind, med)
        print(f"{name:>55}: median {med:7.2f} s, ratio to first {med / groups[kind]:.3f}")


if __name__ == "__main__":
    main()
