import json

import pytest
import torch
from helpers import ScriptJudge, make_tokenizer, tiny_config, tiny_overrides
from transformers import AutoModelForCausalLM

from lima_repro import models
from lima_repro.chat_format import ChatFormat, encode_prompt, render_vicuna
from lima_repro.config import ConfigError, GenerateConfig, ModelConfig, load_config
from lima_repro.curate import run_curate
from lima_repro.data import DataError
from lima_repro.files import read_jsonl_plain
from lima_repro.generate import Chat, run_generate
from lima_repro.runs import RunDir
from lima_repro.sampling import GeneratedRepetitionPenalty, decode, new_token_caps, sample, sampling_record
from lima_repro.select_checkpoint import run_select
from lima_repro.train import run_train


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
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{"train.epochs": 1, "generate.num_samples": 2}),
    )
    run_curate(cfg)
    run_train(cfg)
    out = run_generate(cfg)
    rows = read_jsonl_plain(out / "generations.jsonl")
    assert len(rows) == 2 * 3 * 2  # (base + epoch-1) x 3 prompts x 2 samples
    assert {r["checkpoint"] for r in rows} == {"base", "epoch-1"}
    r = rows[-1]
    assert set(r) >= {
        "checkpoint",
        "prompt_id",
        "sample",
        "response",
        "prompt_tokens",
        "response_tokens",
        "stopped_at_eot",
        "messages",
    }
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
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{"generate.prompts_file": str(long_prompt), "generate.checkpoints": [], "generate.include_base": True},
        ),
    )
    with pytest.raises(DataError, match=r"long.jsonl:id big: prompt has 602 tokens.*no room.*context of 512.*Fix"):
        run_generate(cfg)
    cfg.generate.checkpoints, cfg.generate.include_base = [str(tiny_llama)], False
    with pytest.raises(ValueError, match="has no <|eot|> token"):
        run_generate(cfg)


def test_selected_checkpoint_is_chosen_on_dev_and_used(tmp_path, tiny_llama):
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "generate.include_base": False,
                "generate.checkpoints": "selected",
                "judge.selection_window": [1, 1],
                "judge.max_prompts": 2,
            },
        ),
    )
    run_curate(cfg)
    run_train(cfg)  # epochs 1 and 2; the window admits only epoch 1
    with pytest.raises(FileNotFoundError, match="run the select stage first"):
        run_generate(cfg)  # generation never starts a selection by itself
    assert run_select(cfg, judge=ScriptJudge()) == tmp_path / "run" / "select"
    sel = RunDir.of(cfg).read_selection()
    assert sel["chosen"] == "epoch-1" and "epochs 1-1" in sel["why"]
    assert sel["generation"] == {
        "backend": "torch",
        "decoding": "sampling (temperature 0.7, top_p 0.9)",
        "repetition_penalty_scope": "generated",
        "sampler": "dynamic",
    }
    dev_rows = read_jsonl_plain(tmp_path / "run" / "select" / "dev_generations.jsonl")
    assert {r["checkpoint"] for r in dev_rows} == {"epoch-1"} and len(dev_rows) == 2
    assert load_config("paper").generate.checkpoints == "selected"  # the paper generates with the chosen one
    rows = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert {r["checkpoint"] for r in rows} == {"epoch-1"}


def save_short_context_model(folder, context: int):
    """A tiny LLaMa whose context (`max_position_embeddings`) is `context` tokens."""
    tok = make_tokenizer()
    cfg = tiny_config("llama", len(tok))
    cfg.max_position_embeddings = context
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_decode_stops_each_row_at_its_own_cap(tiny_llama):
    model, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    g = GenerateConfig(max_new_tokens=9)
    torch.manual_seed(0)
    out = decode(model, [[1, 10, 11], [1, 12], [1, 13, 14, 15]], tok.pad_token_id, [-1], g, caps=[3, 7, 1])
    assert [len(o) for o in out] == [3, 7, 1]  # stop id -1 is never sampled: each row runs to its cap
    assert [len(o) for o in decode(model, [[1, 10]], tok.pad_token_id, [-1], g)] == [9]  # default: the config's
    assert new_token_caps([[1] * 10, [1] * 20, [1] * 2], model.config, GenerateConfig(max_new_tokens=500)) == [
        500,
        492,
        500,
    ]  # context 512


def test_cap_is_the_context_left_when_max_new_tokens_equals_the_context(tmp_path):
    context = 48
    folder = save_short_context_model(tmp_path / "short", context)
    model, tok, eot_id = models.load_base(ModelConfig(name=str(folder)))
    prompts = [[1] + list(range(10, 20)), [1] + list(range(10, 40))]  # 11 and 31 tokens
    torch.manual_seed(0)
    res = sample(model, tok, eot_id, prompts, GenerateConfig(max_new_tokens=context, batch_size=2), progress=False)
    assert [r["max_new_tokens"] for r in res] == [37, 17]
    assert all(len(r["ids"]) <= r["max_new_tokens"] for r in res)
    assert all(len(r["ids"]) == r["max_new_tokens"] for r in res if r["stop"] == "max_new_tokens")

    # the stage: every row records its cap, prompt + cap == the context; a prompt filling the context still fails
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "conversations": [text]}) + "\n"
            for i, text in enumerate(["Hi", "Name a color, please."])
        )
    )
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            folder,
            tmp_path / "run",
            **{
                "generate.prompts_file": str(prompts_file),
                "generate.checkpoints": [],
                "generate.include_base": True,
                "generate.max_new_tokens": context,
            },
        ),
    )
    rows = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert len(rows) == 2 and rows[0]["prompt_tokens"] < rows[1]["prompt_tokens"]
    assert [r["prompt_tokens"] + r["max_new_tokens"] for r in rows] == [context, context]
    assert all(r["response_tokens"] <= r["max_new_tokens"] for r in rows)
    prompts_file.write_text(json.dumps({"id": "long", "conversations": ["y" * context]}) + "\n")
    with pytest.raises(DataError, match=r"prompts.jsonl:id long: prompt has \d+ tokens.*context of 48"):
        run_generate(cfg)


def test_checkpoint_loaded_with_a_device_map_samples_the_same(tmp_path, tiny_llama, monkeypatch):
    """Several GPUs load a checkpoint with device_map="auto" (layers spread over them); on a CPU that map is the
    CPU, so the rows must equal those of the plain load, token for token."""
    ckpt = tmp_path / "ckpt"
    model, tok, _ = models.load_base(ModelConfig(name=str(tiny_llama)))
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "generate.prompts_file": "demo:test.jsonl",
                "generate.checkpoints": [str(ckpt)],
                "generate.include_base": False,
            },
        ),
    )
    plain = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    loads = []
    real = models.load_checkpoint

    def spy(path, dtype, device_map=None):
        loads.append(device_map)
        return real(path, dtype=dtype, device_map=device_map)

    monkeypatch.setattr(models, "inference_device_map", lambda: "auto")
    monkeypatch.setattr(models, "load_checkpoint", spy)
    mapped = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert loads == ["auto"]
    assert [r["response"] for r in mapped] == [r["response"] for r in plain] and len(plain) == 3


def test_greedy_is_argmax_by_hand_and_the_same_for_every_seed(tiny_llama):
    """generate.temperature 0: the most likely token at each step (no penalty here), whatever the seed; the
    batched, left-padded KV-cache decode equals a plain argmax loop over each prompt alone."""
    model, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    g = GenerateConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=5, batch_size=2)
    g.check()
    assert sampling_record(g)["decoding"] == "greedy"
    assert sampling_record(GenerateConfig())["decoding"] == "sampling (temperature 0.7, top_p 0.9)"
    prompts = [[1, 10, 11, 12], [1, 13]]
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        runs.append([r["ids"] for r in sample(model, tok, eot_id, prompts, g, progress=False)])
    assert runs[0] == runs[1]
    stops = models.stop_ids(tok, eot_id)
    for prompt, got in zip(prompts, runs[0]):
        ids, mine = list(prompt), []
        with torch.no_grad():
            for _ in range(5):
                nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if nxt in stops:
                    break
                ids, mine = [*ids, nxt], [*mine, nxt]
        assert got == mine
    with pytest.raises(ConfigError, match="generate.temperature"):
        GenerateConfig(temperature=-0.1).check()


def test_vicuna_run_trains_generates_and_saves_its_format(tmp_path, tiny_llama):
    """model.chat_template vicuna end to end: no EOT token is added, the checkpoint carries vicuna's Jinja and its
    format, prompts end in `ASSISTANT:`, EOS is the end of turn (`stop` eot), greedy answers repeat across seeds."""
    over = {"model.chat_template": "vicuna", "train.epochs": 1, "train.max_steps": 1, "generate.temperature": 0}
    over["train.max_length"] = 480  # vicuna's system line alone is ~150 characters, one token each here
    over.update({"train.batch_size": 4, "generate.include_base": False, "generate.max_prompts": 2})
    over["generate.max_new_tokens"] = 8
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **over))
    base, base_tok, end_id = models.load_base(cfg.model)
    assert len(base_tok) == len(make_tokenizer()) == base.get_input_embeddings().weight.shape[0]
    assert end_id == base_tok.eos_token_id and base.generation_config.eos_token_id == [end_id]
    run_curate(cfg)
    run_train(cfg)
    (ckpt,) = RunDir.of(cfg).list_checkpoints()
    assert (ckpt["chat_template"], ckpt["eot_token"]) == ("vicuna", "</s>")
    model, tok = models.load_checkpoint(ckpt["path"])
    assert len(tok) == len(base_tok)
    msgs = [{"role": "user", "content": "Hi"}]
    assert (
        tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        == (render_vicuna(msgs, "<s>", "</s>", generation_prompt=True)[0])
    )
    out = run_generate(cfg)
    rows = read_jsonl_plain(out / "generations.jsonl")
    assert json.loads((out / "manifest.json").read_text())["generation"]["decoding"] == "greedy"
    for r in rows:
        prompt = encode_prompt(tok, r["messages"], ChatFormat("vicuna"))
        assert tok.decode(prompt).endswith(" ASSISTANT:") and r["prompt_tokens"] == len(prompt)
        assert r["stop"] in ("eot", "max_new_tokens") and r["stopped_at_eot"] == (r["stop"] == "eot")
    cfg.generate.seed = 7
    again = read_jsonl_plain(run_generate(cfg) / "generations.jsonl")
    assert [x["response"] for x in again] == [x["response"] for x in rows]
    chat = Chat(ckpt["path"], max_new_tokens=3, temperature=0)
    assert chat.format.name == "vicuna" and chat.eot_id == tok.eos_token_id
    chat("Hello")
