"""Token-distribution shift on a tiny random model: greedy base text is 100% unshifted; other text shifts."""

from __future__ import annotations

import weakref

import pytest
import torch
from helpers import save_tiny_base

from lima_repro import models
from lima_repro.chat_format import ChatFormat, encode_prompt
from lima_repro.config import Config
from lima_repro.token_shift import run_token_shift, shift_stats, token_ranks


def test_shift_stats_by_hand():
    s = shift_stats([1, 1, 2, 3, 4, 10, 1, 1])
    assert (s["unshifted_pct"], s["marginal_pct"], s["shifted_pct"]) == (50.0, 25.0, 25.0)
    assert shift_stats([])["positions"] == 0


@pytest.mark.parametrize("template", ["lima", "vicuna"])
def test_token_shift_end_to_end(tmp_path, monkeypatch, template):
    """Both formats: the ranks below are computed on the format's prompt, so run_token_shift must build the same."""
    cfg = Config(run_dir=str(tmp_path / "run"))
    cfg.model.name = str(save_tiny_base(tmp_path / "base"))
    cfg.model.chat_template = template
    cfg.model.eot_init = "mean"  # an EOT copied from EOS would outrank the greedy words the ranks below assume
    base, tok, eot_id = models.load_base(cfg.model)
    ckpt = tmp_path / "ckpt"
    base.save_pretrained(ckpt)  # a "fine-tuned" checkpoint identical to the base: nothing may shift
    tok.save_pretrained(ckpt)
    messages = [{"role": "user", "content": "how do i cook rice"}]
    prompt = encode_prompt(tok, messages, ChatFormat.of(cfg.model))
    words = tok.convert_ids_to_tokens(list(range(3, 40)))
    with torch.no_grad():  # greedy continuation restricted to plain words, so its text re-tokenizes exactly
        ids = list(prompt)
        for _ in range(12):
            logits = base(input_ids=torch.tensor([ids])).logits[0, -1]
            allowed = torch.full_like(logits, float("-inf"))
            allowed[3:40] = 0
            ids.append(int((logits + allowed).argmax()))
    greedy = ids[len(prompt) :]
    ranks = token_ranks(base, prompt, greedy)
    assert len(ranks) == 12 and all(r <= 3 for r in ranks)
    text = " ".join(tok.convert_ids_to_tokens(greedy))
    other = " ".join(words[::-1][:12])
    rows = [
        {
            "checkpoint": "epoch-1",
            "checkpoint_path": str(ckpt),
            "prompt_id": pid,
            "sample": 0,
            "messages": messages,
            "response": resp,
        }
        for pid, resp in (("g", text), ("o", other))
    ]
    cfg.generate.precision = "fp32"  # exact ranks to compare with the fp32 ones above
    res = run_token_shift(cfg, rows, "epoch-1")
    assert res["precision"] == "fp32"
    per = {r["prompt_id"]: r for r in res["per_response"]}
    assert per["g"]["positions"] == 12
    assert per["g"]["unshifted_pct"] == 100.0 * sum(r == 1 for r in ranks) / 12
    assert per["o"]["shifted_pct"] > 0 and res["top_shifted_tokens"]
    # the control (the checkpoint ranking its own text) equals the base here, since the weights are the same
    assert res["control_finetuned_self"] == res["base"]
    assert res["base"]["positions"] == 24 and len(res["per_response"]) == 2

    # in bf16 (how GPUs run it), one model at a time: the same positions, and identical weights still agree
    cfg.generate.precision = "bf16"
    loaded = []
    real_base, real_ckpt = models.load_base, models.load_checkpoint

    def spy(real, name):
        def load(*args, **kw):
            assert all(m() is None for m in loaded), "the previous model is still alive"
            out = real(*args, **kw)
            loaded.append(weakref.ref(out[0]))
            assert out[0].dtype == torch.bfloat16
            return out

        return load

    monkeypatch.setattr(models, "load_base", spy(real_base, "base"))
    monkeypatch.setattr(models, "load_checkpoint", spy(real_ckpt, "ckpt"))
    half = run_token_shift(cfg, rows, "epoch-1")
    assert len(loaded) == 2 and half["precision"] == "bf16"
    assert half["base"]["positions"] == 24 and half["control_finetuned_self"] == half["base"]


def test_the_note_says_how_the_answers_were_decoded():
    from lima_repro.config import GenerateConfig
    from lima_repro.token_shift import note

    assert "sampled (top-p 0.9, T 0.7)" in note(GenerateConfig()) and "control" in note(GenerateConfig())
    greedy = note(GenerateConfig(temperature=0.0))
    assert "greedy too" in greedy and "sampled" not in greedy
