"""Fine-tuning with the LIMA recipe: `run_train(config) -> <run_dir>/train`.

LIMA sec. 3 (docs/paper.md sec. 2): plain next-token loss on the responses, a new EOT token, AdamW (0.9, 0.95,
weight decay 0.1), lr 1e-5 decaying linearly to 1e-6 without warmup, 32 examples per step, 2,048-token
texts, 15 epochs, residual dropout rising from 0 to 0.3 over the layers. Writes
`checkpoints/epoch-N` (plain `save_pretrained` folders), `metrics.jsonl` (train rows per step, eval rows
with held-out perplexity before training and per epoch; also sent to `train.report_to`'s trackers), `checkpoints.json`,
and, while the run is unfinished, `state/` for resuming it (deleted when training ends: it is the size of the model
and optimizer, ~3 GB for the 270M demo model).

Distributed: run the same entry point under `accelerate launch` (configs in `configs/accelerate/`).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from tqdm import tqdm  # text bars: they stream to the terminal and stay in saved notebooks

from . import batching, data, lora, models, packed_attention, sharded_rows, tracking
from .chat_format import ChatFormat, encode
from .config import Config
from .dropout import add_residual_dropout, dropout_seed
from .files import folder_written_whole, sha256_file, write_json
from .fixed_shapes import step_micro_batches
from .loss import CausalLMLoss
from .runs import RunDir, checkpoint_name
from .stage import Stage
from .train_state import TrainState, resume, save_state, write_checkpoint_index


def resolve_compile(option: bool | str, device: torch.device) -> str | None:
    """The torch.compile backend to use, or None. `auto` -> inductor on CUDA; on CPU compiling takes minutes
    that a short run never earns back."""
    if option == "auto":
        return "inductor" if device.type == "cuda" else None
    if isinstance(option, str):
        return option
    return "inductor" if option else None


def compile_decoder(model, option: bool | str, device: torch.device, per_layer: bool = False) -> str | None:
    """torch.compile the decoder body as one graph (dropout hooks included; the fused loss head stays eager), after
    residual dropout is added and before `prepare_training`. Returns the backend used, or None. `per_layer` (fixed
    shapes): each decoder layer compiled on its own static shapes instead, so one layer's graph serves them all
    (compile time of one layer, not of the whole decoder)."""
    backend = resolve_compile(option, device)
    layers = getattr(model.base_model, "layers", None)
    if backend and per_layer and isinstance(layers, torch.nn.ModuleList):
        for layer in layers:
            layer.compile(backend=backend, dynamic=False)
    elif backend:
        model.base_model.compile(backend=backend)
    return backend


def encode_examples(examples: list[dict], tokenizer, fmt: ChatFormat, max_length: int) -> tuple[list[dict], dict]:
    """Encode conversations; examples whose responses were trimmed away entirely are dropped and counted."""
    out, stats = [], {"examples": len(examples), "trimmed": 0, "dropped_no_loss_tokens": 0}
    for ex in examples:
        enc = encode(tokenizer, ex["messages"], fmt)
        if len(enc["input_ids"]) > max_length:
            stats["trimmed"] += 1
            enc = {k: v[:max_length] for k, v in enc.items()}
        if batching.count_loss_tokens([enc]) == 0:
            stats["dropped_no_loss_tokens"] += 1
            continue
        out.append({"id": ex["id"], **enc})
    return out, stats


def lr_at(step: int, total_steps: int, lr: float, lr_end: float, warmup: int) -> float:
    """Linear warmup (none in LIMA) then linear decay from lr at the first step to lr_end at the last."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(total_steps - 1 - warmup, 1)
    return lr + (lr_end - lr) * min(step - warmup, span) / span


@torch.no_grad()
def evaluate_perplexity(loss_model, examples: list[dict], pad_id: int, micro_batch_size: int, autocast) -> dict:
    """Token-weighted mean loss on held-out examples and its exponential (perplexity)."""
    was_training = loss_model.training
    loss_model.eval()
    total, n, device = 0.0, 0, next(loss_model.parameters()).device
    for mb in batching.micro_batches(examples, micro_batch_size, pad_id, packing=False, capacity=0):
        with autocast():
            loss, k = loss_model(**batching.to_device(mb, device))
        total, n = total + float(loss), n + k
    sharded_rows.reshard(loss_model)  # FSDP2: no backward follows, so the root's gathered parameters would stay whole
    loss_model.train(was_training)
    mean = total / max(n, 1)
    return {"eval_loss": mean, "perplexity": math.exp(min(mean, 50.0)), "eval_tokens": n}


def _input_files(cfg: Config, run: RunDir) -> tuple[Path, Path | None]:
    train_file, eval_file = run.train_file(cfg), run.eval_file(cfg)
    if not train_file.exists():
        raise FileNotFoundError(
            f"{train_file} not found: run the curate stage first (01_curate) or set train.train_file"
        )
    if not cfg.train.train_file and run.datacard.exists():
        expected = run.read_datacard()["files"].get(train_file.name, {}).get("sha256")
        if expected and expected != sha256_file(train_file):
            raise data.DataError(
                train_file,
                None,
                f"changed since the curate stage wrote it (sha256 differs from {run.datacard})",
                "re-run 01_curate instead of editing its outputs",
            )
    return train_file, (eval_file if eval_file.exists() else None)


def run_train(cfg: Config, on_step: Callable[[dict], None] | None = None) -> Path:
    """Fine-tune `cfg.model` on the curated training set; returns the stage directory."""
    t, run = cfg.train, RunDir.of(cfg)
    train_file, eval_file = _input_files(cfg, run)
    precision = models.resolve_precision(t.precision)
    trackers = tracking.tracker_names(t.report_to)
    acc = Accelerator(
        mixed_precision="bf16" if precision == "bf16" else "no",
        log_with=trackers or None,
        project_dir=str(run.tracker_logs),
    )
    with Stage(cfg, "train", inputs=[p for p in (train_file, eval_file) if p]) as st:
        if trackers:
            acc.init_trackers(
                "lima_repro", config=tracking.tracker_config(cfg), init_kwargs={"wandb": {"name": run.root.name}}
            )
        torch.manual_seed(dropout_seed(t.seed, acc.process_index))  # each DDP process its own dropout masks
        model, tokenizer, eot_id = models.load_base(cfg.model)  # eot_id: the token that ends a turn
        fmt = ChatFormat.of(cfg.model)
        eval_attention, fixed = model.config._attn_implementation, t.fixed_shapes_for(acc.device.type)
        dtype = models.torch_dtype(precision)  # held-out evaluation keeps the loaded attention, training may not
        model.set_attn_implementation(
            packed_attention.training_path(t.attention, fixed, acc.device, dtype, model.config)
        )
        if t.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        probs = add_residual_dropout(model, t.residual_dropout)
        # a deviation (lora.py); after residual dropout, which zeroes the model's own nn.Dropout modules, not LoRA's
        adapted = lora.add_lora(model, t, acc.distributed_type) if t.lora_r else None
        compiled = compile_decoder(model, t.compile, acc.device, per_layer=fixed)
        train_set, stats = encode_examples(data.read_examples(train_file), tokenizer, fmt, t.max_length)
        eval_set = []
        if eval_file:
            eval_set, _ = encode_examples(data.read_examples(eval_file), tokenizer, fmt, t.max_length)
            eval_set = eval_set[: t.max_eval_examples]
        if not train_set:
            raise data.DataError(
                train_file,
                None,
                f"no example has response tokens left after trimming to {t.max_length} tokens",
                "raise train.max_length or shorten the prompts",
            )
        per_epoch = batching.steps_per_epoch(len(train_set), t.batch_size)
        total = per_epoch * t.epochs if t.max_steps is None else min(per_epoch * t.epochs, t.max_steps)
        train_rows = [eot_id] if t.freeze_embeddings or t.lora_r else None  # LoRA: EOT's (vicuna: EOS's) rows too
        loss_model, optimizer, scheduler = prepare_training(acc, model, t, total, train_rows)
        acc.register_for_checkpointing(scheduler)
        pad_id = tokenizer.pad_token_id
        state = TrainState(
            acc, loss_model, optimizer, scheduler, t, train_set, pad_id, per_epoch, total, 0, eval_attention
        )
        resume(state, run)
        st.extra.update(
            steps_total=total,
            steps_per_epoch=per_epoch,
            precision=precision,
            compiled=compiled,
            attn_implementation=model.config._attn_implementation,
            eval_attn_implementation=eval_attention,
            fixed_shapes=fixed,
            micro_batch_size=t.micro_batch_for(acc.device.type),
            loss_chunk_size=t.head_chunk_for(acc.device.type),
            dropout_per_layer=probs,
            own_dropout_disabled=getattr(model.config, "lima_disabled_dropout", {}),
            processes=acc.num_processes,
            data=stats,
            resumed_from_step=state.step or None,
            lora=lora.describe(t, adapted, model, loss_model) if adapted else None,
        )
        if acc.is_main_process:
            write_json(run.train_info, st.extra)
        if state.step == 0 and eval_set:  # the base model's held-out perplexity (with EOT added): the reference point
            _evaluate(state, run, eval_set)
        loss_model.train()
        bar = tqdm(
            total=total, initial=state.step, desc="train", disable=not acc.is_main_process, unit="step", mininterval=2.0
        )
        timed = []  # the first steps' wall times: the first includes compiling the decoder, the second does not
        while not state.done:
            t0, row = time.time(), train_step(state)
            if len(timed) < 2:
                _record_step_times(st.extra, timed := [*timed, time.time() - t0], run, acc.is_main_process)
            if acc.is_main_process and (state.step % t.log_every_steps == 0 or state.done):
                tracking.record(acc, run.metrics, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", refresh=False)
            bar.update(1)  # redraws at most every 2 s (mininterval): a long run's saved notebook stays small
            if on_step:
                on_step(row)
            if state.step % per_epoch == 0 or state.done:
                _end_of_epoch(state, run, tokenizer=tokenizer, eval_set=eval_set, fmt=fmt)
            elif t.save_state and t.save_state_every_steps and state.step % t.save_state_every_steps == 0:
                save_state(state, run)
        bar.close()
        acc.wait_for_everyone()
        acc.end_training()
        if acc.is_main_process:
            write_checkpoint_index(run)
            for folder in (run.state, run.state_partial):  # a finished run has nothing to resume
                shutil.rmtree(folder, ignore_errors=True)
    return st.out


def _record_step_times(extra: dict, timed: list[float], run: RunDir, main: bool) -> None:
    """The first steps' wall times into train_info.json and the manifest; their difference is about what compiling
    took (torch.compile compiles lazily, in the first forward and backward)."""
    extra["first_steps_s"] = [round(x, 3) for x in timed]
    if extra.get("compiled") and len(timed) == 2:
        extra["compile_s"] = round(max(timed[0] - timed[1], 0.0), 3)
    if main:
        write_json(run.train_info, extra)


def prepare_training(acc, model, t, total: int, train_rows: list[int] | None = None):
    """CausalLMLoss around `model`, AdamW with LIMA's decay groups and the linear schedule, all `acc.prepare`d.
    `train_rows`: with `train.freeze_embeddings`, the embedding rows that still train (the new EOT token's)."""
    single = acc.distributed_type == DistributedType.NO  # DDP/FSDP hooks need the head's gradient via autograd
    # the head's weight-gradient GEMM in autocast's dtype where that is fast: a GPU or a CPU with bf16 units (RESULTS.md)
    fast = acc.device.type == "cuda" or models.resolve_precision("auto") == "bf16"  # else bf16 is emulated: fp32
    loss_model = CausalLMLoss(model, t.head_chunk_for(acc.device.type), single, train_rows, low_precision_grad=fast)
    rows = {id(p) for p in (loss_model.rows_in, loss_model.rows_out) if p is not None}
    decay, no_decay, new_rows = [], [], []
    for name, p in loss_model.named_parameters():
        if p.requires_grad:
            group = new_rows if id(p) in rows else no_decay if p.ndim < 2 or "norm" in name.lower() else decay
            group.append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if new_rows:
        groups.append({"params": new_rows, "weight_decay": t.weight_decay, "lr": t.lr * t.new_rows_lr_multiplier})
    optimizer = torch.optim.AdamW(
        # fused: one pass over each parameter, no parameter-sized temporaries (CPU too, where torch's default is a
        # per-parameter loop that allocates one for the 262K x 640 embedding)
        groups,
        lr=t.lr,
        betas=(t.beta1, t.beta2),
        fused=all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total, t.lr, t.lr_end, t.warmup_steps) / t.lr
    )
    loss_model, optimizer = acc.prepare(loss_model, optimizer)
    return loss_model, optimizer, scheduler


def train_step(state: TrainState) -> dict:
    """The optimizer step after `state.step` steps: this process's micro-batches, backward, AdamW, schedule; then
    `state.step` counts it. Returns the metrics row. `run_train` and the benchmarks (train_vs_trl.py, ...) call it."""
    acc, t, loss_model, optimizer, train_set = state.acc, state.t, state.loss_model, state.optimizer, state.train_set
    epoch, in_epoch = divmod(state.step, state.per_epoch)
    order = batching.epoch_order(len(train_set), t.seed, epoch)
    batch = [train_set[i] for i in batching.step_examples(order, in_epoch, t.batch_size)]
    n_loss = batching.count_loss_tokens(batch)
    mine = batch[acc.process_index :: acc.num_processes]
    t0, loss_sum = time.time(), torch.zeros((), dtype=torch.float64, device=acc.device)
    mbs = step_micro_batches(t, acc.device.type, mine, state.pad_id)
    mbs = mbs or step_micro_batches(t, acc.device.type, batch[:1], state.pad_id, no_loss=True)
    # token-mean over the WHOLE step (all processes); DDP averages gradients, so scale by world
    scale = acc.num_processes / n_loss
    config = acc.unwrap_model(loss_model).lm.config
    # one autocast region per step, so bf16 copies of the fp32 weights are made once per step, not per micro-batch
    with acc.autocast():
        for i, mb in enumerate(mbs):
            last = i == len(mbs) - 1  # gradients are all-reduced only after the last micro-batch
            with nullcontext() if last else acc.no_sync(loss_model):
                mb = batching.to_device(mb, acc.device)
                attend = packed_attention.batch_kwargs(mb, config)
                loss, _ = loss_model(**mb, **attend, grad_scale=scale)
                with torch.autocast(acc.device.type, enabled=False):  # backward outside autocast (PyTorch's advice)
                    acc.backward(loss * scale)
            loss_sum += loss.detach()  # summed on the device: no host sync per micro-batch
    logged = (state.step + 1) % t.log_every_steps == 0 or state.step + 1 >= state.total
    if t.max_grad_norm:
        grad_norm = torch.nn.utils.clip_grad_norm_(loss_model.parameters(), t.max_grad_norm)
    elif logged:  # no clip asked for: the norm alone, and only for a row that is logged (one pass over gradients)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in loss_model.parameters() if p.grad is not None])
    else:
        grad_norm = None
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    state.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    n_tokens = loss_sum.new_full((), float(sum(len(e["input_ids"]) for e in mine)))  # a fill: no copy to the device
    totals = acc.reduce(torch.stack([loss_sum, n_tokens]), reduction="sum").cpu()  # the step's one host sync
    return {
        "type": "train",
        "step": state.step,
        "epoch": round(state.step / state.per_epoch, 4),
        "loss": float(totals[0]) / n_loss,
        "lr": lr,
        "grad_norm": None if grad_norm is None else float(grad_norm),
        "tokens": int(totals[1]),
        "tokens_per_s": float(totals[1]) / max(time.time() - t0, 1e-9),
        "loss_tokens": n_loss,
    }


def _end_of_epoch(state: TrainState, run: RunDir, *, tokenizer, eval_set: list[dict], fmt: ChatFormat) -> None:
    """After an epoch's last step (or the run's): held-out perplexity, the checkpoint, the resumable state, each
    as often as `train.eval_every_epochs`, `save_every_epochs` and `save_state` say."""
    acc, t, step, epoch = state.acc, state.t, state.step, state.epoch
    if eval_set and (epoch % t.eval_every_epochs == 0 or state.done):
        _evaluate(state, run, eval_set)
    if epoch % t.save_every_epochs == 0 or state.done:
        name = checkpoint_name(step, epoch, at_epoch_end=step % state.per_epoch == 0)
        path, tmp = run.checkpoints / name, run.checkpoints / f"{name}.partial"
        acc.unwrap_model(state.loss_model).merge_rows()  # trained new-token rows into the model (freeze_embeddings)
        lm = acc.unwrap_model(state.loss_model).lm
        weights = acc.get_state_dict(state.loss_model)
        weights = lora.merged_state_dict(lm, {k[len("lm.") :]: v for k, v in weights.items() if k.startswith("lm.")})
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            with folder_written_whole(tmp, "the earlier checkpoints and the last resumable state are"):
                lm.save_pretrained(tmp, state_dict=weights)
                tokenizer.save_pretrained(tmp)
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
            models.write_checkpoint_info(path, step, epoch, fmt.end_token(tokenizer), fmt.name)
    if t.save_state and not state.done:
        save_state(state, run)


def _evaluate(state: TrainState, run: RunDir, eval_set: list[dict]) -> None:
    acc = state.acc
    lm = acc.unwrap_model(state.loss_model).lm
    with packed_attention.attention(lm, state.eval_attention or lm.config._attn_implementation):
        size = state.t.micro_batch_for(acc.device.type)
        ev = evaluate_perplexity(state.loss_model, eval_set, state.pad_id, size, acc.autocast)
    if acc.is_main_process:
        tracking.record(acc, run.metrics, {"type": "eval", "step": state.step, "epoch": state.epoch, **ev})
