"""The GPU-scale profiles resolve to what they promise, and GAIR/lima rows are picked by source."""

import json
from pathlib import Path

import pytest
from helpers import tiny_overrides

from lima_repro import data, figures_published, paper_values
from lima_repro.config import load_config, to_dict
from lima_repro.curate import run_curate
from lima_repro.data import DataError
from lima_repro.files import read_jsonl_plain, write_json
from lima_repro.plan import KNOWN_MODELS, Hardware, plan, shapes
from lima_repro.sampling import new_token_caps

GAIR = Path(__file__).parent / "fixtures" / "gair_lima" / "train.jsonl"


def test_paper_profile_runs_the_main_model_only_and_fits_a_2048_context():
    cfg = load_config("paper")
    assert cfg.notebooks == ["01_curate", "02_train", "03_generate", "04_judge", "06_figures"]
    assert cfg.curate.train_files == ["data/lima/train.jsonl#without=multi_turn"]  # LIMA sec. 2: the 1,000
    assert "05_ablations" in load_config("ablation-7b").notebooks  # the ablations are their own profile
    context = shapes(KNOWN_MODELS[cfg.model.name]()).context
    assert context == 2048 and cfg.train.max_length <= context
    assert cfg.generate.max_new_tokens == 2048  # LIMA sec. 3's number, now a cap on prompt + response
    prompts = [[1] * n for n in (1, 40, 1500, 2047)]
    caps = new_token_caps(prompts, KNOWN_MODELS[cfg.model.name](), cfg.generate)
    assert caps == [2047, 2008, 548, 1]
    assert [len(p) + c for p, c in zip(prompts, caps)] == [context] * 4


def test_lima_1k_profile():
    cfg = load_config("lima-1k")
    assert cfg.model.name in KNOWN_MODELS and cfg.model.name == "Qwen/Qwen2.5-7B"
    assert cfg.curate.train_files == ["hf:GAIR/lima/train.jsonl#without=multi_turn"]
    # LIMA sec. 3's recipe with the smaller-model batch and dropout
    t = cfg.train
    assert (t.batch_size, t.residual_dropout, t.epochs, t.lr, t.lr_end, t.max_length) == (64, 0.2, 15, 1e-5, 1e-6, 2048)
    assert cfg.generate.prompts_file == "data/alpaca_eval/alpaca_eval.json"
    assert cfg.judge.baseline_files == {"gpt4_turbo": "data/alpaca_eval/gpt4_turbo_outputs.json"}
    assert cfg.judge.protocols == ["pairwise"] and cfg.judge.length_control
    assert "05_ablations" not in cfg.notebooks
    published = {(v.key, v.value, v.confirmed) for v in paper_values.VALUES if v.figure == "LIMA-1k"}
    assert published == {
        ("Llama-2-7B/alpaca_eval_2/unresolved", 2.74, True),
        ("Llama-2-7B/mt_bench/score", 3.95, True),
        ("Mistral-7B/alpaca_eval_2/unresolved", 6.76, False),
        ("LLaMA-1-13B/alpaca_eval_1/win", 41.98, True),
        ("LLaMA-1-13B/mt_bench/score", 4.29, True),
    }
    llama2 = paper_values.LIMA_1K_PUBLISHED[1]
    setup = {"model": cfg.model.name, "benchmark": "mt_bench", "metric": "score", "chat_template": "lima"}
    assert "base model: run Qwen/Qwen2.5-7B, published Llama-2-7B" in paper_values.setup_differences(llama2, setup)


def test_lima_1k_llama2_profile_is_the_published_recipe(tmp_path):
    """The profile's run, as published_comparison reads it from its config.json, matches the published setup in
    everything but AlpacaEval's unresolved metric: Vicuna template applied, greedy decoding."""
    cfg = load_config("lima-1k-llama2")
    assert cfg.model.name == "meta-llama/Llama-2-7b-hf" and cfg.model.chat_template == "vicuna"
    assert (cfg.generate.temperature, cfg.generate.repetition_penalty) == (0, 1.0)
    write_json(tmp_path / "run" / "config.json", to_dict(cfg))
    run = {**figures_published.run_setup(tmp_path / "run"), "benchmark": "mt_bench", "metric": "score"}
    assert (run["chat_template"], run["decoding"]) == ("vicuna", "greedy")
    mt_bench = paper_values.LIMA_1K_PUBLISHED[1]
    assert paper_values.setup_differences(mt_bench, run) == []
    alpaca = paper_values.LIMA_1K_PUBLISHED[0]  # LC or raw unknown, decoded greedily
    assert paper_values.setup_differences(alpaca, {**run, "benchmark": "alpaca_eval_2", "metric": "lc_win"}) == [
        "metric: run lc_win, published unresolved",
    ]
    assert load_config("lima-1k").model.chat_template == load_config("paper").model.chat_template == "lima"


def test_gair_rows_by_source():
    every = data.read_examples(GAIR)
    assert len(every) == 10 and sum(ex["source"] == "multi_turn" for ex in every) == 2
    single = data.read_examples(f"{GAIR}#without=multi_turn")  # the paper's 1,000 (here 8)
    assert len(single) == 8 and all(len(ex["messages"]) == 2 for ex in single)
    assert [ex["id"] for ex in single] == [ex["id"] for ex in every if ex["source"] != "multi_turn"]
    chains = data.read_examples(f"{GAIR}#only=multi_turn")
    assert [len(ex["messages"]) for ex in chains] == [4, 6]
    assert len(data.read_examples(f"{GAIR}#only=wikihow,nlp")) == 3
    with pytest.raises(DataError, match="unknown row selection 'except=nlp'"):
        data.read_examples(f"{GAIR}#except=nlp")
    with pytest.raises(DataError, match=r"no rows with source \['dialog'\]"):
        data.read_examples(f"{GAIR}#only=dialog")


def test_gair_from_the_hub_with_a_selection(monkeypatch):
    asked = []

    def fake_download(repo_id, filename, repo_type):
        asked.append((repo_id, filename, repo_type))
        return str(GAIR)

    monkeypatch.setattr(data, "hf_hub_download", fake_download)
    rows = data.read_examples("hf:GAIR/lima/train.jsonl#without=multi_turn")
    assert asked == [("GAIR/lima", "train.jsonl", "dataset")] and len(rows) == 8


def test_curate_trains_on_the_selected_rows(tmp_path, tiny_llama):
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{"curate.train_files": [f"{GAIR}#without=multi_turn"], "curate.count_tokens": False},
        ),
    )
    out = run_curate(cfg)
    train = read_jsonl_plain(out / "train.jsonl")
    assert len(train) == 8 and "multi_turn" not in {r["source"] for r in train}
    assert json.loads((out / "datacard.json").read_text())  # the card is written as usual


def test_lima_1k_plan_counts_the_alpaca_eval_prompts(tmp_path):
    prompts = tmp_path / "alpaca_eval.json"  # AlpacaEval's evaluation set: instruction, reference output, generator
    prompts.write_text(
        json.dumps(
            [
                {
                    "dataset": "helpful_base",
                    "instruction": f"Question {i}?",
                    "output": "ref",
                    "generator": "text_davinci_003",
                }
                for i in range(3)
            ]
        )
    )
    cfg = load_config("lima-1k", overrides={"generate.prompts_file": str(prompts)})
    rows = {r["stage"]: r for r in plan(cfg, Hardware())}
    assert list(rows) == ["train", "generate"]
    assert rows["generate"]["tokens"] == 1 * 3 * 1 * 2048  # the last checkpoint x 3 prompts x 1 sample x cap
    assert rows["train"]["tokens"] == 1000 * 15 * 2048  # the hub file is not here: LIMA's 1,000 examples
    assert rows["generate"]["gpus_used"] == 8 and rows["generate"]["memory"]["weights_bf16"] == pytest.approx(
        2 * shapes(KNOWN_MODELS["Qwen/Qwen2.5-7B"]()).params / 4
    )  # 28 heads: split over 4 GPUs


def test_demo_judges_safety_on_its_sensitive_prompts():
    sensitive = [r for r in data.read_examples("demo:test.jsonl", ends_with=None) if "sensitive" in r.get("tags", [])]
    assert len(sensitive) == 3 and "safety" in load_config("demo").judge.protocols
