"""LIMA's residual dropout (sec. 3): dropout on each layer's residual branches, p rising linearly from 0.0 at the
bottom layer to p_max at the top (0.3 for 65B, 0.2 for smaller models).

Implemented with forward hooks on the module whose output joins the residual stream, so checkpoints stay
plain transformers models (hooks are not saved) and dropout is active only in `model.train()` mode:

- Llama, Mistral, Qwen2/3 and similar: the outputs of `self_attn` and `mlp`;
- Gemma 2/3: the outputs of `post_attention_layernorm` and `post_feedforward_layernorm` (Gemma normalises each
  branch after it, and it is that normalised output which is added to the residual);
- GPT-2 family: the outputs of `attn` and `mlp`.

With LIMA's dropout on, the model's own dropouts (GPT-2's `resid_pdrop`, `attn_pdrop`, `embd_pdrop` are 0.1; Pythia's
`hidden_dropout`, ...) are set to 0, so the recipe's dropout is the only one; what they were is recorded in the
model's config as `lima_disabled_dropout` (saved with every checkpoint). Under DDP each process draws its dropout
masks from its own random stream (`dropout_seed`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

# config fields of the models' own dropouts (GPT-2 / GPT-J; Llama, Qwen2, Gemma, GPT-NeoX; BERT-style names)
OWN_DROPOUTS = (
    "resid_pdrop",
    "attn_pdrop",
    "embd_pdrop",
    "attention_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)

# branch modules per decoder layer, first match wins
BRANCHES = (
    ("post_attention_layernorm", "post_feedforward_layernorm"),  # Gemma 2/3 (must precede the generic names)
    ("self_attn", "mlp"),  # Llama, Mistral, Qwen2, ...
    ("attn", "mlp"),  # GPT-2, GPT-J, ...
)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder layers (the ModuleList whose length is num_hidden_layers)."""
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")


def branch_names(layer: nn.Module) -> tuple[str, str]:
    children = dict(layer.named_children())
    for names in BRANCHES:
        if all(n in children for n in names):
            return names  # Llama's post_attention_layernorm is a pre-MLP norm: Gemma needs both names
    raise ValueError(f"residual dropout: unknown decoder layer {type(layer).__name__} (children {sorted(children)})")


def layer_probabilities(n_layers: int, p_max: float) -> list[float]:
    """p for layer i = p_max * i / (n_layers - 1): 0.0 at the bottom, p_max at the top."""
    if n_layers == 1:
        return [p_max]
    return [p_max * i / (n_layers - 1) for i in range(n_layers)]


def _hook(p: float):
    def hook(module: nn.Module, args, output):
        if not module.training or p == 0.0:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, training=True),) + tuple(output[1:])
        return F.dropout(output, p, training=True)

    return hook


def dropout_seed(seed: int, rank: int) -> int:
    """The seed of process `rank`'s random stream (dropout masks): the run's seed on process 0, so one process
    trains as before, and a different stream on every other process, so DDP's processes do not drop the same units."""
    return seed + 1_000_003 * rank


def disable_own_dropout(model: nn.Module) -> dict[str, float]:
    """Set the model's own dropouts to 0 (config fields in OWN_DROPOUTS, every nn.Dropout module, and the
    attention modules' copied `attention_dropout`); returns {field: value it had} for the fields that were > 0."""
    cfg = model.config
    was = {k: v for k in OWN_DROPOUTS if isinstance(v := getattr(cfg, k, None), (int, float)) and v > 0}
    for k in was:
        setattr(cfg, k, 0.0)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(getattr(module, "attention_dropout", None), float):  # Llama/Qwen2/GPT-NeoX attention
            module.attention_dropout = 0.0
    return was


def add_residual_dropout(model: nn.Module, p_max: float) -> list[float]:
    """Register the hooks; returns the per-layer probabilities. With p_max > 0 the model's own dropouts are set
    to 0 first (recorded in `model.config.lima_disabled_dropout`). Remove with `remove_residual_dropout`."""
    remove_residual_dropout(model)
    if p_max > 0:
        disabled = disable_own_dropout(model)
        model.config.lima_disabled_dropout = {**getattr(model.config, "lima_disabled_dropout", {}), **disabled}
    layers = decoder_layers(model)
    probs = layer_probabilities(len(layers), p_max)
    handles = []
    for layer, p in zip(layers, probs):
        for name in branch_names(layer):
            handles.append(getattr(layer, name).register_forward_hook(_hook(p)))
    model._lima_dropout_handles = handles
    return probs


def remove_residual_dropout(model: nn.Module) -> None:
    for h in getattr(model, "_lima_dropout_handles", []):
        h.remove()
    model._lima_dropout_handles = []
