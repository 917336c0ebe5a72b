"""LoRA adapters through `peft` (the `lora` extra) for `train.lora_r`: a recorded deviation from LIMA for one-GPU users.

LIMA (sec. 3) fine-tunes every weight. With `train.lora_r` set, `add_lora` freezes the base model and puts rank-r
adapters on the decoder's linear layers (never the output head: `loss.CausalLMLoss` multiplies by the head's weight
directly); the new EOT token's embedding and head rows still train, through `CausalLMLoss`'s `train_rows` (as with
`train.freeze_embeddings`), because a frozen EOT row stays a copy of the row it started from. The adapters are put into
the model's own modules (`peft.inject_adapter_in_model`), so the model keeps its class, `base_model` and output head,
and residual dropout, the fused loss, `torch.compile` and resumable states work unchanged.

Every checkpoint holds the merged weights (`merged_state_dict`: base weight + peft's delta, computed beside the
training model, which is left untouched), so `checkpoints/epoch-N` is a plain transformers folder and select, generate
and judge read it as they read a full fine-tune. QLoRA (a 4-bit base through bitsandbytes) is not supported.
"""

from __future__ import annotations

from accelerate.utils import DistributedType
from torch import nn
from transformers.pytorch_utils import Conv1D

from .config.base import ConfigError

DEVIATION = (
    "LIMA (sec. 3) fine-tunes all weights; this run trained LoRA adapters on the decoder's linear layers and "
    "the new EOT token's embedding/head rows, the other base weights frozen; checkpoints hold the merged weights"
)


def add_lora(model: nn.Module, t, distributed_type: DistributedType = DistributedType.NO) -> list[str]:
    """Freeze `model` and add LoRA adapters of `t.lora_r` (TrainConfig) in place; returns the adapted module kinds
    (the last part of their names, e.g. q_proj), sorted."""
    if distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ConfigError(
            f"train.lora_r: LoRA runs on one GPU or under DDP, not {distributed_type.value} (its shards "
            "would be merged wrongly into the checkpoints); unset train.lora_r or launch without FSDP"
        )
    from peft import LoraConfig, inject_adapter_in_model  # the optional `lora` extra (config checks it is installed)

    config = LoraConfig(
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=t.lora_target_modules,
        bias="none",
        # GPT-2's Conv1D stores its weight transposed; peft must know to merge it the right way round
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )
    fix = "use all-linear or names of the decoder's linear layers (e.g. [q_proj, v_proj])"
    try:
        inject_adapter_in_model(config, model)  # also sets requires_grad=False on every base weight
    except ValueError as e:  # peft's NoMatchingPeftModuleError: no module has such a name
        raise ConfigError(
            f"train.lora_target_modules={t.lora_target_modules!r}: {e} ({type(model).__name__}); {fix}"
        ) from e
    layers = dict(_lora_layers(model))
    if any(m in layers.values() for m in (model.get_input_embeddings(), model.get_output_embeddings())):
        # the fused loss reads the head's weight directly and the EOT rows train on their own: adapters there
        # would be silently ignored
        raise ConfigError(
            f"train.lora_target_modules={t.lora_target_modules!r} adapts the input embedding or the output head; {fix}"
        )
    return sorted({name.rsplit(".", 1)[-1] for name in layers})


def _lora_layers(model: nn.Module):
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def merged_state_dict(model: nn.Module, state: dict) -> dict:
    """`state` (the keys of `model.state_dict()`) as a plain transformers state dict: each adapted layer's weight is
    its base weight plus the adapters' delta, adapter tensors dropped, `base_layer.` taken out of the names. The model
    and the tensors of `state` are not changed. A model without adapters gets `state` back."""
    layers = _lora_layers(model) if any(".lora_" in k for k in state) else []
    out = dict(state)
    for name, layer in layers:
        for key in [k for k in out if k.startswith(f"{name}.lora_")]:
            del out[key]
        weight = out.pop(f"{name}.base_layer.weight")
        for adapter in layer.active_adapters:
            weight = weight + layer.get_delta_weight(adapter).to(weight.dtype)
        out[f"{name}.weight"] = weight
        if f"{name}.base_layer.bias" in out:
            out[f"{name}.bias"] = out.pop(f"{name}.base_layer.bias")
    return out


def describe(t, kinds: list[str], model: nn.Module, loss_model: nn.Module) -> dict:
    """The run's record of the deviation (train_info.json and the stage manifest): `trainable_params` is what the
    optimizer updates (the adapters and the EOT rows, which `loss_model` holds), `model_params` the model's own
    (frozen base weights and adapters)."""
    return {
        "r": t.lora_r,
        "alpha": t.lora_alpha,
        "dropout": t.lora_dropout,
        "targets": kinds,
        "trainable_params": sum(p.numel() for p in loss_model.parameters() if p.requires_grad),
        "model_params": sum(p.numel() for p in model.parameters()),
        "note": DEVIATION,
    }
