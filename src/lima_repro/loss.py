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


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_size, softcap, grad_scale):
        n = h.shape[0]
        acc = torch.promote_types(weight.dtype, torch.float32)  # softmax and accumulators: at least fp32
        loss = torch.zeros((), dtype=acc, device=h.device)
        grad_h = torch.empty_like(h)
        if grad_scale is None:
            grad_w, w_scale = torch.zeros_like(weight, dtype=acc), 1.0
        else:  # straight into weight.grad, already multiplied by the scale backward will be called with
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            grad_w, w_scale = weight.grad, grad_scale
        grad_b = torch.zeros_like(bias, dtype=acc) if bias is not None else None
        rows = torch.arange(min(chunk_size, n), device=h.device)
        for i in range(0, n, chunk_size):
            hi, yi = h[i : i + chunk_size], targets[i : i + chunk_size]
            logits = F.linear(hi, weight, bias).to(acc)
            if softcap is not None:
                t = torch.tanh(logits / softcap)
                logits = softcap * t
            # softmax in place, one exp pass: logsumexp would add a chunk-sized temporary and a second exp
            top = logits.amax(dim=-1, keepdim=True)
            target = logits.gather(1, yi[:, None]) - top
            total = logits.sub_(top).exp_().sum(dim=-1, keepdim=True)
            loss += (total.log() - target).sum()
            # d loss / d logits = softmax - onehot; big temporaries cost page faults on CPU
            dlogits = logits.div_(total)
            dlogits[rows[: len(yi)], yi] -= 1.0
            if softcap is not None:
                dlogits.mul_(1.0 - t * t)
            # under autocast the matmuls run in the autocast dtype; otherwise in the weights' dtype
            dl = dlogits if torch.is_autocast_enabled(h.device.type) else dlogits.to(weight.dtype)
            grad_h[i : i + chunk_size] = (dl @ weight).to(h.dtype)
            if dl.dtype == grad_w.dtype and hi.dtype == grad_w.dtype:
                grad_w.addmm_(dl.t(), hi, alpha=w_scale)  # accumulate in place: no V x d temporary per chunk
            else:
                grad_w.add_((dl.t() @ hi).to(grad_w.dtype), alpha=w_scale)
            if grad_b is not None:
                grad_b += dlogits.sum(0)
        ctx.grad_scale = grad_scale
        ctx.save_for_backward(grad_h, None if grad_scale is not None else grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        gb = (grad_b * grad_out).to(b_dtype) if grad_b is not None else None
        if ctx.grad_scale is not None:
            # checked without a host sync (on a GPU it fails at the next synchronisation)
            expected = torch.tensor(ctx.grad_scale, dtype=torch.float64, device=grad_out.device)
            torch._assert_async(torch.isclose(grad_out.double(), expected),
                                f"the output head's weight gradient was accumulated for backward(loss * "
                                f"{ctx.grad_scale}), but backward came with another multiplier: pass the loss "
                                "multiplier as grad_scale, or no grad_scale")
            gw = None  # already in weight.grad
        else:
            # scaled in place (backward runs once: no retain_graph): a second V x d tensor would double the head's
            # gradient memory for a moment, and that moment is the training step's peak
            gw = grad_w.mul_(grad_out).to(w_dtype)
        return grad_h.mul_(grad_out.to(grad_h.dtype)), gw, gb, None, None, None, None


def fused_linear_cross_entropy(h, weight, targets, bias=None, chunk_size: int = 256, softcap: float | None = None,
                               grad_scale: float | None = None):
    """Sum over rows of cross_entropy(softcap(h @ weight.T + bias), targets); logits exist one chunk at a time.

    `grad_scale`: the caller will call `backward` on `loss * grad_scale`; the weight's gradient is then added to
    `weight.grad` during this call (a leaf weight of the accumulator dtype and grad mode on; else ignored), and
    `backward` with any other multiplier is an error."""
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0  # keeps the graph (and DDP's gradient hooks) intact
    into_grad = (grad_scale is not None and torch.is_grad_enabled() and weight.requires_grad and weight.is_leaf
                 and weight.dtype == torch.promote_types(weight.dtype, torch.float32))
    return _FusedLinearCE.apply(h, weight, bias, targets, chunk_size, softcap, grad_scale if into_grad else None)


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of positions t whose NEXT token is a label, and those target ids (the causal shift)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return mask, targets[mask]


class CausalLMLoss(nn.Module):
    """forward(input_ids, labels, attention_mask=None, position_ids=None) -> (summed loss, number of loss tokens)."""

    def __init__(self, lm: nn.Module, chunk_size: int = 256, head_grad_in_forward: bool = False):
        super().__init__()
        self.lm, self.chunk_size = lm, chunk_size
        # only without DDP/FSDP: their gradient hooks must see every parameter's gradient arrive through autograd
        self.head_grad_in_forward = head_grad_in_forward
        self._no_split_modules = getattr(lm, "_no_split_modules", None)  # FSDP auto-wrap reads it off the root

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None, grad_scale: float | None = None):
        """`grad_scale`: the multiplier `backward` will be called with (see `fused_linear_cross_entropy`)."""
        hidden = self.lm.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        mask, targets = loss_positions(labels)
        h = hidden[:, :-1][mask]
        head = self.lm.get_output_embeddings()
        softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        loss = fused_linear_cross_entropy(h, head.weight, targets, getattr(head, "bias", None), self.chunk_size,
                                          softcap, grad_scale if self.head_grad_in_forward else None)
        return loss, targets.numel()
