"""Encoding a split on every rank: each encodes a share, the shares are gathered in order."""
from __future__ import annotations

from data.splits import select_rows
from parallel.ranks import Ranks, gather_rows


def sharded_encoder(model, batch_size: int, sequence: str, ranks: Ranks, protocols=None):
    """A function split -> protocol -> (image side, text side) outputs of every row, on the CPU
    (CrossModalHasher.encode_protocols; `protocols`: those, None every one). Under torchrun each rank
    encodes a contiguous share of whole scoring batches (so sequence "batch" sees UCMFH's batches)
    and every rank gets them all."""
    def encode(split):
        if not ranks.distributed:
            return model.encode_protocols(split, batch_size, sequence, protocols)
        batches = -(-len(split) // batch_size)
        first, last = (min(len(split), batch_size * (batches * r // ranks.world_size))
                       for r in (ranks.rank, ranks.rank + 1))
        rows = slice(first, last) if last > first else slice(0, 1)     # an empty share: one row, cut below
        share = select_rows(split, rows, f"rows {first}-{last}")   # read a batch at a time while encoded
        mine = model.encode_protocols(share, batch_size, sequence, protocols)
        device = next(model.parameters()).device    # NCCL gathers device tensors
        return {protocol: tuple(gather_rows(side[:last - first].to(device), ranks).cpu() for side in sides)
                for protocol, sides in mine.items()}
    return encode
