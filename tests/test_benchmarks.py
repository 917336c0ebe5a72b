"""The benchmarks as a newcomer runs them: gpu_perf_check.py --tiny on CPU, its FlexAttention document mask against
SDPA's, generate.py without --prompts, and train_vs_trl.py when its TRL worker dies."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lima_repro import data, packed_attention

ROOT = Path(__file__).parents[1]
BENCH = ROOT / "benchmarks"
PHASES = {"env", "peak", "variants:llama-1b", "profile", "variants:gemma-270m", "generate", "compile"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _env(**extra) -> dict:
    path = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def _run(args: list[str], timeout: float, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_gpu_perf_check_tiny_writes_every_phase_and_variants_match_today(tmp_path):
    r = _run(["benchmarks/gpu_perf_check.py", "--tiny", "--out", str(tmp_path)], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "perf.jsonl").read_text().splitlines()]
    phases = {x["phase"]: x for x in lines if x["phase"] != "variant"}
    assert set(phases) == PHASES
    assert not [x for x in lines if "error" in x], [x.get("error") for x in lines]
    assert phases["compile"]["skipped"].startswith("CUDA only")  # every other phase ran on the CPU
    assert not [p for p in PHASES - {"compile"} if "skipped" in phases[p]]
    assert phases["peak"]["tflops"] > 0
    gen = phases["generate"]  # every sampler generated, and in fp32 greedy static decoding is decode's, row for row
    assert set(gen["sides"]) == {"lima_repro sample", "static sampler", "static sampler compiled", "batched generate"}
    assert all(x["tokens"] > 0 and x["tokens_per_s"] > 0 for x in gen["sides"].values())
    assert gen["compile_options"] == {"backend": "eager"} and gen["vs_batched"]["batched generate"] == 1.0
    assert gen["greedy_rows_equal"] == gen["prompts"] == 4
    assert phases["profile"]["today"]["top_cpu"] and phases["profile"]["best"]["top_cpu"]
    for model in ("llama-1b", "gemma-270m"):
        rows = [x for x in lines if x["phase"] == "variant" and x["model"] == model]
        measured = [x for x in rows if "ms_per_row" in x]
        assert [x["variant"] for x in measured[:5]] == ["today", "+cudnn_off", "+padded", "+rows_x2", "+own_forward"]
        assert all(x["skipped"] for x in rows if "ms_per_row" not in x)  # kernels this CPU lacks: with a reason
        for x in measured:  # fp32: every batching, copy and head change computes today's loss and gradients
            assert x["check_ok"] and x["loss_rel_diff"] < 1e-5 and max(x["grad_rel_diff"].values()) < 1e-4, x
            assert x["ms_per_row"] > 0 and 0 < x["mfu"] < 1
    assert "ms/row" in r.stdout and "MFU" in r.stdout  # the closing table


@pytest.mark.parametrize("family", ["llama-1b", "gemma-270m"])
def test_lima_flex_document_mask_matches_sdpa(family):
    """The benchmark's bench_flex is the library's lima_flex (packed_attention.py, what the trainer runs) with the
    library's forward kwargs. FlexAttention has no backward on a CPU, so the phase skips it there: its forward is
    checked here against SDPA's block-diagonal mask (and Gemma's sliding window) on padded, two-row forwards of
    packed examples."""
    from transformers import AttentionInterface, AutoModelForCausalLM

    sys.path.insert(0, str(BENCH))
    try:
        mfu, pv = _load("mfu"), _load("perf_variants")
    finally:
        sys.path.remove(str(BENCH))
    pv.register_attention(torch.device("cpu"))
    mapping = AttentionInterface._global_mapping
    assert mapping["bench_flex"] is mapping["lima_flex"] is packed_attention.flex_packed_attention
    assert mapping["bench_varlen"] is mapping["lima_varlen"] is packed_attention.varlen_packed_attention
    cfg = mfu.model_config(family, tiny=True)
    cfg.sliding_window = 16  # shorter than the examples, so the window matters
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    v = pv.Variant("test", padded=True, rows_per_forward=2, own_forward=True, attn="bench_flex")
    examples = mfu.synthetic_examples(6, 128, cfg.vocab_size, seed=3)
    with torch.no_grad():
        for mb in pv.build_forwards(examples, 128, v):
            args = {"input_ids": mb["input_ids"], "position_ids": mb["position_ids"], "use_cache": False}
            pv.set_attention(lm, "sdpa")
            want = lm.base_model(**args).last_hidden_state
            pv.set_attention(lm, "bench_flex")
            got = lm.base_model(**args, **pv.attention_kwargs(v, mb, cfg)).last_hidden_state
            one_doc = torch.arange(128).expand_as(mb["position_ids"])  # each row one document: attends across examples
            across = lm.base_model(**args, **pv.attention_kwargs(v, {**mb, "position_ids": one_doc}, cfg))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
            assert (across.last_hidden_state - want).abs().max() > 1e-3  # the comparison can tell a wrong mask


def test_bench_varlen_gets_the_trainers_segment_offsets():
    """bench_varlen's forward kwargs are the library's, as train_step passes them: every example and each row's
    padding a segment of the flattened rows, the row width as the longest."""
    sys.path.insert(0, str(BENCH))
    try:
        pv = _load("perf_variants")
    finally:
        sys.path.remove(str(BENCH))
    examples = [{"input_ids": [5] * n, "labels": [5] * n} for n in (5, 3, 2)]
    v = pv.Variant("test", padded=True, rows_per_forward=2, own_forward=True, attn="bench_varlen")
    (mb,) = pv.build_forwards(examples, 8, v)  # rows [5, 3] and [2 + 6 padding]
    config = type("Config", (), {"model_type": "llama"})()
    got = pv.attention_kwargs(v, mb, config)
    assert got["cu_seq_lens_q"].tolist() == got["cu_seq_lens_k"].tolist() == [0, 5, 8, 10, 16]
    assert got["max_length_q"] == got["max_length_k"] == 8
    assert pv.attention_kwargs(v.but("sdpa", attn="sdpa"), mb, config) == {}  # transformers builds the dense mask


def test_generate_runs_without_prompts_argument(tmp_path):
    """The default --prompts (the demo profile's max_prompts, null) means every demo prompt; it used to crash."""
    from helpers import make_tokenizer, tiny_config
    from transformers import AutoModelForCausalLM

    tokenizer = make_tokenizer()
    cfg = tiny_config("llama", len(tokenizer))
    cfg.max_position_embeddings = 4096  # one token per byte: the longest demo prompt has ~1,200
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    args = ["benchmarks/generate.py", "--random-init", str(tmp_path), "--max-new-tokens", "2", "--rounds", "1"]
    r = _run([*args, "--no-loop"], timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "speedup_vs_batched=" in r.stdout.splitlines()[-1] and "static_vs_batched=" in r.stdout.splitlines()[-1]
    assert "static sampler: " in r.stdout and "x1.000 batched generate" in r.stdout  # each side's ratio
    every = len(data.read_examples("demo:test.jsonl", ends_with="user"))
    assert f"{every} prompts x 2 new tokens" in r.stdout


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("death", "expected"),
    [
        ("raise ImportError('simulated: datasets is missing')", "simulated: datasets is missing"),
        ("os._exit(3)", "died"),
    ],
)
def test_train_vs_trl_reports_a_dying_worker(tmp_path, death, expected):
    """The TRL worker fails at its first import (a stand-in `datasets` package raises, or kills the process): the
    parent must say so and exit non-zero, not wait forever."""
    for name in ("datasets", "trl"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"import os\n{death}\n")
    r = _run(
        ["benchmarks/train_vs_trl.py", "--rounds", "1", "--warmup", "0", "--steps", "1", "--worker-timeout", "120"],
        timeout=180,
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
    )
    assert r.returncode != 0
    assert "the trl worker" in r.stderr and expected in r.stderr, r.stderr[-3000:]


def test_gpu_check_runs_bench_varlen_wherever_the_library_has_a_varlen_kernel(monkeypatch):
    """On CUDA, bench_varlen is skipped only when neither torch's varlen_attn nor flash_attn's exists: the library
    falls back to flash_attn (packed_attention.varlen_kernel), so the check must measure that too."""
    sys.path.insert(0, str(BENCH))
    try:
        check = _load("gpu_perf_check")
    finally:
        sys.path.remove(str(BENCH))
    cuda, stand_in = torch.device("cuda"), packed_attention.kernel(lambda q, k, v, cu_q, cu_k, mq, mk, softcap=0.0: q)
    monkeypatch.setattr(packed_attention, "TORCH_VARLEN", None)
    monkeypatch.setattr(packed_attention, "FLASH_VARLEN", stand_in)
    assert "bench_varlen" not in check.unavailable_attention(cuda)
    monkeypatch.setattr(packed_attention, "FLASH_VARLEN", None)
    assert "no torch.nn.attention.varlen and flash_attn" in check.unavailable_attention(cuda)["bench_varlen"]
