"""Turning encoded examples into the micro-batches of one optimizer step.

One optimizer step sees `batch_size` examples (LIMA sec. 3: 32). Each epoch shuffles the examples with a
generator seeded by (seed, epoch), so the data order is a pure function of the config and a resumed run
replays it exactly. Process `rank` of `world` takes examples rank::world of each step, then splits them into
micro-batches: padded batches of similar length, or packed rows (several examples per row, positions
restarting at 0 for each, so the model's mask keeps them from attending to one another).
"""

from __future__ import annotations

import math

import torch

from .chat_format import IGNORE


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_examples, generator=g).tolist()


def step_examples(order: list[int], step: int, batch_size: int) -> list[int]:
    return order[step * batch_size : (step + 1) * batch_size]


def pad_batch(examples: list[dict], pad_id: int) -> dict:
    """Right-padded tensors: input_ids, labels (IGNORE on padding), attention_mask."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded (input_ids, attention_mask, position_ids) for prompts a model continues: every row ends in
    the last column, and positions count from each row's first real token (padding must not shift them)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(seqs):
        ids[row, width - len(s) :] = torch.tensor(s)
        mask[row, width - len(s) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def pack_rows(examples: list[dict], capacity: int) -> list[list[dict]]:
    """First-fit decreasing: group examples into rows of at most `capacity` tokens."""
    rows: list[list[dict]] = []
    room: list[int] = []
    for e in sorted(examples, key=lambda e: -len(e["input_ids"])):
        n = len(e["input_ids"])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(e)
                room[r] -= n
                break
        else:
            rows.append([e])
            room.append(capacity - n)
    return rows


def packed_batch(row: list[dict]) -> dict:
    """One packed row: concatenated ids and labels, position ids restarting at 0 for each example, no mask."""
    ids = torch.tensor([t for e in row for t in e["input_ids"]]).unsqueeze(0)
    labels = torch.tensor([t for e in row for t in e["labels"]]).unsqueeze(0)
    pos = torch.tensor([p for e in row for p in range(len(e["input_ids"]))]).unsqueeze(0)
    return {"input_ids": ids, "labels": labels, "position_ids": pos}


def micro_batches(examples: list[dict], micro_batch_size: int, pad_id: int, packing: bool, capacity: int) -> list[dict]:
    """Split one process's share of a step into forward-pass batches."""
    if not examples:
        return []
    if packing:
        return [packed_batch(row) for row in pack_rows(examples, capacity)]
    by_len = sorted(examples, key=lambda e: len(e["input_ids"]))
    return [pad_batch(by_len[i : i + micro_batch_size], pad_id) for i in range(0, len(by_len), micro_batch_size)]


def to_device(batch: dict, device: torch.device) -> dict:
    """A micro-batch's tensors on the model's device (pinned first on CUDA, so the copy overlaps compute)."""
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def count_loss_tokens(examples: list[dict]) -> int:
    """Tokens that carry loss after the causal shift (a label at position 0 predicts nothing)."""
    return sum(sum(1 for t in e["labels"][1:] if t != IGNORE) for e in examples)
