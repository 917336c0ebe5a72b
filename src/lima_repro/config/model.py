"""Base-model settings (`Config.model`)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import raise_first


@dataclass
class ModelConfig:
    name: str = "huggyllama/llama-65b"
    """Base model: a Hugging Face id, a local folder, or `gemma-3-270m` (the packaged default)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for Hugging Face ids."""
    eot_token: str = "<|eot|>"
    """LIMA sec. 3: a new special end-of-turn token after every utterance, distinct from EOS."""
    trust_remote_code: bool = False
    """Passed to transformers when loading models from the hub."""
    attn_implementation: str = "auto"
    """`auto` (FlashAttention-2 on a GPU when `flash_attn` is installed, else PyTorch SDPA), `sdpa`, `eager`,
    `flash_attention_2`, or any name transformers accepts. Packed rows use varlen kernels where available."""

    def check(self) -> None:
        raise_first([
            # an empty token would be added to the vocabulary as "" and every turn would end in nothing
            (not self.name, "model.name must not be empty (a Hugging Face id, a local folder or gemma-3-270m)"),
            (not self.eot_token, "model.eot_token must not be empty (LIMA sec. 3: a special end-of-turn token)"),
        ])
