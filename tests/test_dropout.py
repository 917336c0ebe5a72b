import pytest
import torch
from transformers import AutoModelForCausalLM

from lima_repro.dropout import add_residual_dropout, branch_names, decoder_layers, layer_probabilities

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
