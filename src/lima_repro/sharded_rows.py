"""Rows of a weight that FSDP2 may have sharded: reading them whole and writing trained rows back into each process's
own shard. `loss.CausalLMLoss` trains a few rows of the embedding and head (the new EOT token's) beside a frozen
rest; under FSDP2 (`fully_shard`) those weights are DTensors sharded on dim 0, which plain indexing cannot write."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor


def full(t: torch.Tensor) -> torch.Tensor:
    """A (small) tensor whole on every process: a DTensor's shards gathered (a collective), others as they are."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_offset(n: int, world: int, rank: int) -> int:
    """The first row that process `rank` holds of `n` rows sharded on dim 0 over `world` processes (DTensor's
    Shard(0), as FSDP2 shards: `torch.chunk` pieces, ceil(n / world) rows each, the last ones shorter or empty)."""
    return min(rank * -(-n // world), n)


def set_rows(weight: torch.Tensor, row_ids: torch.Tensor, rows: torch.Tensor) -> None:
    """weight[row_ids] = rows. For an FSDP2-sharded weight (a DTensor sharded on dim 0, which indexing would
    have to reshape) each process writes the rows that fall in its own shard."""
    if not isinstance(weight, DTensor):
        weight[row_ids] = rows.to(weight.dtype)
        return
    if weight.device_mesh.ndim != 1 or not weight.placements[0].is_shard(0):
        raise NotImplementedError(f"trained rows into a weight placed as {weight.placements}: only Shard(0) (FSDP2)")
    local = weight.to_local()
    start = shard_offset(weight.shape[0], weight.device_mesh.size(), weight.device_mesh.get_local_rank())
    mine = (row_ids >= start) & (row_ids < start + local.shape[0])
    local[row_ids[mine] - start] = rows[mine].to(local.dtype)


def reshard(model: nn.Module) -> None:
    """Every FSDP2 module of `model` back to its shards. FSDP2 keeps the root's parameters (the embedding and head
    among them) gathered after a forward until the backward that follows; a forward without backward (held-out
    evaluation) would leave them gathered: a whole copy of the vocabulary's rows on every process until the next
    training step, and trained rows written into that copy (merge_rows) would be dropped at the next reshard."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
