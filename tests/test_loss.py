import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from lima_repro.batching import pack_rows, packed_batch, pad_batch
from lima_repro.chat_format import IGNORE
from lima_repro.loss import CausalLMLoss, fused_linear_cross_entropy


@pytest.mark.parametrize("softcap,bias", [(None, False), (30.0, False), (None, True)])
def test_fused_loss_and_gradients_match_plain(softcap, bias):
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(101, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(101, dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.randint(0, 101, (37,))
    fused = fused_linear_cross_entropy(h, w, y, bias=b, chunk_size=8, softcap=softcap)
    grads = torch.autograd.grad(fused * 0.5, [h, w] + ([b] if bias else []))
    logits = F.linear(h, w, b)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    plain = F.cross_entropy(logits, y, reduction="sum")
    ref = torch.autograd.grad(plain * 0.5, [h, w] + ([b] if bias else []))
    assert fused.item() == pytest.approx(plain.item(), rel=1e-10)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2", "gpt2"])
def test_causal_lm_loss_equals_transformers_loss(tiny_model_dirs, family):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family]).eval()
    torch.manual_seed(1)
    ids = torch.randint(3, 200, (2, 20))
    labels = ids.clone()
    labels[:, :7] = IGNORE
    mask = torch.ones_like(ids)
    loss_sum, n = CausalLMLoss(model, chunk_size=5)(ids, labels, attention_mask=mask)
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert n == 2 * 13  # labels at positions 7..19 of each row
    assert (loss_sum / n).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_packed_loss_equals_padded_loss_per_example(tiny_model_dirs, family):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family]).eval()
    lm = CausalLMLoss(model, chunk_size=7)
    torch.manual_seed(2)
    examples = []
    for n in (23, 9, 31):  # gemma3's sliding window is 16: packing must keep it per example
        ids = torch.randint(3, 200, (n,)).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE] * 4 + ids[4:]})
    with torch.no_grad():
        separate = [lm(**pad_batch([e], 0))[0].item() for e in examples]
        padded = lm(**pad_batch(examples, 0))[0].item()
        (row,) = pack_rows(examples, capacity=100)
        packed = lm(**packed_batch(row))[0].item()
    assert padded == pytest.approx(sum(separate), rel=1e-5)
    assert packed == pytest.approx(sum(separate), rel=1e-5)

