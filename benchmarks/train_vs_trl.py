"""lima_repro's trainer vs TRL's `SFTTrainer`: same model, data, order, batch, optimizer, schedule and loss tokens.

    pip install -e '.[bench]'                       # TRL
    python benchmarks/train_vs_trl.py               # demo model + demo data
    python benchmarks/train_vs_trl.py --rounds 4 --steps 2
    python benchmarks/train_vs_trl.py --precision fp32 --trl-mode padded   # the earlier (easier) baseline

Each phase is one side in a fresh spawned process (its peak RSS is its own; two resident workers did not fit
in RAM beside other jobs): setup, `--warmup` untimed steps, `--steps` timed steps, from the same init. Phases
alternate A B B A ... (`--rounds`) so machine load hits both sides alike. Identical on both sides:
- model: the packaged Gemma 3 270M with LIMA's EOT token (same init), fp32, dropout off, no gradient
  checkpointing (`--gradient-checkpointing` turns it on for both);
- data: the demo's training examples encoded by `chat_format.encode` (loss on assistant tokens and their EOT
  only), trimmed to the demo's max_length, in lima_repro's step order (TRL gets them in that order with a
  sequential sampler): `batch_size` examples per optimizer step, token-mean loss over the whole step;
- optimizer: AdamW (0.9, 0.95), weight decay 0.1 off norms and biases, no clipping (the norm is computed);
  lr decays linearly from `lr` to `lr_end` over the run with no warmup (TRL gets lima_repro's schedule
  function through `create_scheduler`).
- precision: `--precision auto` is bf16 autocast over fp32 weights on both sides on CPUs with bf16 units
  (AMX-BF16 / AVX512-BF16) and fp32 elsewhere (`models.resolve_precision`); all embedding rows train on both sides
  (the demo's `freeze_embeddings` is off here: TRL has no such lever).
TRL runs at its fastest correct setting by default (`--trl-mode padding_free`): its padding-free collator
concatenates each micro-batch into one row with `position_ids` restarting per example and no attention mask;
transformers derives block-diagonal attention from those `position_ids`, so no token attends across examples.
The benchmark checks that rather than trusting it: the first step's loss (identical weights on both sides) must
equal lima_repro's (which packs with an explicit block mask), otherwise the TRL setting is not correct and a
WARNING line says so. `--trl-mode padded` is
TRL's default padded collator. The benchmark prints the SFTConfig arguments it used.

Throughput counts real (non-padding) tokens. Memory is the worker's RSS high-water mark (VmHWM) during training,
reset after setup through /proc/self/clear_refs (falls back to the whole-process peak where that is refused).
The last line is machine-readable: `speedup=<x> spread=<lo>-<hi> memory_ratio=<y> loss_diff=<z>` (lima_repro
over TRL; the spread is the range of per-round ratios, round k pairing the k-th phase of each side).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rss import reset_peak, status_kb  # noqa: E402  (benchmarks/rss.py: run as a script, its folder is on sys.path)


def _setup(opts):
    """Model, encoded examples and the TrainConfig both sides use (the demo profile's, dropout off)."""
    import torch

    from lima_repro import batching, data, models
    from lima_repro.chat_format import ChatFormat
    from lima_repro.config import ModelConfig, load_config
    from lima_repro.train import encode_examples

    cfg = load_config("demo")
    t = cfg.train
    t.residual_dropout, t.max_grad_norm, t.gradient_checkpointing = 0.0, None, opts.gradient_checkpointing
    t.freeze_embeddings, t.new_rows_lr_multiplier = False, 1.0  # demo-only levers TRL does not have
    t.precision = models.resolve_precision(opts.precision)
    t.max_steps = opts.total_steps
    torch.manual_seed(t.seed)
    model, tokenizer, _ = models.load_base(ModelConfig(name=cfg.model.name))
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    train_set, _ = encode_examples(
        data.read_examples("demo:train.jsonl"), tokenizer, ChatFormat.of(cfg.model), t.max_length
    )
    per_epoch = batching.steps_per_epoch(len(train_set), t.batch_size)
    step_batches = []  # the examples of each optimizer step, in lima_repro's order
    for step in range(t.max_steps):
        epoch, in_epoch = divmod(step, per_epoch)
        order = batching.epoch_order(len(train_set), t.seed, epoch)
        step_batches.append([train_set[i] for i in batching.step_examples(order, in_epoch, t.batch_size)])
    return t, model, tokenizer, train_set, per_epoch, step_batches


def lima_worker(conn, opts) -> None:
    import torch
    from accelerate import Accelerator

    from lima_repro.train import prepare_training, train_step
    from lima_repro.train_state import TrainState

    t, model, tokenizer, train_set, per_epoch, _ = _setup(opts)
    # bf16 autocast as run_train sets it up (TRL gets bf16=True): without it this side ran fp32 under `auto`
    acc = Accelerator(cpu=True, mixed_precision="bf16" if t.precision == "bf16" else "no")
    loss_model, optimizer, scheduler = prepare_training(acc, model, t, t.max_steps)
    state = TrainState(
        acc, loss_model, optimizer, scheduler, t, train_set, tokenizer.pad_token_id, per_epoch, t.max_steps
    )
    loss_model.train()
    load_peak, reset = status_kb("VmHWM"), reset_peak()
    out = []
    for _ in range(t.max_steps):
        t0 = time.perf_counter()
        row = train_step(state)
        out.append(
            {
                "seconds": time.perf_counter() - t0,
                "loss": row["loss"],
                "lr": row["lr"],
                "real_tokens": row["tokens"],
                "processed_tokens": row["tokens"],
            }
        )
    conn.send(
        {
            "steps": out,
            "peak_kb": status_kb("VmHWM"),
            "load_peak_kb": load_peak,
            "peak_reset": reset,
            "threads": torch.get_num_threads(),
        }
    )


def trl_worker(conn, opts) -> None:
    import torch
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lima_repro.chat_format import IGNORE
    from lima_repro.train import lr_at

    t, model, tokenizer, _, _, steps = _setup(opts)
    rows = [
        {"input_ids": e["input_ids"], "completion_mask": [int(y != IGNORE) for y in e["labels"]]}
        for batch in steps
        for e in batch
    ]
    assert all(
        e["labels"] == [i if m else IGNORE for i, m in zip(e["input_ids"], r["completion_mask"])]
        for e, r in zip((e for b in steps for e in b), rows)
    )  # same loss tokens as lima_repro
    micro = {"padded": 0, "loss": 0.0}

    class LimaOrderSFT(SFTTrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)  # lima_repro's step order, already laid out

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer, lambda s: lr_at(s, num_training_steps, t.lr, t.lr_end, 0) / t.lr
                )
            return self.lr_scheduler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            assert num_items_in_batch is not None  # else TRL would average micro-batch means, not tokens of the step
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            micro["padded"] += inputs["input_ids"].numel()
            micro["loss"] += float(loss.detach())  # per micro-batch: its loss sum / the step's loss tokens
            return loss

    class Record(TrainerCallback):
        def __init__(self):
            self.out, self.t0 = [], None

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            i = state.global_step - 1
            self.out.append(
                {
                    "seconds": time.perf_counter() - self.t0,
                    "loss": micro["loss"],
                    "real_tokens": sum(len(e["input_ids"]) for e in steps[i]),
                    "processed_tokens": micro["padded"],
                    "lr": trainer.lr_scheduler.get_last_lr()[0],
                }
            )
            micro.update(padded=0, loss=0.0)
            self.t0 = time.perf_counter()

    trl_args = dict(
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.batch_size // t.micro_batch_size,
        max_steps=t.max_steps,
        learning_rate=t.lr,
        warmup_steps=0,
        adam_beta1=t.beta1,
        adam_beta2=t.beta2,
        weight_decay=t.weight_decay,
        max_grad_norm=1e30,  # no clipping, as LIMA; Trainer still computes the norm, as lima_repro does
        # padding-free: the rows are already cut to max_length by encode_examples (TRL asks for None then)
        max_length=None if opts.trl_mode == "padding_free" else t.max_length,
        completion_only_loss=True,
        gradient_checkpointing=t.gradient_checkpointing,
        use_cpu=True,
        bf16=t.precision == "bf16",
        fp16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=t.seed,
        dataloader_num_workers=0,
        padding_free=opts.trl_mode == "padding_free",
    )
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="trl_bench_"), **trl_args)
    trainer = LimaOrderSFT(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[record := Record()],
    )
    load_peak, reset = status_kb("VmHWM"), reset_peak()
    trainer.train()
    conn.send(
        {
            "steps": record.out,
            "peak_kb": status_kb("VmHWM"),
            "load_peak_kb": load_peak,
            "peak_reset": reset,
            "threads": torch.get_num_threads(),
            "trl_args": trl_args,
        }
    )


def run_worker(fn, conn, opts) -> None:
    """A phase's process: `fn`'s results, or its error, go back through `conn` (a worker that dies otherwise leaves
    the parent to find it dead)."""
    try:
        fn(conn, opts)
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise SystemExit(1) from None  # the parent prints the traceback once


def run_phase(fn, opts) -> dict:
    """One side in a fresh process: setup, `--warmup` untimed steps, `--steps` timed steps; its results. A worker that
    fails (an import error: `pip install -e '.[bench]'`; a crash; no answer within `--worker-timeout` seconds) ends
    the benchmark with its error instead of a wait that never returns."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_worker, args=(fn, child, opts))
    proc.start()
    child.close()  # the parent's copy: with it closed, a dead worker's pipe reads as ended
    deadline = time.monotonic() + opts.worker_timeout
    res = None
    while res is None and time.monotonic() < deadline:
        if parent.poll(1.0):
            try:
                res = parent.recv()
            except EOFError:  # died without a word (killed, out of memory, a crash in native code)
                break
        elif not proc.is_alive() and not parent.poll(0):
            break
    proc.join(timeout=30 if res is not None and "error" not in res else 5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    name = fn.__name__.removesuffix("_worker")
    if res is None:
        why = f"gave no result within {opts.worker_timeout:.0f} s" if proc.exitcode is None else "died"
        raise SystemExit(f"the {name} worker {why} (exit code {proc.exitcode}); its output is above")
    if "error" in res:
        hint = " (pip install -e '.[bench]' installs TRL and datasets)" if "ModuleNotFoundError" in res["error"] else ""
        tail = "\n".join(res["error"].rstrip().splitlines()[-12:])
        raise SystemExit(f"the {name} worker failed{hint}:\n{tail}")
    for i, row in enumerate(res["steps"]):
        row["timed"] = i >= opts.warmup
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="phases per side, run A B B A ... so drift cancels")
    ap.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps at the start of each phase")
    ap.add_argument("--steps", type=int, default=1, help="timed optimizer steps per phase")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on for both sides (TRL's own default)")
    ap.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="both sides; auto: bf16 on CPUs with bf16 units, else fp32",
    )
    ap.add_argument(
        "--trl-mode",
        choices=("padding_free", "padded"),
        default="padding_free",
        help="TRL's collator: padding-free (its fastest) or its default padded one",
    )
    ap.add_argument(
        "--worker-timeout", type=float, default=3600, help="seconds a phase may take before it counts as hung"
    )
    opts = ap.parse_args()
    opts.total_steps = opts.warmup + opts.steps
    sides = {"trl": trl_worker, "lima_repro": lima_worker}
    order = [n for r in range(opts.rounds) for n in (list(sides) if r % 2 == 0 else list(sides)[::-1])]
    phases = {n: [] for n in sides}
    for k, name in enumerate(order):
        res = run_phase(sides[name], opts)
        phases[name].append(res)
        print(
            f"phase {k + 1} {name:>10}: "
            + ", ".join(
                f"{r['real_tokens'] / r['seconds']:.0f} tok/s{'' if r['timed'] else ' (warm-up)'} loss {r['loss']:.5f}"
                for r in res["steps"]
            )
            + f"; peak RSS {res['peak_kb'] / 2**20:.2f} GB",
            flush=True,
        )
    info = {
        n: {
            "threads": p[0]["threads"],
            "peak_kb": max(x["peak_kb"] for x in p),
            "load_peak_kb": max(x["load_peak_kb"] for x in p),
            "peak_reset": all(x["peak_reset"] for x in p),
        }
        for n, p in phases.items()
    }
    steps = {n: [r for x in p for r in x["steps"]] for n, p in phases.items()}
    first = {n: p[0]["steps"] for n, p in phases.items()}
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{info['lima_repro']['threads']}; {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"{'':>12} {'real tok/s':>10} {'processed/real':>14} {'peak RSS GB':>11} {'load peak GB':>12} "
        f"{'final loss':>10}"
    )
    summary = {}
    for name in sides:
        timed = [r for r in steps[name] if r["timed"]]
        tps = sum(r["real_tokens"] for r in timed) / sum(r["seconds"] for r in timed)
        pad = sum(r["processed_tokens"] for r in timed) / sum(r["real_tokens"] for r in timed)
        summary[name] = (tps, info[name]["peak_kb"] / 2**20, steps[name][-1]["loss"])
        print(
            f"{name:>12} {tps:>10.1f} {pad:>14.2f} {summary[name][1]:>11.2f} "
            f"{info[name]['load_peak_kb'] / 2**20:>12.2f} {summary[name][2]:>10.5f}"
        )
    per_step = [abs(a["loss"] - b["loss"]) for a, b in zip(first["lima_repro"], first["trl"])]
    print("per-step |loss difference|: " + " ".join(f"{d:.2e}" for d in per_step))
    print(
        f"precision: {phases['trl'][0]['trl_args']['bf16'] and 'bf16 autocast' or 'fp32'}; TRL SFTConfig: "
        + ", ".join(f"{k}={v}" for k, v in phases["trl"][0]["trl_args"].items())
    )
    round_ratios = []
    for a, b in zip(phases["lima_repro"], phases["trl"]):
        ta, tb = ([r for r in x["steps"] if r["timed"]] for x in (a, b))
        rate = [sum(r["real_tokens"] for r in xs) / sum(r["seconds"] for r in xs) for xs in (ta, tb)]
        round_ratios.append(rate[0] / rate[1])
    print("per-round speedup: " + " ".join(f"{r:.2f}" for r in round_ratios))
    print(
        "peak = RSS high-water mark of the worker "
        + (
            "while training (reset after setup)"
            if all(i["peak_reset"] for i in info.values())
            else "process including model loading"
        )
    )
    (l_tps, l_mem, l_loss), (t_tps, t_mem, t_loss) = summary["lima_repro"], summary["trl"]
    diff = max(per_step + [abs(l_loss - t_loss)])
    # The first step's loss comes from identical weights, so any attention across packed examples shows there; later
    # steps add the two optimizers' rounding (fp32: ~1e-5 after one update; bf16 autocast: ~1e-2).
    tol = 1e-5 if phases["trl"][0]["trl_args"]["bf16"] is False else 2e-3
    if per_step[0] > tol:
        print(
            f"WARNING: first-step losses differ by {per_step[0]:.2e} (> {tol:g}) from identical weights: this TRL "
            "setting does not compute the same loss (e.g. attention across packed examples); not a fair comparison"
        )
    print(
        f"speedup={l_tps / t_tps:.3f} spread={min(round_ratios):.3f}-{max(round_ratios):.3f} "
        f"memory_ratio={l_mem / t_mem:.3f} loss_diff={diff:.2e}"
    )


if __name__ == "__main__":
    main()
