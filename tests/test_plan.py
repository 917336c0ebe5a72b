"""`plan`: parameter counts against real models, memory and time against hand-computed numbers on a tiny config."""

import json

import pytest
from helpers import make_tokenizer, tiny_config, tiny_overrides
from transformers import AutoModelForCausalLM

from lima_repro import models
from lima_repro.cli import main
from lima_repro.config import ConfigError, ModelConfig, load_config
from lima_repro.files import write_jsonl
from lima_repro.judging import protocols
from lima_repro.judging.items import draw_prompts
from lima_repro.plan import (
    KNOWN_MODELS,
    Hardware,
    generate_memory,
    model_config,
    plan,
    read_perf,
    shapes,
    train_memory,
)
from lima_repro.plan_judge import judge_plan, judged_prompts

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


def test_plan_of_the_lima_1k_llama2_profile_knows_llama_2_7b_without_the_hub():
    rows = plan(load_config("lima-1k-llama2"), Hardware())
    assert rows[0]["params"] == pytest.approx(6.74e9, rel=0.01)  # Llama-2-7B: 6,738,415,616 (+ 2 EOT rows)
    assert rows[0]["context"] == 4096  # Llama 2's context, twice LLaMa 1's
    s = shapes(KNOWN_MODELS["meta-llama/Llama-2-7b-hf"]())
    assert (s.hidden, s.intermediate, s.layers, s.kv_dim, s.vocab) == (4096, 11008, 32, 4096, 32001)


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


def test_plan_judge_requests_tokens_and_dollars(tmp_path, tiny_llama):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(
        prompts,
        [
            {"id": "p0", "conversations": ["Name a color."]},
            {"id": "p1", "conversations": ["Is it safe?"], "tags": ["sensitive"]},
            {"id": "p2", "conversations": ["Hi", "Hello!", "How are you?"]},
        ],
    )
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "generate.prompts_file": str(prompts),
                "generate.num_samples": 2,
                "generate.max_new_tokens": 10,
                "judge.max_tokens": 100,
                "judge.price_input_per_mtok": 10.0,
                "judge.price_output_per_mtok": 30.0,
            },
        ),
    )
    rows = judge_plan(cfg, judged_prompts(cfg, str(prompts), 3))
    # ours + base, 2 samples each: pairwise 3 prompts x 2 samples x 2 orders; absolute, likert every system's 3 x 2;
    # safety the sensitive p1 only, dialogue the multi-turn p2 only (2 systems x 2 samples each)
    requests = {"pairwise": 12, "absolute": 12, "likert": 12, "safety": 4, "dialogue": 4}
    assert {k: r["requests"] for k, r in rows.items()} == {**requests, "total": 44}
    # prompt characters: each template with its slots filled by the prompt and a 10-token (40-character) response
    response, turns = "x" * 40, "User: Hi\n\nAssistant: Hello!\n\nUser: How are you?"
    texts = {"p0": "Name a color.", "p1": "Is it safe?", "p2": turns}

    def chars(protocol: str, *values: str) -> int:
        template = protocols.template_text(protocol)
        return len(template) - sum(len("{{" + f + "}}") for f in protocols.get(protocol).fields) + sum(map(len, values))

    per = {
        "pairwise": 2 * 2 * sum(chars("pairwise", t, response, response) for t in texts.values()),
        "absolute": 2 * 2 * sum(chars("absolute", t, response) for t in texts.values()),
        "likert": 2 * 2 * sum(chars("likert", t, response) for t in texts.values()),
        "safety": 2 * 2 * chars("safety", texts["p1"], response),
        "dialogue": 2 * 2 * chars("dialogue", turns, response),
    }
    for k, n in requests.items():
        assert rows[k]["prompt_tokens"] == round(per[k] / 4)
        assert rows[k]["completion_tokens"] == 100 * n
        assert rows[k]["usd"] == pytest.approx((per[k] / 4 * 10 + 100 * n * 30) / 1e6)
    assert rows["total"]["usd"] == pytest.approx(sum(rows[k]["usd"] for k in requests))


PERF_LINES = [
    {"phase": "env", "torch": "2.13.0"},
    {"phase": "variant", "model": "llama-1b", "variant": "today", "mfu": 0.2},
    {"phase": "variants:llama-1b", "best": "+padded", "kept": ["+padded"], "best_mfu": 0.31, "today_mfu": 0.2},
    {"phase": "variants:gemma-270m", "best": "today", "kept": [], "best_mfu": 0.12, "today_mfu": 0.12},
    {"phase": "generate", "tokens_per_s": 1000},
]


def test_plan_reads_the_mfu_gpu_perf_check_measured(tmp_path, tiny_llama, capsys):
    perf = tmp_path / "perf.jsonl"
    write_jsonl(perf, PERF_LINES)
    # the model closest in parameter count: Gemma 3 270M for a tiny model, the Llama 1B shape for LLaMa 7B
    mfu, used = read_perf(perf, 44_512)
    assert mfu == 0.12 and "variants:gemma-270m" in used
    mfu, used = read_perf(perf, shapes(KNOWN_MODELS["huggyllama/llama-7b"]()).params)
    assert mfu == 0.31 and "variants:llama-1b" in used and "+padded" in used
    assert main(["plan", "--profile", "paper", "--set", f"model.name={tiny_llama}", "--perf", str(perf)]) == 0
    out = capsys.readouterr().out
    assert "MFU train 0.12 / generate 0.1" in out and "training MFU 0.12 measured" in out
    assert "judge protocol" in out and out.splitlines()[-2].split()[0] == "total"
    perf.write_text(json.dumps(PERF_LINES[0]) + "\n")
    with pytest.raises(ConfigError, match="no variants line with a best_mfu"):
        read_perf(perf, 44_512)


def test_plan_of_the_paper_without_test_prompts_counts_fig3s_two_draws(tmp_path, tiny_llama):
    """No test file: the paper's 300 stand-ins, 30 sensitive and 20 ood; absolute grades go to the random 50 and to
    the OOD draw's 20 (those of the 20 outside the 50 are extra requests), for ours and each baseline."""
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run"))
    prompts = judged_prompts(cfg, None, 300)
    assert [p["tags"] for p in prompts[29:31]] == [["sensitive"], ["ood"]] and prompts[50]["tags"] == []
    ids = [p["id"] for p in prompts]
    randomly = set(draw_prompts(ids, 50, cfg.seed))
    extra = {f"p{i}" for i in range(30, 50)} - randomly  # all 20 ood prompts are the OOD draw (20 of 20)
    systems = 1 + len([b for b in cfg.judge.baselines if b != "system"])
    samples = cfg.generate.num_samples
    rows = judge_plan(cfg, prompts)
    assert rows["absolute"]["requests"] == systems * samples * (50 + len(extra))
