"""Generation settings (`Config.generate`): LIMA sec. 3's sampling as defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import PRECISIONS, check_ranges, raise_first

SAMPLERS = ("auto", "dynamic", "static")  # the torch backend's batch loops: sampling.decode, static_decode


@dataclass
class GenerateConfig:
    # Upper bounds no real run reaches (check_ranges `limits`): past them generation runs for years or allocates
    # tens of GB before failing. LIMA samples 1 answer (5 in the ablations) of at most 2,048 tokens for 300 prompts.
    LIMITS: ClassVar[dict[str, int]] = {
        "max_prompts": 10_000_000,
        "max_new_tokens": 1_048_576,  # the longest context windows of today's models
        "num_samples": 1_000,
        "batch_size": 100_000,
        "tensor_parallel_size": 4_096,  # GPUs one model is split across; a node holds 8
    }

    checkpoints: str | list[str] = "last"
    """`last`, `all`, `selected` (chosen on the dev set by the select stage, LIMA sec. 3), or checkpoint names/paths."""
    include_base: bool = False
    """Also generate with the untuned base model (for base-vs-tuned comparisons)."""
    dev_responses: bool = False
    """Also answer the dev prompts (held out, with reference answers) with every model, for the judge stage's
    reference-based check: similarity of each system's answers to the references (`judge.reference_check`)."""
    prompts_file: str | None = None
    """Prompts JSONL; None = the curate stage's test.jsonl."""
    max_prompts: int | None = None
    """Use only the first N prompts (demo); None = all."""
    top_p: float = 0.9  # LIMA sec. 3: nucleus sampling p = 0.9
    temperature: float = 0.7  # LIMA sec. 3: temperature 0.7
    """0 = greedy decoding (the most likely token each step; top_p then has no effect), as the published LIMA-1k
    AlpacaEval answers were decoded (docs/paper.md sec. 6)."""
    repetition_penalty: float = 1.2  # LIMA sec. 3: penalty 1.2 on previously generated tokens
    max_new_tokens: int = 2048  # LIMA sec. 3: generation capped at 2,048 tokens
    num_samples: int = 1  # LIMA sec. 4: one sample per prompt (5 in the ablations)
    batch_size: int = 8
    """Sequences per generate() call; prompts are grouped by length."""
    precision: str = "auto"
    """`fp32`, `bf16` or `auto` (bf16 on capable GPUs and on CPUs with bf16 units, else fp32)."""
    backend: str = "auto"
    """`torch` (lima_repro's batched KV-cache sampler), `vllm` (needs vLLM and a GPU), or `auto` (vLLM when it is
    installed and a GPU is present, else torch). Both write the same generations.jsonl."""
    sampler: str = "auto"
    """torch backend: `dynamic` (a finished row leaves its batch and the KV cache at once), `static` (one fixed batch
    and a static KV cache, no host sync per step: the GPU path, `static_decode.py`), or `auto` (static on a CUDA
    machine, dynamic on a CPU). Both sample as LIMA sec. 3 says; the draws differ once a row of a batch stops."""
    seed: int = 0
    """Sampling seed."""
    tensor_parallel_size: int | None = None
    """vLLM backend: GPUs one model is split across (tensor parallelism); None = the largest power of two of the visible
    GPUs that divides the model's attention heads. The torch backend spreads a model over several GPUs by layers instead
    (transformers `device_map="auto"`)."""
    gpu_memory_utilization: float = 0.9  # vLLM's own default
    """vLLM backend: share of each GPU's memory vLLM may take for the weights and its KV cache, in (0, 1]."""

    def check(self) -> None:
        check_ranges(
            self,
            "generate",
            {
                "max_prompts": ">=1?",
                "top_p": "(0,1]",
                "temperature": ">=0",
                "repetition_penalty": ">0",
                "max_new_tokens": ">=1",
                "num_samples": ">=1",
                "batch_size": ">=1",
                "seed": "seed",
                "tensor_parallel_size": ">=1?",
                "gpu_memory_utilization": "(0,1]",
            },
            self.LIMITS,
        )
        raise_first(
            [
                (
                    self.precision not in PRECISIONS,
                    f"generate.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}",
                ),
                (
                    self.backend not in ("auto", "torch", "vllm"),
                    f"generate.backend must be one of auto, torch, vllm; got {self.backend!r}",
                ),
                (
                    self.sampler not in SAMPLERS,
                    f"generate.sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}",
                ),
                # a list names checkpoints or paths, which only the generate stage can resolve
                (
                    isinstance(self.checkpoints, str) and self.checkpoints not in ("last", "all", "selected"),
                    "generate.checkpoints must be 'last', 'all', 'selected' or a list of checkpoint names",
                ),
                # [] with include_base: the base model alone (a prompt set answered by the untuned model)
                (
                    isinstance(self.checkpoints, list)
                    and (not (self.checkpoints or self.include_base) or not all(self.checkpoints)),
                    "generate.checkpoints: a list must name at least one checkpoint (or be [] with include_base: true), "
                    "and no name may be empty",
                ),
            ]
        )


def decoding(temperature: float, top_p: float) -> str:
    """How generation decodes, as the stage records and `paper_values.setup_differences` compare it: `greedy` at
    temperature 0, else `sampling (temperature T, top_p P)`."""
    return "greedy" if temperature == 0 else f"sampling (temperature {temperature}, top_p {top_p})"
