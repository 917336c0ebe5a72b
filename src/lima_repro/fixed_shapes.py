"""Packed training forwards of one shape: `micro_batch_size` rows of `train.max_length` tokens each.

Packed rows (`batching.pack_rows`) differ in length and a step's rows differ in number, so a compiled model would
see a new shape, and compile again, at almost every forward. Here every row is padded to `max_length` with a
padding segment of its own (pad ids, positions restarting at 0, labels ignored): every attention path treats it as
one more example, so no real token attends to it and it adds no loss. Rows go `micro_batch_size` to a forward, the
last forward of a step topped up with rows that are padding only. A forward then costs what a full one costs; the
padding is the price of one compilation (at most micro_batch_size - 1 rows a step, besides each row's tail).
"""

from __future__ import annotations

import torch

from .batching import micro_batches, pack_rows, packed_batch
from .chat_format import IGNORE
from .config import TrainConfig
from .loss import loss_index
from .packed_attention import cu_seq_lens


def pad_row(row: dict, length: int, pad_id: int) -> dict:
    """One packed row (`batching.packed_batch`, 1 x n tensors) padded to 1 x `length`, the padding a segment of
    its own. Each segment's first label is ignored too: in the example's own forward that token is predicted by
    nothing, in a packed row the previous example's last token would predict it."""
    n = row["input_ids"].shape[1]
    if n > length:
        raise ValueError(f"a packed row of {n} tokens does not fit max_length={length} (rows are packed to it)")
    pad = length - n
    ids = torch.cat([row["input_ids"], torch.full((1, pad), pad_id, dtype=torch.long)], dim=1)
    labels = torch.cat([row["labels"], torch.full((1, pad), IGNORE, dtype=torch.long)], dim=1)
    pos = torch.cat([row["position_ids"], torch.arange(pad).unsqueeze(0)], dim=1)
    return {"input_ids": ids, "labels": labels.masked_fill(pos == 0, IGNORE), "position_ids": pos}


def padding_row(length: int, pad_id: int) -> dict:
    """A row that is padding only (tops up a step's last forward)."""
    empty = torch.zeros((1, 0), dtype=torch.long)
    return pad_row({"input_ids": empty, "labels": empty, "position_ids": empty}, length, pad_id)


def stack_rows(rows: list[dict]) -> dict:
    """Padded rows as one forward's batch: input_ids, labels, position_ids (rows x length) and `cu_seq_lens`, the
    int32 offsets of every segment in the flattened rows (what the varlen attention path takes) and the loss
    positions as indices (`loss.loss_index`), built here on the host so that no step waits for the GPU to find
    them."""
    batch = {k: torch.cat([r[k] for r in rows]) for k in ("input_ids", "labels", "position_ids")}
    batch["cu_seq_lens"] = cu_seq_lens(batch["position_ids"])
    batch["loss_index"], batch["loss_targets"] = loss_index(batch["labels"])
    return batch


def fixed_micro_batches(examples: list[dict], micro_batch_size: int, length: int, pad_id: int) -> list[dict]:
    """One process's share of a step as forwards of `micro_batch_size` x `length` tokens each (the examples
    packed first-fit decreasing into rows of at most `length` tokens, as `batching.micro_batches` packs them)."""
    if not examples:
        return []
    rows = [pad_row(packed_batch(r), length, pad_id) for r in pack_rows(examples, length)]
    rows += [padding_row(length, pad_id)] * (-len(rows) % micro_batch_size)
    return [stack_rows(rows[i : i + micro_batch_size]) for i in range(0, len(rows), micro_batch_size)]


def step_micro_batches(
    t: TrainConfig, device_type: str, examples: list[dict], pad_id: int, no_loss: bool = False
) -> list[dict]:
    """One process's forwards of a training step (`train.train_step`), as `t` asks on this device: fixed-shape packed rows (`fixed_shapes`), packed rows of at most
    max_length tokens (a forward's activations, and its masked attention, quadratic in the row, stay those of one
    longest example) or length-grouped padded batches. `no_loss`: the forwards of a process that has no example
    left in a last partial step and joins in with zero loss."""
    size = t.micro_batch_for(device_type)
    if t.fixed_shapes_for(device_type):
        mbs = fixed_micro_batches(examples, size, t.max_length, pad_id)
    else:
        mbs = micro_batches(examples, size, pad_id, t.packing, t.max_length)
    if no_loss:
        mbs = mbs[:1]
        mbs[0]["labels"].fill_(IGNORE)
        for key in ("loss_index", "loss_targets"):
            if key in mbs[0]:
                mbs[0][key] = mbs[0][key][:0]
    return mbs
