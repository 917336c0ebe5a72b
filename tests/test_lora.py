"""train.lora_r: LoRA adapters through peft (the `lora` extra), a recorded deviation from LIMA's full fine-tuning.
The training tests skip when peft is not installed (`pip install -e '.[lora]'`); the config tests always run."""

import importlib.util
import json
import re

import pytest
import torch
from accelerate.utils import DistributedType
from helpers import tiny_overrides
from safetensors.torch import load_file, load_model
from transformers import AutoModelForCausalLM

from lima_repro import lora, models
from lima_repro.config import ConfigError, ModelConfig, TrainConfig, load_config
from lima_repro.curate import run_curate
from lima_repro.files import read_jsonl_plain
from lima_repro.loss import CausalLMLoss
from lima_repro.runs import RunDir
from lima_repro.train import run_train

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft (the lora extra) not installed")
LORA = {"train.lora_r": 4, "train.lora_alpha": 8.0, "train.lr": 1e-2}
LLAMA_KINDS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
# tiny Llama (hidden 32, kv 16, mlp 64, 3 layers), r=4 per layer: q 4*(32+32) + k,v 2*4*(32+16) + o 4*(32+32)
# + gate,up 2*4*(32+64) + down 4*(64+32) = 2,048; plus the EOT rows of the untied embedding and head, 2 x 32
LLAMA_TRAINABLE = 3 * 2048 + 2 * 32


def curated(tmp_path, model_dir, **extra):
    cfg = load_config("paper", overrides=tiny_overrides(model_dir, tmp_path / "run", **LORA, **extra))
    run_curate(cfg)
    return cfg


def killed_in_epoch_2(cfg):
    """Train until step 7 and stop: 48 examples / 8 = 6 steps an epoch, so state/ and checkpoints/epoch-1 are both
    from step 6."""

    def kill(row):
        if row["step"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, on_step=kill)
    return RunDir(cfg.run_dir)


def trained_model(cfg, run: RunDir):
    """The model exactly as it trained (base weights + adapters + EOT rows), read back from the saved state."""
    model, tok, eot_id = models.load_base(cfg.model)
    lora.add_lora(model, cfg.train)
    loss_model = CausalLMLoss(model, train_rows=[eot_id])
    load_model(loss_model, run.state / "model.safetensors")  # strict: every tensor present, none left over
    loss_model.merge_rows()
    return model.eval(), tok


def assert_checkpoint_is_the_merged_model(cfg, run: RunDir):
    lora_b = [v for k, v in load_file(run.state / "model.safetensors").items() if ".lora_B." in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # every adapter trained (peft starts B at 0)
    trained, tok = trained_model(cfg, run)
    ckpt = run.checkpoints / "epoch-1"
    plain, info = AutoModelForCausalLM.from_pretrained(ckpt, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched tensors: a plain transformers folder
    assert not (ckpt / "adapter_config.json").exists()
    ids = tok("how do i cook rice<|eot|>boil water", return_tensors="pt").input_ids
    with torch.no_grad():
        want, got = trained(ids).logits, plain.eval()(ids).logits
        base = models.load_base(cfg.model)[0].eval()(ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert (got - base).abs().max() > 1e-2  # the adapters did change the model


@needs_peft
def test_lora_trains_only_adapters_and_eot_rows_records_it_and_resumes(tmp_path, tiny_llama):
    reference = run_train(curated(tmp_path / "a", tiny_llama))
    cfg = curated(tmp_path / "b", tiny_llama)
    run = killed_in_epoch_2(cfg)

    # in the base weights' place nothing moved but the EOT rows (merged in at the epoch's end); the adapters trained
    base, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    base_state = base.state_dict()
    state = load_file(run.state / "model.safetensors")
    adapters = {k: v for k, v in state.items() if ".lora_" in k or k.startswith("rows_")}
    assert sum(v.numel() for v in adapters.values()) == LLAMA_TRAINABLE
    rows = ("model.embed_tokens.weight", "lm_head.weight")
    for key, value in state.items():
        if key in adapters:
            continue
        name = key.removeprefix("lm.").replace(".base_layer.", ".")
        if name in rows:
            torch.testing.assert_close(value[:eot_id], base_state[name][:eot_id], rtol=0, atol=0)
            assert not torch.allclose(value[eot_id], base_state[name][eot_id])
        else:
            torch.testing.assert_close(value, base_state[name], rtol=0, atol=0)
    optimizer = torch.load(
        run.state / "optimizer.bin", weights_only=True
    )  # AdamW state exists for trained tensors only
    assert sum(s["exp_avg"].numel() for s in optimizer["state"].values()) == LLAMA_TRAINABLE

    assert_checkpoint_is_the_merged_model(cfg, run)

    out = run_train(cfg)  # resume from state/ (step 6): the same losses as the uninterrupted run
    for record in (
        json.loads(run.train_info.read_text())["lora"],
        json.loads((out / "manifest.json").read_text())["lora"],
    ):
        assert {k: record[k] for k in ("r", "alpha", "targets", "trainable_params")} == {
            "r": 4,
            "alpha": 8.0,
            "targets": LLAMA_KINDS,
            "trainable_params": LLAMA_TRAINABLE,
        }
        assert record["model_params"] == sum(p.numel() for p in base.parameters()) + 3 * 2048  # + the adapters
        assert "fine-tunes all weights" in record["note"]
    losses = [
        [r["loss"] for r in read_jsonl_plain(d / "metrics.jsonl") if r["type"] == "train"] for d in (reference, out)
    ]
    assert len(losses[1]) == 12 and losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert losses[1][-1] < losses[1][0]
    assert json.loads((out / "manifest.json").read_text())["resumed_from_step"] == 6
    assert [c["name"] for c in RunDir(cfg.run_dir).list_checkpoints()] == ["epoch-1", "epoch-2"]


@needs_peft
@pytest.mark.parametrize(
    "family,extra",
    [
        ("gpt2", {}),  # Conv1D layers, their weights stored transposed
        (
            "gemma3",
            {"train.gradient_checkpointing": True},
        ),  # an output head tied to the embedding; recomputed activations
    ],
)
def test_merged_checkpoint_equals_the_trained_model(tmp_path, tiny_model_dirs, family, extra, monkeypatch):
    adapted, add_lora = [], lora.add_lora
    monkeypatch.setattr(lora, "add_lora", lambda model, *a: adapted.append(model) or add_lora(model, *a))
    cfg = curated(tmp_path, tiny_model_dirs[family], **{"train.lora_dropout": 0.1, **extra})
    assert_checkpoint_is_the_merged_model(cfg, killed_in_epoch_2(cfg))
    # the adapters' dropout kept its p beside LIMA's residual dropout (which zeroes the model's own dropouts)
    dropouts = [m for name, m in adapted[0].named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in dropouts)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("train.lora_r", 0, "train.lora_r must be >= 1 (or null), got 0"),
        ("train.lora_r", 2.5, "train.lora_r: 2.5 does not match"),
        ("train.lora_alpha", 0, "train.lora_alpha must be > 0, got 0"),
        ("train.lora_dropout", 1.0, "train.lora_dropout must be in [0, 1), got 1.0"),
        ("train.lora_target_modules", [], "train.lora_target_modules must be all-linear or a list of layer names"),
        ("train.lora_target_modules", "", "train.lora_target_modules must be all-linear or a list of layer names"),
        ("train.lora_target_modules", ["q_proj", ""], "train.lora_target_modules must be all-linear or a list"),
    ],
)
def test_config_rejects_bad_lora_values(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", overrides={"train.lora_r": 8, key: value})


def test_lora_without_peft_says_how_to_install_it(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else find_spec(name, *a))
    with pytest.raises(
        ConfigError, match=re.escape("train.lora_r needs peft, which is not installed: pip install 'lima_repro[lora]'")
    ):
        load_config("demo", overrides={"train.lora_r": 8})
    load_config("demo")  # full fine-tuning never needs it


@pytest.mark.parametrize("kind", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_lora_refuses_sharded_training(tiny_llama, kind):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(ConfigError, match="train.lora_r: LoRA runs on one GPU or under DDP"):
        lora.add_lora(model, TrainConfig(lora_r=4), kind)


@needs_peft
@pytest.mark.parametrize(
    "targets,message",
    [
        (["nope_proj"], "not found in the base model"),
        (["q_proj", "lm_head"], "adapts the input embedding or the output head"),
    ],
)
def test_lora_targets_must_be_decoder_layers(tiny_llama, targets, message):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(ConfigError, match=rf"train.lora_target_modules=.*{message}.*use all-linear"):
        lora.add_lora(model, TrainConfig(lora_r=4, lora_target_modules=targets))
