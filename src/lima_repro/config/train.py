"""Training settings (`Config.train`): LIMA sec. 3's fine-tuning recipe as defaults."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import ClassVar

from .base import PRECISIONS, ConfigError, check_ranges, raise_first

ATTENTIONS = ("auto", "sdpa", "flex", "varlen", "flash_attention_2")
AUTO_FORWARD_TOKENS = 8192  # tokens per forward that `micro_batch_size: auto` aims at on CUDA
AUTO_HEAD_CHUNK = {"cpu": 256, "cuda": 2048}  # `loss_chunk_size: auto`, tokens per output-head chunk


@dataclass
class TrainConfig:
    # Upper bounds no real run reaches (check_ranges `limits`): past them a run trains for years or allocates tens of
    # GB before failing. LIMA trains 15 epochs of 1,000 examples at 32 per step (~470 steps) on 2,048 tokens.
    LIMITS: ClassVar[dict[str, int]] = {
        "epochs": 10_000,
        "warmup_steps": 10_000_000,
        "max_steps": 10_000_000,
        "save_state_every_steps": 10_000_000,
        "log_every_steps": 10_000_000,
        "save_every_epochs": 10_000,
        "eval_every_epochs": 10_000,
        "max_eval_examples": 10_000_000,  # LIMA's dev set is 50 examples
        "batch_size": 100_000,  # examples per optimizer step; pretraining batches are ~2,000 sequences
        "micro_batch_size": 100_000,
        "max_length": 1_048_576,  # tokens: the longest context windows of today's models
        "loss_chunk_size": 1_048_576,  # tokens per chunk, never more than a batch holds
        "lora_r": 65_536,  # an adapter's rank is at most the model width (8,192 for LLaMA 65B)
    }

    train_file: str | None = None
    """Training JSONL; None = `<run_dir>/curate/train.jsonl` (the curate stage's output)."""
    eval_file: str | None = None
    """Held-out JSONL for perplexity; None = `<run_dir>/curate/dev.jsonl` when it exists."""
    epochs: int = 15  # LIMA sec. 3: 15 epochs
    lr: float = 1e-5  # LIMA sec. 3: learning rate 1e-5, no warmup
    lr_end: float = 1e-6  # LIMA sec. 3: linear decay to 1e-6 by the end of training
    warmup_steps: int = 0  # LIMA sec. 3: no warmup
    beta1: float = 0.9  # LIMA sec. 3: AdamW beta1
    beta2: float = 0.95  # LIMA sec. 3: AdamW beta2
    weight_decay: float = 0.1  # LIMA sec. 3: weight decay 0.1
    batch_size: int = 32  # LIMA sec. 3: 32 examples per step (64 for smaller models)
    micro_batch_size: int | str | None = 1
    """Examples per forward pass (packed rows per forward with `packing`); batch_size / (micro_batch_size *
    processes) steps of gradient accumulation. `auto` or null: 1 on CPU (what it always was there); on CUDA
    enough to fill ~8,192 tokens per forward, max(1, 8192 // max_length) (4 rows at LIMA's 2,048)."""
    max_length: int = 2048  # LIMA sec. 3: texts longer than 2,048 tokens are trimmed
    residual_dropout: float = (
        0.3  # LIMA sec. 3: 0.0 at the bottom layer rising linearly to 0.3 (0.2 for smaller models)
    )
    max_grad_norm: float | None = None
    """Gradient clipping; the paper states none, so it is off (the norm is still logged)."""
    precision: str = "auto"
    """`fp32`, `bf16` (autocast) or `auto`: bf16 on GPUs that support it and on CPUs with bf16 units (AMX or
    AVX512-BF16), fp32 elsewhere (`models.resolve_precision`)."""
    packing: bool = False
    """Pack several examples per row (no attention across them); False = length-grouped padded batches."""
    fixed_shapes: bool | str = "auto"
    """With `packing`: every packed row padded to `max_length` (the padding a segment of its own) and
    `micro_batch_size` rows per forward, so a run sees one shape and a compiled model compiles once
    (`lima_repro.fixed_shapes`). `auto`: on with packing on CUDA; off on CPU, where padding is compute that
    nothing earns back. true needs `packing`."""
    attention: str = "auto"
    """Attention while training: `auto` (with fixed shapes, `packed_attention.choose_path`: varlen FlashAttention on
    a CUDA GPU when a kernel supports the model, else FlexAttention with a document mask; otherwise
    `model.attn_implementation`, SDPA with a dense mask on CPU), `sdpa`, `flex`, `varlen` (these two need
    `packing`: they attend within each packed example without building a dense mask) or `flash_attention_2`.
    Held-out evaluation and checkpoints use sdpa."""
    freeze_embeddings: bool = False  # off in the paper's recipe (LIMA sec. 3 trains every weight)
    """Train only the new EOT token's rows of the input embedding and output head; freeze the rest of both. For the
    packaged Gemma 3 270M the 262,144 x 640 embedding (tied head) is ~60% of the parameters: freezing it removes its
    weight gradient and optimizer state (a demo step ~1.9x faster on this CPU; benchmarks/RESULTS.md)."""
    new_rows_lr_multiplier: float = 1.0
    """With `freeze_embeddings`: the EOT rows train at `lr` times this. They start as a copy of EOS's row and must
    move away from it for the model to prefer EOT over EOS within a short run; AdamW moves each coordinate by about
    the learning rate per step, so a few dozen steps at 1e-4 barely separate them (measured: benchmarks/RESULTS.md)."""
    loss_chunk_size: int | str = 256
    """Loss-carrying tokens per chunk of the output head, so a batch's full logits never exist at once. `auto`:
    256 on CPU (tuned on a 2-core CPU, benchmarks/RESULTS.md), 2,048 on CUDA (bigger GEMMs; a chunk of a
    262K vocabulary's fp32 logits is then 2 GiB)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to fit long sequences or big models."""
    compile: bool | str = "auto"
    """`torch.compile` the decoder body: `auto` (on for CUDA, off on CPU, where compiling takes minutes that a
    short run never earns back), true (inductor), false, or a torch.compile backend name such as `aot_eager`."""
    save_every_epochs: int = 1
    """A `save_pretrained` checkpoint every N epochs (the last epoch is always saved)."""
    eval_every_epochs: int = 1
    """Held-out perplexity every N epochs (LIMA Fig. 9 plots it against steps)."""
    max_eval_examples: int | None = None
    """Cap on held-out examples for perplexity; None = all."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (smoke tests); None = all epochs."""
    save_state: bool = True
    """Save a resumable state (optimizer, scheduler, RNG) at epoch ends; False for throwaway sub-runs."""
    save_state_every_steps: int | None = None
    """Also save a resumable training state every N steps (long epochs); None = at epoch ends only."""
    log_every_steps: int = 1
    """How often a row goes to metrics.jsonl."""
    report_to: str = "auto"
    """Experiment trackers that also receive every metrics row (metrics.jsonl stays the record), through accelerate:
    `auto` = TensorBoard when installed (event files in `<run>/train/trackers`), `none`, or accelerate tracker names
    separated by commas (`tensorboard`, `wandb`, `mlflow`, `comet_ml`, `aim`, `dvclive`, ...; configured by their
    own environment variables, e.g. WANDB_PROJECT)."""
    seed: int = 42
    """Seed for initialisation, dropout and data order."""
    lora_r: int | None = None  # off: LIMA sec. 3 fine-tunes every weight
    """LoRA rank; None = full fine-tuning. A number trains rank-r adapters (peft: `pip install 'lima_repro[lora]'`)
    on the decoder's linear layers plus the new EOT token's embedding/head rows, all other weights frozen
    (`lima_repro.lora`): a deviation from LIMA for one-GPU users, recorded in train_info.json. Checkpoints hold the
    merged weights (plain transformers folders). Adapters usually want a higher `train.lr` than full fine-tuning
    (1e-4 to 2e-4 is common). QLoRA (a 4-bit base) is not supported; runs on one device or DDP, not FSDP."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the adapters' update is multiplied by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (peft's lora_dropout); LIMA's residual dropout applies as well."""
    lora_target_modules: str | list[str] = "all-linear"
    """Layers that get adapters: `all-linear` (every linear layer of the decoder, never the output head), a list
    of module names such as [q_proj, v_proj], or another string, read by peft as a regular expression."""

    def micro_batch_for(self, device_type: str) -> int:
        """`micro_batch_size` on a device of this type (`auto`/null resolved as its docstring says)."""
        if self.micro_batch_size not in (None, "auto"):
            return self.micro_batch_size
        return max(1, AUTO_FORWARD_TOKENS // self.max_length) if device_type == "cuda" else 1

    def head_chunk_for(self, device_type: str) -> int:
        """`loss_chunk_size` on a device of this type."""
        if self.loss_chunk_size != "auto":
            return self.loss_chunk_size
        return AUTO_HEAD_CHUNK.get(device_type, AUTO_HEAD_CHUNK["cpu"])

    def fixed_shapes_for(self, device_type: str) -> bool:
        """Whether forwards have fixed shapes on a device of this type."""
        return self.packing and device_type == "cuda" if self.fixed_shapes == "auto" else bool(self.fixed_shapes)

    def check(self) -> None:
        # every numeric field: a 0 here divides by zero or saves nothing only after an epoch of training
        auto = {k for k in ("micro_batch_size", "loss_chunk_size") if getattr(self, k) == "auto"}
        check_ranges(
            self,
            "train",
            {
                k: rule
                for k, rule in {
                    "epochs": ">=1",
                    "lr": ">0",
                    "lr_end": ">=0",
                    "warmup_steps": ">=0",
                    "beta1": "[0,1)",
                    "beta2": "[0,1)",
                    "weight_decay": ">=0",
                    "batch_size": ">=1",
                    "micro_batch_size": ">=1?",
                    "max_length": ">=1",
                    "residual_dropout": "[0,1)",
                    "max_grad_norm": ">0?",
                    "new_rows_lr_multiplier": ">0",
                    "loss_chunk_size": ">=1",
                    "save_every_epochs": ">=1",
                    "eval_every_epochs": ">=1",
                    "max_eval_examples": ">=1?",
                    "max_steps": ">=1?",
                    "save_state_every_steps": ">=1?",
                    "log_every_steps": ">=1",
                    "seed": "seed",
                    "lora_r": ">=1?",
                    "lora_alpha": ">0",
                    "lora_dropout": "[0,1)",
                }.items()
                if k not in auto
            },
            self.LIMITS,
        )
        raise_first(
            [
                (
                    self.lr_end > self.lr,
                    f"train.lr_end ({self.lr_end}) must not exceed train.lr ({self.lr}): the rate decays linearly to it",
                ),
                (
                    isinstance(self.micro_batch_size, int) and self.batch_size % self.micro_batch_size,
                    f"train.batch_size ({self.batch_size}) must be a multiple of train.micro_batch_size "
                    f"({self.micro_batch_size})",
                ),
                (
                    self.fixed_shapes not in (True, False, "auto"),
                    f"train.fixed_shapes must be auto, true or false; got {self.fixed_shapes!r}",
                ),
                (
                    self.fixed_shapes is True and not self.packing,
                    "train.fixed_shapes: true pads packed rows: set train.packing: true as well (or fixed_shapes: auto)",
                ),
                (
                    self.attention not in ATTENTIONS,
                    f"train.attention must be one of {', '.join(ATTENTIONS)}; got {self.attention!r}",
                ),
                (
                    self.attention in ("flex", "varlen") and not self.packing,
                    f"train.attention: {self.attention} attends within packed examples: set train.packing: true (or "
                    "train.attention: auto)",
                ),
                (
                    self.precision not in PRECISIONS,
                    f"train.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}",
                ),
                (
                    self.lora_r is not None and not isinstance(self.lora_r, int),
                    f"train.lora_r must be a whole number (the adapters' rank); got {self.lora_r!r}",
                ),
                (
                    self.lora_target_modules in ("", [])
                    or isinstance(self.lora_target_modules, list)
                    and not all(self.lora_target_modules),
                    f"train.lora_target_modules must be all-linear or a list of layer names such as [q_proj, v_proj]; "
                    f"got {self.lora_target_modules!r}",
                ),
                (
                    self.lora_r is not None and importlib.util.find_spec("peft") is None,
                    "train.lora_r needs peft, which is not installed: pip install 'lima_repro[lora]' (or unset train.lora_r "
                    "for the paper's full fine-tuning)",
                ),
            ]
        )
        if isinstance(self.compile, str) and self.compile != "auto":
            # imported only when a backend is named: torch takes seconds to import, `lima_repro config` none
            import torch._dynamo

            if self.compile not in torch._dynamo.list_backends(exclude_tags=()):
                raise ConfigError(
                    f"train.compile must be auto, true, false or a torch.compile backend "
                    f"({', '.join(torch._dynamo.list_backends())}, ...); got {self.compile!r}"
                )
