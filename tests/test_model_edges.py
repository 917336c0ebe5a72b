"""Base models whose embedding matrix already has spare rows past the tokenizer (Qwen2, Pythia pad it): the new
EOT token takes the first spare row, and that row still starts as `model.eot_init` says, not as untrained noise."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tokenizer, tiny_config
from transformers import AutoModelForCausalLM

from lima_repro import models

EOT = "<|end_of_turn|>"


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
@pytest.mark.parametrize("init", ["mean", "eos"])
def test_eot_on_a_spare_row_is_initialised(family, init):
    tok = make_tokenizer()
    n = len(tok)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family, n + 5))  # 5 spare rows
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        emb[n:] = 100.0  # untrained spare rows, made easy to spot
        if head.data_ptr() != emb.data_ptr():
            head[n:] = -100.0
    eot_id = models.add_eot_token(model, tok, EOT, init)
    assert eot_id == n and model.get_input_embeddings().weight.shape[0] == n + 5  # no resize needed
    for w in {id(t): t for t in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}.values():
        expected = w[:n].mean(0) if init == "mean" else w[tok.eos_token_id]
        assert torch.allclose(w[eot_id], expected) and w[eot_id].abs().max() < 50  # the spare rows are not in it
        assert torch.all(w[n + 1] == w[n + 1, 0])  # the other spare rows are left as they were


def test_an_existing_eot_row_is_not_reinitialised():
    tok = make_tokenizer()
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok)))
    eot_id = models.add_eot_token(model, tok, EOT, "mean")
    with torch.no_grad():
        model.get_input_embeddings().weight[eot_id] = 7.0  # as trained
    assert models.add_eot_token(model, tok, EOT, "eos") == eot_id  # loading a checkpoint that has it
    assert torch.all(model.get_input_embeddings().weight[eot_id] == 7.0)
