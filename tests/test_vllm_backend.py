"""The vLLM generation backend, against a fake `vllm` module (vLLM itself needs a GPU and is not installed here).

The fake is a package on sys.path (so the spawned engine processes import it too): it implements only what lima_repro
calls (LLM, SamplingParams), records what it was given in a file, and answers with RequestOutput/CompletionOutput-shaped
objects scripted by the test. Expectations come
from the torch backend run on the same tiny model and from the script, not from the code under test."""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import make_tokenizer, tiny_config, tiny_overrides
from transformers import AutoModelForCausalLM

from lima_repro import generate, models, vllm_backend
from lima_repro.config import GenerateConfig, ModelConfig, load_config
from lima_repro.files import read_jsonl_plain
from lima_repro.generate import resolve_backend, run_generate
from lima_repro.vllm_backend import max_model_len, sampling_params, split_stop, tensor_parallel_size

EOT = "<|eot|>"
MAX_NEW = 8


FAKE_VLLM = """
# A fake vllm package: only what lima_repro calls (LLM, SamplingParams), in whatever process imports it. Each LLM and
# generate call is appended to ../calls.jsonl; the completions come from ../fake_vllm_respond.py's respond().
import json, os
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from fake_vllm_respond import respond

LOG = Path(__file__).parent.parent / "calls.jsonl"


def _log(**row):
    with LOG.open("a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), **row}) + "\\n")


@dataclass
class CompletionOutput:  # the fields of vllm.outputs.CompletionOutput that matter here
    index: int
    text: str
    token_ids: list
    cumulative_logprob: object
    logprobs: object
    finish_reason: object
    stop_reason: object


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list
    outputs: list
    finished: bool = True


class SamplingParams:
    def __init__(self, *, n=1, top_p=1.0, temperature=1.0, repetition_penalty=1.0, max_tokens=16,
                 stop_token_ids=None, seed=None):
        self.n, self.top_p, self.temperature, self.repetition_penalty = n, top_p, temperature, repetition_penalty
        self.max_tokens, self.stop_token_ids, self.seed = max_tokens, stop_token_ids, seed


class LLM:
    def __init__(self, model, *, tokenizer=None, dtype="auto", seed=None, generation_config="auto",
                 trust_remote_code=False, tensor_parallel_size=1, max_model_len=None, gpu_memory_utilization=0.9):
        tok = AutoTokenizer.from_pretrained(tokenizer)  # what vLLM would load, inspected while the folder exists
        _log(call="llm", model=model, tokenizer=tokenizer, dtype=dtype, seed=seed, generation_config=generation_config,
             eot_id=tok.convert_tokens_to_ids("<|eot|>"), has_eot="<|eot|>" in tok.get_vocab(),
             tensor_parallel_size=tensor_parallel_size, vocab_size=AutoConfig.from_pretrained(model).vocab_size,
             max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization)

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        _log(call="generate", prompts=[list(p["prompt_token_ids"]) for p in prompts],
             params=[vars(sp) for sp in sampling_params])
        return [
            RequestOutput(str(i), p["prompt_token_ids"],
                          [CompletionOutput(k, "", *respond(p["prompt_token_ids"], k, sp), None, None)
                           for k in range(sp.n)])
            for i, (p, sp) in enumerate(zip(prompts, sampling_params))
        ]
"""


def install_fake_vllm(monkeypatch, tmp_path: Path, respond_source: str) -> Path:
    """Put a fake `vllm` package on sys.path, which spawned engine processes inherit. `respond_source` defines
    `respond(prompt_ids, sample, params)` -> (token_ids, finish_reason, stop_reason), scripting each completion.
    Returns the file of recorded calls (`calls`)."""
    root = tmp_path / "fake_vllm"
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    (root / "fake_vllm_respond.py").write_text(respond_source)
    for name in ("vllm", "fake_vllm_respond"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(root))
    return root / "calls.jsonl"


def calls(log: Path, kind: str) -> list[dict]:
    return [r for r in read_jsonl_plain(log) if r["call"] == kind] if log.exists() else []


def test_resolve_backend(monkeypatch, tmp_path):
    cuda = {"on": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda["on"])
    monkeypatch.setitem(sys.modules, "vllm", None)  # None in sys.modules: `import vllm` raises ImportError
    cuda["on"] = True
    assert resolve_backend(GenerateConfig(backend="auto")) == "torch"  # GPU but no vLLM
    with pytest.raises(ImportError, match=r"pip install vllm.*generate\.backend: torch"):
        resolve_backend(GenerateConfig(backend="vllm"))
    install_fake_vllm(monkeypatch, tmp_path, "respond = None\n")
    assert resolve_backend(GenerateConfig(backend="auto")) == "vllm"  # GPU and vLLM
    assert resolve_backend(GenerateConfig(backend="torch")) == "torch"
    cuda["on"] = False
    assert resolve_backend(GenerateConfig(backend="auto")) == "torch"  # vLLM but no GPU
    assert resolve_backend(GenerateConfig(backend="vllm")) == "vllm"  # forced


def test_backend_vllm_without_vllm_is_a_clear_error(tmp_path, tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "conversations": ["Hi"]}) + "\n")
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{"generate.prompts_file": str(prompts), "generate.checkpoints": [], "generate.backend": "vllm"},
        ),
    )
    with pytest.raises(ImportError, match="pip install vllm"):
        run_generate(cfg)


@pytest.mark.parametrize(
    "token_ids, finish, stop_reason, expected",
    [
        ([7, 8, 99], "stop", 99, ([7, 8], True)),  # vLLM V1: the EOT stop token is the last of token_ids
        ([7, 8], "stop", 99, ([7, 8], True)),  # a version that drops the stop token: stop_reason names it
        ([7, 8, 2], "stop", None, ([7, 8], False)),  # the model's EOS: stop_reason None
        ([7, 8], "stop", None, ([7, 8], False)),
        ([7, 8, 9], "length", None, ([7, 8, 9], False)),  # max_tokens
        ([7, 99], "length", None, ([7], True)),  # EOT sampled as the last allowed token: the torch sampler says EOT
    ],
)
def test_split_stop_counts_like_the_torch_sampler(token_ids, finish, stop_reason, expected):
    assert split_stop(token_ids, finish, stop_reason, stops=[99, 2], eot_id=99) == expected


def test_vicuna_stop_is_eos_and_greedy_is_one_vllm_sample():
    """Vicuna ends a turn with EOS, the one stop token: EOS is the end of turn whether vLLM keeps it or not. Greedy
    (temperature 0) is vLLM's greedy: one sample (vLLM refuses more), top_p 1."""
    assert split_stop([7, 8, 2], "stop", None, stops=[2], eot_id=2) == ([7, 8], True)
    assert split_stop([7, 8], "stop", None, stops=[2], eot_id=2) == ([7, 8], True)
    g = GenerateConfig(temperature=0, num_samples=3)
    assert sampling_params(g, [2], seed=5, max_tokens=9) == dict(
        n=1, top_p=1.0, temperature=0, repetition_penalty=1.2, max_tokens=9, stop_token_ids=[2], seed=5
    )
    assert sampling_params(GenerateConfig(num_samples=3), [2], seed=5, max_tokens=9)["n"] == 3


@pytest.mark.slow  # four engine processes spawned, each importing torch and transformers
def test_vllm_rows_match_torch_rows(tmp_path, tiny_llama, monkeypatch, caplog):
    # a fine-tuned-format checkpoint without training: the base with EOT added, saved
    ckpt = tmp_path / "ckpt"
    model, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama)))
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps(x) + "\n"
            for x in [
                {"id": "p0", "conversations": ["Name a color."]},
                {"id": "p1", "conversations": ["Hi", "Hello!", "How are you today?"]},
                {"id": "p2", "conversations": ["Why?"]},
            ]
        )
    )
    overrides = tiny_overrides(
        tiny_llama,
        tmp_path / "run",
        **{
            "generate.prompts_file": str(prompts),
            "generate.checkpoints": [str(ckpt)],
            "generate.include_base": True,
            "generate.num_samples": 2,
            "generate.max_new_tokens": MAX_NEW,
        },
    )

    # torch backend, recording the prompt ids its sampler is given
    torch_prompts = []
    real_sample = generate.sample

    def spy(model, tokenizer, eot_id, prompt_ids, g, **kw):
        torch_prompts.append([list(p) for p in prompt_ids])
        return real_sample(model, tokenizer, eot_id, prompt_ids, g, **kw)

    monkeypatch.setattr(generate, "sample", spy)
    out = run_generate(load_config("paper", overrides={**overrides, "generate.backend": "torch"}))
    torch_rows = read_jsonl_plain(out / "generations.jsonl")
    torch_manifest = json.loads((out / "manifest.json").read_text())["generation"]
    assert torch_manifest["backend"] == "torch" and torch_manifest["repetition_penalty_scope"] == "generated"

    # vLLM backend, scripted: sample 0 says "abc" then EOT; sample 1 runs to max_tokens with "x"
    abc = tok("abc", add_special_tokens=False)["input_ids"]
    x = tok("x", add_special_tokens=False)["input_ids"]
    assert len(abc) == 3 and len(x) == 1 and eot_id not in abc + x

    log = install_fake_vllm(
        monkeypatch,
        tmp_path,
        f"""
def respond(prompt_ids, sample, params):
    if sample == 0:
        return {abc + [eot_id]}, "stop", {eot_id}  # vLLM V1 keeps the stop token in token_ids
    return {x} * params.max_tokens, "length", None
""",
    )
    caplog.set_level(logging.WARNING)
    out = run_generate(load_config("paper", overrides={**overrides, "generate.backend": "vllm"}))
    rows = read_jsonl_plain(out / "generations.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())["generation"]
    assert manifest["backend"] == "vllm" and manifest["repetition_penalty_scope"] == "prompt+generated"
    assert "prompt+generated" in caplog.text

    # (b) the same prompt ids as the torch sampler, per target (base, then the checkpoint)
    assert [c["prompts"] for c in calls(log, "generate")] == torch_prompts
    assert all(p[-1] == eot_id and p[0] == tok.bos_token_id for p in torch_prompts[0])
    # LIMA sec. 3 sampling settings
    for c in calls(log, "generate"):
        for sp in c["params"]:
            assert (sp["n"], sp["top_p"], sp["temperature"], sp["max_tokens"], sp["repetition_penalty"]) == (
                2,
                0.9,
                0.7,
                MAX_NEW,
                1.2,
            )
            assert eot_id in sp["stop_token_ids"] and tok.eos_token_id in sp["stop_token_ids"]
        # vLLM seeds the k-th of n samples with seed + k: every (prompt, sample) must get its own seed
        assert len({sp["seed"] + k for sp in c["params"] for k in range(sp["n"])}) == 3 * 2
    # the models vLLM was pointed at: a saved base with EOT (temporary, gone now), then the checkpoint
    base, tuned = calls(log, "llm")
    assert base["has_eot"] and base["eot_id"] == eot_id and base["vocab_size"] > eot_id
    assert Path(base["model"]).parent == out and not Path(base["model"]).exists()
    assert tuned["model"] == str(ckpt) and tuned["has_eot"]
    for c in calls(log, "llm"):
        assert (c["generation_config"], c["dtype"], c["seed"], c["gpu_memory_utilization"]) == (
            "vllm",
            "float32",
            0,
            0.9,
        )
        assert c["tensor_parallel_size"] == 1  # no GPU here: one
    # sized to the work: the longest prompt + its cap (the context, 512, leaves every prompt the full cap)
    longest = max(len(p) for p in torch_prompts[0])
    assert [c["max_model_len"] for c in calls(log, "llm")] == [longest + MAX_NEW] * 2
    # each engine in its own process, gone before the next starts
    pids = [c["pid"] for c in calls(log, "llm")]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert [c["pid"] for c in calls(log, "generate")] == pids

    # (c) the same rows: keys, order, prompts; counts from the script
    assert [set(r) for r in rows] == [set(r) for r in torch_rows]
    key = lambda r: (
        r["checkpoint"],
        r["checkpoint_path"],
        r["prompt_id"],
        r["sample"],
        r["prompt_tokens"],
        r["messages"],
        r["source"],
        r["tags"],
    )
    assert [key(r) for r in rows] == [key(r) for r in torch_rows] and len(rows) == 2 * 3 * 2
    for r in rows:
        if r["sample"] == 0:
            assert (r["response"], r["response_tokens"], r["stopped_at_eot"]) == ("abc", 3, True)
        else:
            assert (r["response"], r["response_tokens"], r["stopped_at_eot"]) == ("x" * MAX_NEW, MAX_NEW, False)

    # reruns ask vLLM for the same seeds
    first = [sp["seed"] for c in calls(log, "generate") for sp in c["params"]]
    run_generate(load_config("paper", overrides={**overrides, "generate.backend": "vllm"}))
    assert [sp["seed"] for c in calls(log, "generate")[2:] for sp in c["params"]] == first


def test_tensor_parallel_size_divides_the_heads():
    heads = lambda n: types.SimpleNamespace(num_attention_heads=n)
    assert tensor_parallel_size(GenerateConfig(), heads(64), gpus=8) == 8  # LLaMa 65B
    assert tensor_parallel_size(GenerateConfig(), heads(28), gpus=8) == 4  # Qwen2.5-7B: 28 heads
    assert tensor_parallel_size(GenerateConfig(), heads(28), gpus=0) == 1
    assert tensor_parallel_size(GenerateConfig(tensor_parallel_size=2), heads(28), gpus=8) == 2  # the config's


def test_vllm_caps_new_tokens_at_the_context_left(tmp_path, monkeypatch):
    context = 40
    tok = make_tokenizer()
    cfg = tiny_config("llama", len(tok))
    cfg.max_position_embeddings = context
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "conversations": [t]}) + "\n"
            for i, t in enumerate(["Hi", "A somewhat longer prompt."])
        )
    )
    monkeypatch.setattr(vllm_backend, "in_own_process", lambda fn, *args: fn(*args))  # in this process: fast
    log = install_fake_vllm(
        monkeypatch, tmp_path, "def respond(p, k, sp):\n    return [5] * sp.max_tokens, 'length', None\n"
    )
    out = run_generate(
        load_config(
            "paper",
            overrides=tiny_overrides(
                tmp_path / "base",
                tmp_path / "run",
                **{
                    "generate.prompts_file": str(prompts),
                    "generate.checkpoints": [],
                    "generate.include_base": True,
                    "generate.backend": "vllm",
                    "generate.max_new_tokens": context,
                },
            ),
        )
    )
    rows = read_jsonl_plain(out / "generations.jsonl")
    (call,) = calls(log, "generate")
    assert [sp["max_tokens"] for sp in call["params"]] == [context - len(p) for p in call["prompts"]]
    (llm,) = calls(log, "llm")
    assert llm["max_model_len"] == context  # every prompt + its cap fills the context, never more
    assert [r["prompt_tokens"] + r["max_new_tokens"] for r in rows] == [context, context]
    assert [r["response_tokens"] for r in rows] == [r["max_new_tokens"] for r in rows]


def test_max_model_len_is_the_longest_prompt_and_its_cap():
    assert max_model_len([[1] * 5, [1] * 9, [1] * 2], [10, 3, 12]) == 15
