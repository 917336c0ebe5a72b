"""Training settings (`Config.train`): LIMA sec. 3's fine-tuning recipe as defaults."""
from __future__ import annotations

from dataclasses import dataclass

from .base import PRECISIONS, ConfigError, raise_first


@dataclass
class TrainConfig:
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
    micro_batch_size: int = 1
    """Examples per forward pass; batch_size / (micro_batch_size * processes) steps of gradient accumulation."""
    max_length: int = 2048  # LIMA sec. 3: texts longer than 2,048 tokens are trimmed
    residual_dropout: float = 0.3  # LIMA sec. 3: 0.0 at the bottom layer rising linearly to 0.3 (0.2 for smaller models)
    max_grad_norm: float | None = None
    """Gradient clipping; the paper states none, so it is off (the norm is still logged)."""
    precision: str = "auto"
    """`fp32`, `bf16` (autocast) or `auto`: bf16 on GPUs that support it and on CPUs with bf16 units (AMX or
    AVX512-BF16), fp32 elsewhere (`models.resolve_precision`)."""
    packing: bool = False
    """Pack several examples per row (no attention across them); False = length-grouped padded batches."""
    freeze_embeddings: bool = False  # off in the paper's recipe (LIMA sec. 3 trains every weight)
    """Train only the new EOT token's rows of the input embedding and output head; freeze the rest of both. For the
    packaged Gemma 3 270M the 262,144 x 640 embedding (tied head) is ~60% of the parameters: freezing it removes its
    weight gradient and optimizer state (a demo step ~1.9x faster on this CPU; benchmarks/RESULTS.md)."""
    new_rows_lr_multiplier: float = 1.0
    """With `freeze_embeddings`: the EOT rows train at `lr` times this. They start as a copy of EOS's row and must
    move away from it for the model to prefer EOT over EOS within a short run; AdamW moves each coordinate by about
    the learning rate per step, so a few dozen steps at 1e-4 barely separate them (measured: benchmarks/RESULTS.md)."""
    loss_chunk_size: int = 256
    """Loss-carrying tokens per chunk of the output head, so a batch's full logits never exist at once."""
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
    seed: int = 42
    """Seed for initialisation, dropout and data order."""

    def check(self) -> None:
        raise_first([
            (self.batch_size < 1 or self.micro_batch_size < 1,
             "train.batch_size and train.micro_batch_size must be >= 1"),
            # guarded by the line above: micro_batch_size >= 1 here, so the modulo cannot divide by zero
            (self.micro_batch_size >= 1 and self.batch_size % self.micro_batch_size,
             f"train.batch_size ({self.batch_size}) must be a multiple of train.micro_batch_size "
             f"({self.micro_batch_size})"),
            (not 0.0 <= self.residual_dropout < 1.0,
             f"train.residual_dropout must be in [0, 1), got {self.residual_dropout}"),
            (self.new_rows_lr_multiplier <= 0,
             f"train.new_rows_lr_multiplier must be > 0, got {self.new_rows_lr_multiplier}"),
            (self.precision not in PRECISIONS,
             f"train.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"),
        ])
        if isinstance(self.compile, str) and self.compile != "auto":
            # imported only when a backend is named: torch takes seconds to import, `lima_repro config` none
            import torch._dynamo

            if self.compile not in torch._dynamo.list_backends(exclude_tags=()):
                raise ConfigError(f"train.compile must be auto, true, false or a torch.compile backend "
                                  f"({', '.join(torch._dynamo.list_backends())}, ...); got {self.compile!r}")
