import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from lima_repro import models
from lima_repro.config import GenerateConfig, ModelConfig, load_config
from lima_repro.curate import run_curate
from lima_repro.data import DataError
from lima_repro.generate import Chat, run_generate
from lima_repro.sampling import GeneratedRepetitionPenalty, sample
from lima_repro.files import read_jsonl_plain
from lima_repro.runs import RunDir
from lima_repro.select_checkpoint import run_select
from lima_repro.train import run_train

from helpers import ScriptJudge, tiny_overrides


def test_repetition_penalty_only_on_generated_tokens():
    proc = GeneratedRepetitionPenalty(2.0, prompt_len=3)
    ids = torch.tensor([[5, 6, 7, 1, 2]])  # prompt 5 6 7, generated 1 2
    scores = torch.tensor([[1.0, 4.0, -4.0, 0.5, 0.5, 3.0, 3.0, 3.0]])
    out = proc(ids, scores.clone())
    assert out.tolist() == [[1.0, 2.0, -8.0, 0.5, 0.5, 3.0, 3.0, 3.0]]
    assert torch.equal(GeneratedRepetitionPenalty(2.0, prompt_len=5)(ids, scores.clone()), scores)


def test_sample_stops_at_eot_and_keeps_input_order(tiny_llama):
    model, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    g = GenerateConfig(max_new_tokens=6, num_samples=2, batch_size=3)
    prompts = [[1, 10, 11], [1, 12], [1, 13, 14, 15, 16]]
    torch.manual_seed(0)
    out = sample(model, tok, eot_id, prompts, g, progress=False)
    assert [(r["prompt_index"], r["sample"]) for r in out] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(len(r["ids"]) <= 6 for r in out)
    # a model whose first prediction is EOT stops at once, and says so: point EOT's output row along the
    # prompt's last hidden state and zero every other row
    sure = AutoModelForCausalLM.from_config(model.config)
    sure.load_state_dict(model.state_dict())
    with torch.no_grad():
        sure.lm_head.weight.zero_()
        hidden = sure.model(torch.tensor([prompts[0]])).last_hidden_state[0, -1]
        sure.lm_head.weight[eot_id] = 50.0 * hidden / hidden.norm()
    res = sample(sure, tok, eot_id, [prompts[0]], GenerateConfig(max_new_tokens=5, batch_size=1), progress=False)
    assert res[0]["stopped_at_eot"] is True and res[0]["ids"] == []


def test_run_generate_writes_rows_for_base_and_checkpoints(tmp_path, tiny_llama):
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{"train.epochs": 1,
                                                                                          "generate.num_samples": 2}))
    run_curate(cfg)
    run_train(cfg)
    out = run_generate(cfg)
    rows = read_jsonl_plain(out / "generations.jsonl")
    assert len(rows) == 2 * 3 * 2  # (base + epoch-1) x 3 prompts x 2 samples
    assert {r["checkpoint"] for r in rows} == {"base", "epoch-1"}
    r = rows[-1]
    assert set(r) >= {"checkpoint", "prompt_id", "sample", "response", "prompt_tokens", "response_tokens",
                      "stopped_at_eot", "messages"}
    assert r["messages"][-1]["role"] == "user" and 0 <= r["response_tokens"] <= 24
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generation"]["rows"] == 12
    # same seed, same outputs
    again = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert [x["response"] for x in again] == [x["response"] for x in rows]
    # a chat keeps its history
    chat = Chat(rows[-1]["checkpoint_path"], max_new_tokens=4)
    chat("Hello")
    chat("More")
    assert [m["role"] for m in chat.history] == ["user", "assistant", "user", "assistant"]


def test_prompt_longer_than_context_is_a_clear_error(tmp_path, tiny_llama):
    long_prompt = tmp_path / "long.jsonl"
    long_prompt.write_text(json.dumps({"id": "big", "conversations": ["x" * 600]}) + "\n")
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{
        "generate.prompts_file": str(long_prompt), "generate.checkpoints": [], "generate.include_base": True}))
    with pytest.raises(DataError, match=r"long.jsonl:id big: prompt has 602 tokens.*context of 512.*Fix"):
        run_generate(cfg)
    cfg.generate.checkpoints, cfg.generate.include_base = [str(tiny_llama)], False
    with pytest.raises(ValueError, match="has no <|eot|> token"):
        run_generate(cfg)


def test_selected_checkpoint_is_chosen_on_dev_and_used(tmp_path, tiny_llama):
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{
        "generate.include_base": False, "generate.checkpoints": "selected", "judge.selection_window": [1, 1],
        "judge.max_prompts": 2}))
    run_curate(cfg)
    run_train(cfg)  # epochs 1 and 2; the window admits only epoch 1
    with pytest.raises(FileNotFoundError, match="run the select stage first"):
        run_generate(cfg)  # generation never starts a selection by itself
    assert run_select(cfg, judge=ScriptJudge()) == tmp_path / "run" / "select"
    sel = RunDir.of(cfg).read_selection()
    assert sel["chosen"] == "epoch-1" and "epochs 1-1" in sel["why"]
    assert sel["generation"] == {"backend": "torch", "repetition_penalty_scope": "generated"}
    dev_rows = read_jsonl_plain(tmp_path / "run" / "select" / "dev_generations.jsonl")
    assert {r["checkpoint"] for r in dev_rows} == {"epoch-1"} and len(dev_rows) == 2
    assert load_config("paper").generate.checkpoints == "selected"  # the paper generates with the chosen one
    rows = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert {r["checkpoint"] for r in rows} == {"epoch-1"}
