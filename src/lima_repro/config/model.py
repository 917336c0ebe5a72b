"""Base-model settings (`Config.model`)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import raise_first

CHAT_TEMPLATES = ("lima", "vicuna")  # chat_format.ChatFormat: `render` (LIMA's EOT format) and `render_vicuna`


@dataclass
class ModelConfig:
    name: str = "huggyllama/llama-65b"
    """Base model: a Hugging Face id, a local folder, or `gemma-3-270m` (the packaged default)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for Hugging Face ids."""
    eot_token: str = "<|eot|>"
    """LIMA sec. 3: a new special end-of-turn token after every utterance, distinct from EOS (`chat_template: lima`
    only: vicuna adds no token and ends each turn with the tokenizer's EOS)."""
    eot_init: str = "eos"  # the paper does not say how its EOT row starts; chosen by measurement, below
    """How the new EOT row (input embedding, and output row when untied) starts: `eos` (a copy of the EOS token's
    row), `mean` (the mean of all rows), or any existing token's name. `eos`, because a copy of an end token
    already means "stop" to the base model: on the packaged Gemma 3 270M the log-probability of EOT after a dev
    answer is about -3 with `eos` against about -24 with `mean`, and after the demo's training the tuned model
    stopped at EOT on 18 of 19 test prompts with `eos` and on none with `mean` (benchmarks/RESULTS.md)."""
    chat_template: str = "lima"
    """Conversation format: `lima` (LIMA sec. 3: a new EOT token after every utterance) or `vicuna` (FastChat's
    vicuna_v1.1, the published LIMA-1k runs' format: docs/paper.md sec. 6; `chat_format.render_vicuna`). Training,
    generation, dev-set selection, the token-shift test, MT-Bench and the checkpoints' Jinja template all use it."""
    trust_remote_code: bool = False
    """Passed to transformers when loading models from the hub."""
    attn_implementation: str = "auto"
    """`auto` (FlashAttention-2 on a GPU when `flash_attn` is installed, else PyTorch SDPA), `sdpa`, `eager`,
    `flash_attention_2`, or any name transformers accepts. Packed rows use varlen kernels where available."""

    def check(self) -> None:
        raise_first(
            [
                # an empty token would be added to the vocabulary as "" and every turn would end in nothing
                (not self.name, "model.name must not be empty (a Hugging Face id, a local folder or gemma-3-270m)"),
                (not self.eot_token, "model.eot_token must not be empty (LIMA sec. 3: a special end-of-turn token)"),
                (
                    self.chat_template not in CHAT_TEMPLATES,
                    f"model.chat_template must be one of {', '.join(CHAT_TEMPLATES)}, got {self.chat_template!r}",
                ),
                (not self.eot_init, "model.eot_init must be eos, mean or a token of the base model's vocabulary"),
                (
                    not self.attn_implementation,
                    "model.attn_implementation must not be empty (auto, sdpa, eager or flash_attention_2)",
                ),
            ]
        )
