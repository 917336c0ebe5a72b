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


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_evaluation_under_no_grad_computes_no_gradient(softcap, monkeypatch):
    """Held-out perplexity runs under torch.no_grad: the loss is the same, `.grad` is untouched (even with a
    grad_scale), and the gradient path (`_FusedLinearCE`) never runs."""
    from lima_repro import loss as loss_mod

    torch.manual_seed(0)
    h, w, y = torch.randn(37, 16), torch.randn(101, 16, requires_grad=True), torch.randint(0, 101, (37,))
    w.grad = torch.full_like(w, 7.0)
    with_grad = fused_linear_cross_entropy(h.requires_grad_(), w, y, chunk_size=8, softcap=softcap).item()
    monkeypatch.setattr(loss_mod._FusedLinearCE, "apply", lambda *a: pytest.fail("gradient path under no_grad"))
    with torch.no_grad():
        evaluated = fused_linear_cross_entropy(h, w, y, chunk_size=8, softcap=softcap, grad_scale=0.5)
    assert evaluated.item() == pytest.approx(with_grad, rel=1e-6)
    assert torch.equal(w.grad, torch.full_like(w, 7.0))


def test_frozen_head_gets_no_weight_gradient():
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(101, 16, dtype=torch.float64)  # frozen
    y = torch.randint(0, 101, (37,))
    (gh,) = torch.autograd.grad(fused_linear_cross_entropy(h, w, y, chunk_size=8, grad_scale=0.5) * 0.5, [h])
    (ref,) = torch.autograd.grad(F.cross_entropy(F.linear(h, w), y, reduction="sum") * 0.5, [h])
    torch.testing.assert_close(gh, ref, rtol=1e-9, atol=1e-12)
    assert w.grad is None


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


def test_head_gradient_accumulated_in_forward_equals_autograd():
    torch.manual_seed(3)
    w = torch.randn(101, 16, requires_grad=True)
    w.grad = torch.randn(101, 16)  # an earlier micro-batch's gradient must be added to, not replaced
    before = w.grad.clone()
    batches = [(torch.randn(n, 16, requires_grad=True), torch.randint(0, 101, (n,))) for n in (13, 29)]
    expected = before.clone()
    for h, y in batches:
        (gw,) = torch.autograd.grad(F.cross_entropy(F.linear(h, w), y, reduction="sum") * 0.25, [w])
        expected += gw
    grad_h = []
    for h, y in batches:
        loss = fused_linear_cross_entropy(h, w, y, chunk_size=8, grad_scale=0.25)
        (loss * 0.25).backward()
        grad_h.append(h.grad)
    torch.testing.assert_close(w.grad, expected, rtol=1e-5, atol=1e-6)
    ref_h = torch.autograd.grad(
        F.cross_entropy(F.linear(batches[0][0], w), batches[0][1], reduction="sum") * 0.25, [batches[0][0]]
    )[0]
    torch.testing.assert_close(grad_h[0], ref_h, rtol=1e-5, atol=1e-6)


def test_head_gradient_in_forward_rejects_another_multiplier_and_skips_no_grad():
    w = torch.randn(50, 8, requires_grad=True)
    h, y = torch.randn(6, 8, requires_grad=True), torch.randint(0, 50, (6,))
    with torch.no_grad():
        fused_linear_cross_entropy(h, w, y, grad_scale=0.5)
    assert w.grad is None  # evaluation passes leave gradients alone
    loss = fused_linear_cross_entropy(h, w, y, grad_scale=0.5)
    with pytest.raises(RuntimeError, match="grad_scale"):
        (loss * 2.0).backward()


@pytest.mark.parametrize("family", ["gemma3", "llama", "gpt2"])  # tied + scaled embedding, untied head, GPT-2
def test_causal_lm_loss_head_grad_in_forward_matches_autograd(tiny_model_dirs, family):
    """head_grad_in_forward: the head's gradient goes into weight.grad in forward and the input lookup's gradient
    goes in as sparse rows; every parameter's gradient equals plain autograd's, dense, the model left unchanged."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family])
    head, emb = model.get_output_embeddings().weight, model.get_input_embeddings()
    assert (head is emb.weight) == (family != "llama")  # tied: the head and the lookup share one gradient
    torch.manual_seed(4)
    ids = torch.randint(3, 200, (2, 24))
    labels = ids.clone()
    labels[:, :6] = IGNORE
    grads = []
    for in_forward in (False, True):
        model.zero_grad(set_to_none=True)
        lm = CausalLMLoss(model, chunk_size=7, head_grad_in_forward=in_forward).eval()
        for row in range(2):  # two micro-batches accumulate into the same .grad
            loss, n = lm(ids[row : row + 1], labels[row : row + 1], grad_scale=1 / 36)
            (loss / 36).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        assert not emb.sparse  # switched on inside forward only
    assert not any(g.is_sparse for g in grads[1].values())
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.parametrize("family", ["gemma3", "llama", "gpt2"])  # tied + scaled embedding, untied head, GPT-2
def test_frozen_embeddings_train_only_the_new_rows_with_exact_gradients(tiny_model_dirs, family):
    """train.freeze_embeddings: the trained rows (here two token ids, one of them in the input) get exactly the
    gradient those rows get when the whole embedding trains, and so does every other weight; the frozen matrices
    get none; merge_rows writes the rows back into the model."""
    torch.manual_seed(5)
    ids = torch.randint(3, 200, (2, 24))
    ids[:, 10] = 42  # a trained row's token as input (and as target, at position 9)
    labels = ids.clone()
    labels[:, :6] = IGNORE
    rows = [42, 7]

    def grads(train_rows):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family]).train()
        torch.manual_seed(0)  # the same dropout masks (GPT-2 has its own dropout)
        lm = CausalLMLoss(model, chunk_size=5, train_rows=train_rows)
        loss, n = lm(ids, labels)
        (loss / n).backward()
        return lm, dict(lm.named_parameters())

    full, full_params = grads(None)
    part, part_params = grads(rows)
    emb, head = full.lm.get_input_embeddings().weight, full.lm.get_output_embeddings().weight
    in_rows = emb.grad[rows]  # a tied head shares this gradient: lookup and head both add into it
    torch.testing.assert_close(part.rows_in.grad, in_rows, rtol=1e-5, atol=1e-7)
    if head is not emb:
        torch.testing.assert_close(part.rows_out.grad, head.grad[rows], rtol=1e-5, atol=1e-7)
    frozen = {"lm." + n for n, p in part.lm.named_parameters() if not p.requires_grad}
    assert frozen and all(part_params[n].grad is None for n in frozen)
    for name, p in part_params.items():
        if name in full_params and name not in frozen:
            torch.testing.assert_close(p.grad, full_params[name].grad, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        part.rows_in.add_(1.0)
    part.merge_rows()
    torch.testing.assert_close(part.lm.get_input_embeddings().weight[rows], part.rows_in.detach())
    torch.testing.assert_close(part.lm.get_output_embeddings().weight[rows], part.rows_out.detach())


def test_loss_index_gathers_the_loss_positions_in_mask_order():
    from lima_repro.loss import loss_index, loss_positions

    labels = torch.tensor([[IGNORE, 5, IGNORE, 7], [IGNORE, IGNORE, 9, 4]])
    index, targets = loss_index(labels)
    assert index.tolist() == [0, 2, 5, 6]  # (row, t) -> row * 4 + t, where labels[row, t + 1] is a label
    assert targets.tolist() == [5, 7, 9, 4]
    hidden = torch.arange(8.0)[None].view(2, 4, 1)
    mask, want = loss_positions(labels)
    assert torch.equal(hidden.flatten(0, 1)[index], hidden[:, :-1][mask]) and torch.equal(targets, want)


def test_low_precision_head_gradient_runs_its_gemm_under_autocast_only():
    """On CUDA the trainer asks for the head's weight-gradient GEMM in autocast's dtype (bf16): on CPU under bf16
    autocast it is within bf16 rounding of the fp32 gradient and differs from it; without autocast it is identical."""
    torch.manual_seed(0)
    h, y = torch.randn(40, 16), torch.randint(0, 50, (40,))
    grads = {}
    for low, autocast in ((False, False), (True, False), (False, True), (True, True)):
        w = torch.randn(50, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = fused_linear_cross_entropy(h, w, y, chunk_size=16, low_precision_grad=low)
        loss.backward()
        grads[low, autocast] = w.grad
    assert torch.equal(grads[True, False], grads[False, False])
    torch.testing.assert_close(grads[True, True], grads[False, True], rtol=5e-2, atol=5e-3)
    assert not torch.equal(grads[True, True], grads[False, True])


def test_low_precision_head_gradient_in_row_blocks_equals_one_gemm():
    """The bf16 weight-gradient GEMM runs in blocks of head rows through reused buffers (a bounded temporary): blocks
    of 7 of 50 rows (the last one short) add the one-GEMM product, scaled, into the fp32 gradient; and through the
    fused head (in `.grad` during forward) the gradient is within bf16 rounding of the fp32 one."""
    from lima_repro import loss as loss_mod

    torch.manual_seed(0)
    a, b = torch.randn(16, 50).bfloat16(), torch.randn(16, 8)
    start = torch.randn(50, 8)
    blocked, whole = start.clone(), start.clone()
    loss_mod._add_tn_(blocked, a, b, 0.25, block=7)
    whole.add_((a.t() @ b.bfloat16()).float(), alpha=0.25)
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)
    h, y = torch.randn(40, 16), torch.randint(0, 50, (40,))
    grads = {}
    for low in (False, True):
        w = torch.randn(50, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            loss = fused_linear_cross_entropy(h, w, y, chunk_size=16, grad_scale=0.25, low_precision_grad=low)
        (loss * 0.25).backward()
        grads[low] = w.grad
    torch.testing.assert_close(grads[True], grads[False], rtol=5e-2, atol=5e-3)
    assert not torch.equal(grads[True], grads[False])


@pytest.mark.parametrize("flags,low", [({"avx512_bf16"}, True), ({"amx_bf16"}, True), ({"avx2"}, False)])
def test_trainer_runs_the_head_gradient_in_bf16_where_the_cpu_has_bf16_units(monkeypatch, tiny_llama, flags, low):
    """On CPU the trainer asks for the bf16 weight-gradient GEMM by capability: with AVX512-BF16 or AMX (where
    precision auto is bf16 and a bf16 GEMM beats fp32), not with AVX2 only (bf16 emulated: the fp32 addmm_ stays)."""
    from accelerate import Accelerator

    from lima_repro import models
    from lima_repro.config import TrainConfig
    from lima_repro.train import prepare_training

    monkeypatch.setattr(models, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    loss_model, _, _ = prepare_training(Accelerator(cpu=True), model, TrainConfig(), total=2)
    assert loss_model.low_precision_grad is low


def test_merge_rows_writes_into_a_sharded_dtensor_embedding():
    """FSDP2 shards the embedding (a DTensor, Shard(0)); indexing it would reshape the sharded dimension. Each
    process writes the trained rows in its own shard (here one gloo process holding every row)."""
    import torch.distributed as dist
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    from lima_repro.sharded_rows import set_rows, shard_offset

    assert [shard_offset(10, 4, r) for r in range(4)] == [0, 3, 6, 9]  # torch.chunk: 3, 3, 3, 1 rows
    assert [shard_offset(2, 4, r) for r in range(4)] == [0, 1, 2, 2]  # the last shards empty
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        weight = distribute_tensor(torch.zeros(6, 3), mesh, [Shard(0)])
        rows = distribute_tensor(torch.arange(6.0).view(2, 3), mesh, [Shard(0)])
        with torch.no_grad():
            set_rows(weight, torch.tensor([4, 1]), rows.full_tensor())
        want = torch.zeros(6, 3)
        want[4], want[1] = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0])
        assert torch.equal(weight.full_tensor(), want)
    finally:
        if started:
            dist.destroy_process_group()
