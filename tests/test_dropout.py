import pytest
import torch
from helpers import tiny_overrides
from transformers import AutoModelForCausalLM

from lima_repro.config import load_config
from lima_repro.curate import run_curate
from lima_repro.dropout import add_residual_dropout, branch_names, decoder_layers, dropout_seed, layer_probabilities
from lima_repro.files import read_json
from lima_repro.train import run_train

EXPECTED_BRANCHES = {
    "llama": ("self_attn", "mlp"),
    "qwen2": ("self_attn", "mlp"),
    "gemma3": ("post_attention_layernorm", "post_feedforward_layernorm"),  # after Gemma's post-norms
    "gpt2": ("attn", "mlp"),
}


def test_layer_probabilities_rise_linearly():
    assert layer_probabilities(3, 0.3) == pytest.approx([0.0, 0.15, 0.3])
    assert layer_probabilities(5, 0.2) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


@pytest.mark.parametrize("family", list(EXPECTED_BRANCHES))
def test_residual_dropout_per_family(tiny_model_dirs, family):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family])
    layers = decoder_layers(model)
    assert len(layers) == 3 and branch_names(layers[0]) == EXPECTED_BRANCHES[family]
    ids = torch.randint(3, 200, (2, 12))
    model.eval()
    clean = model(ids).logits
    probs = add_residual_dropout(model, 0.3)
    assert probs == pytest.approx([0.0, 0.15, 0.3])
    assert len(model._lima_dropout_handles) == 6
    # eval mode: dropout off, identical outputs
    assert torch.equal(model(ids).logits, clean)
    # train mode: outputs change, and differ between two passes (fresh masks)
    model.train()
    for m in model.modules():  # silence the models' own dropouts so only ours acts
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    a, b = model(ids).logits, model(ids).logits
    assert not torch.allclose(a, clean) and not torch.allclose(a, b)


def test_bottom_layer_gets_no_dropout_top_layer_does(tiny_model_dirs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    add_residual_dropout(model, 0.5)
    model.train()
    seen = {}
    for i, layer in enumerate(decoder_layers(model)):
        layer.mlp.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, (out == 0).float().mean().item()))
    model(torch.randint(3, 200, (4, 64)))
    assert seen[0] == 0.0 and 0.3 < seen[2] < 0.7  # hooks registered later see the dropped output


def test_reapplying_replaces_hooks(tiny_model_dirs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"])
    add_residual_dropout(model, 0.3)
    add_residual_dropout(model, 0.2)
    assert len(model._lima_dropout_handles) == 6


def test_gpt2_own_dropouts_are_zeroed_and_recorded_when_lima_dropout_is_on(tiny_model_dirs, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"])
    assert (model.config.resid_pdrop, model.config.attn_pdrop, model.config.embd_pdrop) == (0.1, 0.1, 0.1)
    add_residual_dropout(model, 0.0)  # LIMA's dropout off: the model keeps its own
    assert model.transformer.drop.p == 0.1 and not hasattr(model.config, "lima_disabled_dropout")
    add_residual_dropout(model, 0.3)
    assert model.config.lima_disabled_dropout == {"resid_pdrop": 0.1, "attn_pdrop": 0.1, "embd_pdrop": 0.1}
    assert (model.config.resid_pdrop, model.config.attn_pdrop, model.config.embd_pdrop) == (0.0, 0.0, 0.0)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    # only LIMA's dropout acts: with its top layer at 0 too, train mode equals eval mode
    ids = torch.randint(3, 200, (2, 12))
    add_residual_dropout(model, 1e-12)
    model.train()
    train_out = model(ids).logits
    model.eval()
    assert torch.allclose(train_out, model(ids).logits, atol=1e-6)
    model.save_pretrained(tmp_path / "ck")  # recorded in every checkpoint's config.json
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "ck").config
    assert saved.lima_disabled_dropout == {"resid_pdrop": 0.1, "attn_pdrop": 0.1, "embd_pdrop": 0.1}
    assert saved.resid_pdrop == 0.0


def test_llama_has_no_own_dropout_to_disable(tiny_model_dirs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    add_residual_dropout(model, 0.3)
    assert model.config.lima_disabled_dropout == {}


def test_each_process_draws_its_own_dropout_masks(tiny_model_dirs):
    assert dropout_seed(7, 0) == 7 and len({dropout_seed(7, r) for r in range(8)}) == 8
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    add_residual_dropout(model, 0.3)
    model.train()
    ids = torch.randint(3, 200, (2, 12))

    def logits(rank):
        torch.manual_seed(dropout_seed(7, rank))
        return model(ids).logits

    assert torch.equal(logits(0), logits(0)) and torch.equal(logits(1), logits(1))
    assert not torch.allclose(logits(0), logits(1))


def test_train_records_the_disabled_dropouts(tmp_path, tiny_model_dirs):
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_model_dirs["gpt2"],
            tmp_path / "run",
            **{"train.max_steps": 1, "train.epochs": 1, "train.residual_dropout": 0.2},
        ),
    )
    run_curate(cfg)
    out = run_train(cfg)
    own = {"resid_pdrop": 0.1, "attn_pdrop": 0.1, "embd_pdrop": 0.1}
    assert read_json(out / "train_info.json")["own_dropout_disabled"] == own
    ckpt = read_json(out / "checkpoints.json")[-1]["path"]
    saved = read_json(f"{ckpt}/config.json")
    assert saved["lima_disabled_dropout"] == own and saved["resid_pdrop"] == 0.0
