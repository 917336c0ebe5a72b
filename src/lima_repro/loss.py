"""Next-token loss on the assistant tokens only, without ever holding a batch's full logits.

The default model has a 262,144-token vocabulary, so logits (tokens x vocab) dominate training memory.
`fused_linear_cross_entropy` computes the output head, the loss and both gradients chunk by chunk inside the
forward pass (the gradients are kept, the logits are not), for the loss-carrying positions only.
`CausalLMLoss` wraps a causal LM so distributed wrappers (DDP, FSDP) see one forward that returns the loss.

In a single-process training step the loss scale of `backward` is known before the forward pass (1 / the step's
loss tokens), so the head's weight gradient can go straight into `weight.grad` (`grad_scale`): the idea of
Megatron-LM's gradient-accumulation fusion, which does it in backward, done here in the forward pass where the fused
head computes its gradients. No separate vocab x hidden buffer lives from the head's forward to its backward, the
moment of the step's peak memory (0.67 GB for the default model's 262,144 x 640 head in fp32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .chat_format import IGNORE
from .sharded_rows import full, reshard, set_rows


def _chunk_logits(hi, weight, bias, acc, softcap, row_ids=None, rows=None):
    """One chunk's logits in the accumulator dtype (after Gemma's final soft-capping), and tanh for its gradient.
    With `rows`, the head's rows `row_ids` are `rows` instead of `weight[row_ids]` (trainable new-token rows)."""
    logits = F.linear(hi, weight, bias).to(acc)
    if rows is not None:
        logits[:, row_ids] = F.linear(hi, rows, None if bias is None else bias[row_ids]).to(acc)
    if softcap is None:
        return logits, None
    t = torch.tanh(logits / softcap)
    return softcap * t, t


def _nll_(logits, yi):
    """Summed negative log-likelihood of targets `yi`; turns `logits` into exp(logits - max) in place (one exp
    pass: logsumexp would add a chunk-sized temporary and a second exp). Returns (loss sum, row sums of exp)."""
    top = logits.amax(dim=-1, keepdim=True)
    target = logits.gather(1, yi[:, None]) - top
    total = logits.sub_(top).exp_().sum(dim=-1, keepdim=True)
    return (total.log() - target).sum(), total


def _add_tn_(out, a, b, alpha, block: int = 16_384):
    """out += alpha * a.T @ b, the GEMM in a's dtype, `block` rows at a time through two reused buffers: a whole vocab
    x d product would sit beside the chunk's logits at the step's peak, and big fresh tensors cost page faults."""
    b, buf, wide = b.to(a.dtype), torch.empty_like(out[:block], dtype=a.dtype), torch.empty_like(out[:block])
    for o, a_j in zip(out.split(block), a.split(block, dim=1)):  # a mixed-dtype add_ would allocate its own copy
        o.add_(wide[: len(o)].copy_(torch.mm(a_j.t(), b, out=buf[: len(o)])), alpha=alpha)


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_size, softcap, grad_scale, need_w, row_ids, rows, low_w):
        n = h.shape[0]
        acc = torch.promote_types(weight.dtype, torch.float32)  # softmax and accumulators: at least fp32
        loss = torch.zeros((), dtype=acc, device=h.device)
        grad_h = torch.empty_like(h)
        if not need_w:  # a frozen head: its weight gradient is never computed
            grad_w, w_scale = None, 1.0
        elif grad_scale is None:
            grad_w, w_scale = torch.zeros_like(weight, dtype=acc), 1.0
        else:  # straight into weight.grad, already multiplied by the scale backward will be called with
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            grad_w, w_scale = weight.grad, grad_scale
        grad_b = torch.zeros_like(bias, dtype=acc) if bias is not None and need_w else None
        # new-token rows trained on their own: their gradient, and what they change in h's gradient
        grad_rows = torch.zeros_like(rows, dtype=acc) if rows is not None else None
        delta = rows - weight[row_ids] if rows is not None else None
        arange = torch.arange(min(chunk_size, n), device=h.device)
        autocast = torch.is_autocast_enabled(h.device.type)  # `low`: the weight gradient in its dtype too
        low = torch.get_autocast_dtype(h.device.type) if low_w and autocast and grad_w is not None else None
        for i in range(0, n, chunk_size):
            hi, yi = h[i : i + chunk_size], targets[i : i + chunk_size]
            logits, t = _chunk_logits(hi, weight, bias, acc, softcap, row_ids, rows)
            nll, total = _nll_(logits, yi)
            loss += nll
            # d loss / d logits = softmax - onehot; big temporaries cost page faults on CPU
            dlogits = logits.div_(total)
            dlogits[arange[: len(yi)], yi] -= 1.0
            if t is not None:
                dlogits.mul_(1.0 - t * t)
            # under autocast the matmuls run in its dtype (`low`: cast once for two); otherwise in the weights' dtype
            dl = dlogits.to(low) if low is not None else dlogits if autocast else dlogits.to(weight.dtype)
            gh = dl @ weight
            if rows is not None:
                d_rows = dl[:, row_ids]
                gh += d_rows @ delta.to(d_rows.dtype)
                grad_rows += (d_rows.t() @ hi.to(d_rows.dtype)).to(acc)
            grad_h[i : i + chunk_size] = gh.to(h.dtype)
            if low is not None:
                _add_tn_(grad_w, dl, hi, w_scale)
            elif grad_w is not None and dl.dtype == grad_w.dtype and hi.dtype == grad_w.dtype:
                grad_w.addmm_(dl.t(), hi, alpha=w_scale)  # accumulate in place: no V x d temporary per chunk
            elif grad_w is not None:
                grad_w.add_((dl.t() @ hi).to(grad_w.dtype), alpha=w_scale)
            if grad_b is not None:
                grad_b += dlogits.sum(0)
        ctx.grad_scale = grad_scale if need_w else None
        ctx.save_for_backward(grad_h, None if grad_scale is not None else grad_w, grad_b, grad_rows)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype, None if rows is None else rows.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b, grad_rows = ctx.saved_tensors
        w_dtype, b_dtype, r_dtype = ctx.dtypes
        gb = (grad_b * grad_out).to(b_dtype) if grad_b is not None else None
        if ctx.grad_scale is not None:
            # checked without a host sync (on a GPU it fails at the next synchronisation)
            # a fill, not a copy of a Python number to the device (that copy would wait for the GPU)
            expected = torch.full((), ctx.grad_scale, dtype=torch.float64, device=grad_out.device)
            torch._assert_async(
                torch.isclose(grad_out.double(), expected),
                f"the output head's weight gradient was accumulated for backward(loss * "
                f"{ctx.grad_scale}), but backward came with another multiplier: pass the loss "
                "multiplier as grad_scale, or no grad_scale",
            )
            gw = None  # already in weight.grad
        elif grad_w is not None:
            # scaled in place (backward runs once: no retain_graph): a second V x d tensor would double the head's
            # gradient memory for a moment, and that moment is the training step's peak
            gw = grad_w.mul_(grad_out).to(w_dtype)
        else:
            gw = None  # a frozen head
        gr = (grad_rows * grad_out).to(r_dtype) if grad_rows is not None else None
        return grad_h.mul_(grad_out.to(grad_h.dtype)), gw, gb, None, None, None, None, None, None, gr, None


def _loss_only(h, weight, bias, targets, chunk_size, softcap, row_ids=None, rows=None):
    """The same loss without any gradient work (held-out evaluation under torch.no_grad)."""
    acc = torch.promote_types(weight.dtype, torch.float32)
    loss = torch.zeros((), dtype=acc, device=h.device)
    for i in range(0, h.shape[0], chunk_size):
        logits, _ = _chunk_logits(h[i : i + chunk_size], weight, bias, acc, softcap, row_ids, rows)
        loss += _nll_(logits, targets[i : i + chunk_size])[0]
    return loss


def fused_linear_cross_entropy(
    h,
    weight,
    targets,
    bias=None,
    chunk_size: int = 256,
    softcap: float | None = None,
    grad_scale: float | None = None,
    row_ids: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    low_precision_grad: bool = False,
):
    """Sum over rows of cross_entropy(softcap(h @ weight.T + bias), targets); logits exist one chunk at a time.
    With `rows` (k x d) the head's rows `row_ids` are `rows` (trainable) instead of `weight[row_ids]`.

    Gradients are computed only where autograd will ask for them: none under `torch.no_grad` (evaluation), no
    weight gradient for a frozen head. `grad_scale`: the caller will call `backward` on `loss * grad_scale`; the
    weight's gradient is then added to `weight.grad` during this call (a leaf weight of the accumulator dtype and
    grad mode on; else ignored), and `backward` with any other multiplier is an error. `low_precision_grad`: under
    autocast the weight gradient's GEMM runs in autocast's dtype too (else it is an in-place `addmm_` in the weights'
    dtype, which autocast does not touch), at the cost of two buffers of 16,384 head rows."""
    if h.shape[0] == 0:
        zero = h.sum() + weight.sum() + (rows.sum() if rows is not None else 0.0)
        return zero * 0.0  # keeps the graph (and DDP's gradient hooks) intact
    trainable = h.requires_grad or weight.requires_grad or (rows is not None and rows.requires_grad)
    if not torch.is_grad_enabled() or not trainable:
        return _loss_only(h, weight, bias, targets, chunk_size, softcap, row_ids, rows)
    need_w = weight.requires_grad
    into_grad = (
        grad_scale is not None
        and need_w
        and weight.is_leaf
        and weight.dtype == torch.promote_types(weight.dtype, torch.float32)
    )
    return _FusedLinearCE.apply(
        h,
        weight,
        bias,
        targets,
        chunk_size,
        softcap,
        grad_scale if into_grad else None,
        need_w,
        row_ids,
        rows,
        low_precision_grad,
    )


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of positions t whose NEXT token is a label, and those target ids (the causal shift)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return mask, targets[mask]


def loss_index(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions of `loss_positions` as indices into the flattened (rows x width) hidden states, and their
    targets. Built on the host with the batch: gathering by a boolean mask on a GPU waits for it to count the
    positions."""
    rows, at = torch.nonzero(labels[:, 1:] != IGNORE, as_tuple=True)
    return rows * labels.shape[1] + at, labels[rows, at + 1]


class CausalLMLoss(nn.Module):
    """forward(input_ids, labels, attention_mask=None, position_ids=None) -> (summed loss, number of loss tokens).

    `train_rows`: train only these rows of the input embedding and of the output head (the new EOT token's), and
    freeze the rest of both matrices (`train.freeze_embeddings`). The rows live here as their own parameters
    (one shared by a tied head, as Gemma's), used by the embedding through a forward hook and by the fused head
    directly; no vocabulary-sized gradient or optimizer state exists. `merge_rows()` writes them back into the
    model before it is saved, so checkpoints stay plain transformers models. `low_precision_grad`: see
    `fused_linear_cross_entropy` (the trainer sets it where bf16 is fast: a GPU, a CPU with bf16 units)."""

    def __init__(
        self,
        lm: nn.Module,
        chunk_size: int = 256,
        head_grad_in_forward: bool = False,
        train_rows: list[int] | None = None,
        low_precision_grad: bool = False,
    ):
        super().__init__()
        self.lm, self.chunk_size, self.low_precision_grad = lm, chunk_size, low_precision_grad
        # only without DDP/FSDP: their gradient hooks must see every parameter's gradient arrive through autograd
        self.head_grad_in_forward = head_grad_in_forward
        self._no_split_modules = getattr(lm, "_no_split_modules", None)  # FSDP auto-wrap reads it off the root
        self.rows_in = self.rows_out = None
        if train_rows:
            self._split_rows(train_rows)

    def _split_rows(self, train_rows: list[int]) -> None:
        emb, head = self.lm.get_input_embeddings(), self.lm.get_output_embeddings()
        self.register_buffer("row_ids", torch.tensor(train_rows, device=emb.weight.device), persistent=False)
        emb.weight.requires_grad_(False)
        self.rows_in = nn.Parameter(emb.weight[self.row_ids].detach().clone())
        if head.weight is emb.weight:
            self.rows_out = self.rows_in  # a tied head: one row, trained from both ends
        else:
            head.weight.requires_grad_(False)
            self.rows_out = nn.Parameter(head.weight[self.row_ids].detach().clone())
        emb.register_forward_hook(self._embed_rows)

    def _embed_rows(self, module, args, out):
        """Positions holding a trained row's token take it from `rows_in` (times the embedding's scale, Gemma)."""
        ids = args[0]
        hit = torch.isin(ids, self.row_ids)
        which = (ids[..., None] == self.row_ids).float().argmax(-1)
        scale = getattr(module, "embed_scale", None)
        rows = self.rows_in.to(out.dtype)[which] * (scale.to(out.dtype) if scale is not None else 1.0)
        return torch.where(hit[..., None], rows, out)

    @torch.no_grad()
    def merge_rows(self) -> None:
        """Copy the trained rows into the model's embedding and head (before saving a checkpoint). Every process
        calls it: under FSDP2 the rows are gathered from their shards."""
        if self.rows_in is None:
            return
        reshard(self)  # into the shards, not into a gathered copy that FSDP2 drops (sharded_rows.reshard)
        rows_in, rows_out = (full(r) for r in (self.rows_in, self.rows_out))
        set_rows(self.lm.get_input_embeddings().weight, self.row_ids, rows_in)
        set_rows(self.lm.get_output_embeddings().weight, self.row_ids, rows_out)

    def forward(
        self,
        input_ids,
        labels,
        attention_mask=None,
        position_ids=None,
        grad_scale: float | None = None,
        loss_index=None,
        loss_targets=None,
        **attention_kwargs,
    ):
        """`grad_scale`: the multiplier `backward` will be called with (see `fused_linear_cross_entropy`).
        `loss_index`, `loss_targets`: the loss positions as `loss_index` builds them (on the host, no sync); without
        them they are found from `labels` on the device. `attention_kwargs` go to the model's forward
        (`packed_attention.forward_kwargs`)."""
        emb = self.lm.get_input_embeddings()
        # with the head's gradient in forward (one process), the lookup's gradient goes in sparse: its rows are added
        # in place into weight.grad. torch's dense embedding backward zero-fills a vocab x d tensor per forward and
        # adds it to weight.grad (262K x 640 fp32: 0.67 GB written and added each time) for a few hundred rows; on
        # the 2-core CPU this made a bf16 training step ~1.2x slower (benchmarks/RESULTS.md). weight.grad must exist
        # first and be dense, or autograd would store the sparse tensor as the grad.
        sparse = (
            self.head_grad_in_forward
            and torch.is_grad_enabled()
            and isinstance(emb, nn.Embedding)
            and emb.weight.requires_grad
            and emb.weight.is_leaf
            and not emb.sparse
        )
        if sparse and emb.weight.grad is None:
            emb.weight.grad = torch.zeros_like(emb.weight)
        was, emb.sparse = emb.sparse, emb.sparse or sparse
        try:
            hidden = self.lm.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                **attention_kwargs,
            ).last_hidden_state
        finally:
            emb.sparse = was  # the model as it was
        if loss_index is None:
            mask, targets = loss_positions(labels)
            h = hidden[:, :-1][mask]
        else:
            h, targets = hidden.flatten(0, 1).index_select(0, loss_index), loss_targets
        head = self.lm.get_output_embeddings()
        softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        trained = {} if self.rows_out is None else {"row_ids": self.row_ids, "rows": self.rows_out}
        loss = fused_linear_cross_entropy(
            h,
            head.weight,
            targets,
            getattr(head, "bias", None),
            self.chunk_size,
            softcap,
            grad_scale if self.head_grad_in_forward else None,
            low_precision_grad=self.low_precision_grad,
            **trained,
        )
        return loss, targets.numel()
