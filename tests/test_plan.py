"""`plan`: parameter counts against real models, memory and time against hand-computed numbers on a tiny config."""

import pytest
from helpers import make_tokenizer, tiny_config, tiny_overrides
from transformers import AutoModelForCausalLM

from lima_repro import models
from lima_repro.cli import main
from lima_repro.config import ModelConfig, load_config
from lima_repro.plan import KNOWN_MODELS, Hardware, generate_memory, model_config, plan, shapes, train_memory

# tiny LLaMa of helpers.tiny_config: h 32, i 64, 3 layers, 4 heads of 8, 2 KV heads, vocab 259 (+1 EOT), untied
LAYER = 32 * 32 * 2 + 32 * 16 * 2 + 3 * 32 * 64 + 2 * 32  # q, o; k, v; gate, up, down; two norms = 9,280
PARAMS = 3 * LAYER + 2 * 259 * 32 + 32 + 2 * 32  # layers, embedding + head, final norm, EOT rows = 44,512


def test_parameter_count_is_the_models(tiny_llama):
    cfg = tiny_config("llama", len(make_tokenizer()))
    s = shapes(cfg)
    assert s.params == PARAMS == 44512 and s.layer_params == LAYER
    plain = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    assert s.params == plain + 2 * 32  # + LIMA's EOT row in the embedding and the untied head
    model, _, _ = models.load_base(ModelConfig(name=str(tiny_llama)))  # the model the trainer holds, EOT added
    assert shapes(model_config(str(tiny_llama))).params == sum(p.numel() for p in model.parameters())
    # the built-in shapes give the published sizes (+ EOT rows): LLaMa 7B 6,738,415,616; 65B 65,285,660,672
    assert shapes(KNOWN_MODELS["huggyllama/llama-7b"]()).params == 6_738_415_616 + 2 * 4096
    assert shapes(KNOWN_MODELS["huggyllama/llama-65b"]()).params == 65_285_660_672 + 2 * 8192


def test_memory_by_hand():
    s = shapes(tiny_config("llama", len(make_tokenizer())))
    per_token_layer = 2 * (6 * 32 + 2 * 16 + 4 * 64) + 32  # bf16 tensors kept for backward + dropout masks = 992
    assert train_memory(s, world=2, micro_tokens=100, checkpointing=False, loss_chunk=10) == {
        "weights_fp32": 4 * PARAMS / 2,
        "grads_fp32": 4 * PARAMS / 2,
        "adamw_fp32": 8 * PARAMS / 2,
        "gathered_bf16": 2 * (2 * LAYER + PARAMS - 3 * LAYER),
        "activations": 100 * 3 * per_token_layer,
        "loss_head": 2 * 4 * 10 * 260 + 4 * 260 * 32,
    }
    assert train_memory(s, 2, 100, True, 10)["activations"] == 100 * (3 * 2 * 32 + per_token_layer) == 118400
    assert generate_memory(s, tp=2, batch=3, seq_len=50) == {
        "weights_bf16": PARAMS,
        "kv_cache": 2 * 3 * 16 * 2 * 150 / 2,
    }


def test_plan_tokens_and_hours(tmp_path, tiny_llama):
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "curate.select_n": 10,
                "curate.selector": "random",
                "generate.checkpoints": "last",
                "generate.num_samples": 2,
            },
        ),
    )
    hw = Hardware(gpus=2, gpu_memory_gb=80, mfu=0.5, gen_mfu=0.1, peak_tflops=100, checkpointing=False)
    rows = {r["stage"]: r for r in plan(cfg, hw)}
    assert list(rows) == ["train", "generate"]  # the paper profile runs no ablations
    train, gen = rows["train"], rows["generate"]
    assert train["tokens"] == 10 * 2 * 192 and train["gpus_needed"] == 1 and train["gpus_used"] == 2
    assert train["hours"] == pytest.approx(6 * PARAMS * 3840 / (2 * 100e12 * 0.5) / 3600)
    assert gen["tokens"] == (1 + 1) * 3 * 2 * 24  # (base + last) x 3 prompts x 2 samples x cap 24
    assert gen["hours"] == pytest.approx(2 * PARAMS * gen["tokens"] / (2 * 100e12 * 0.1) / 3600)


def test_plan_cli_prints_a_table(tmp_path, tiny_llama, capsys):
    assert main(["plan", "--profile", "paper", "--set", f"model.name={tiny_llama}", "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert "0.00B parameters" in out and "4 GPU(s) x 80 GB" in out
    assert [line.split()[0] for line in out.splitlines()[3:6]] == ["train", "select", "generate"]


def test_plan_counts_checkpoint_lists_dev_responses_and_each_ablation_size(tmp_path, tiny_llama):
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "notebooks": ["03_generate", "05_ablations"],
                "generate.checkpoints": ["epoch-1", "epoch-2"],
                "generate.dev_responses": True,
                "generate.num_samples": 2,
                "ablations.only": ["se_filtered", "se_8k", "wikihow"],
                "ablations.n_examples": 100,
            },
        ),
    )
    rows = {r["stage"]: r for r in plan(cfg, Hardware(gpus=2))}
    assert list(rows) == ["generate", "ablation train (x3)", "ablation generate (x3)"]
    # 2 listed checkpoints (+ base, as tiny_overrides sets) x (3 test + 8 dev prompts) x 2 samples x cap 24
    assert rows["generate"]["tokens"] == (1 + 2) * (3 + 8) * 2 * 24
    # se_filtered x 2000 + se_8k x 8000 + wikihow (no x: ablations.n_examples 100), 2 epochs of 192 tokens each
    assert rows["ablation train (x3)"]["tokens"] == (2000 + 8000 + 100) * 2 * 192
