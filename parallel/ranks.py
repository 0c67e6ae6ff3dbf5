"""Which process this is, and the few collectives data-parallel training and scoring need.

torchrun starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; init_from_env joins them into one process group (NCCL on GPUs, gloo on CPUs). In a
plain `python train.py` run none of this is set and every function here is the identity.

How a global batch of B rows is trained on W ranks (ICMR.Solver):
  1. every rank draws the same shuffled order and the same modality-dropout mask (seeded
     generators), and takes its contiguous part of each batch: local_part;
  2. it encodes its rows, then gather_with_grad makes the (B, ...) outputs of all ranks, its own
     rows still attached to its graph, so the contrastive loss sees all B rows as negatives and
     is the same number on every rank;
  3. after backward each rank holds the gradient through its own rows; sum_gradients adds them,
     which is the gradient of the one-process loss on the same B rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def current() -> Ranks:
    """This process's place in the process group (SINGLE when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return SINGLE


def launched_rank() -> int:
    """This process's rank as torchrun set it (RANK; 0 without torchrun), known before init_from_env."""
    return int(os.environ.get("RANK", "0"))


def init_from_env(device: str = "auto") -> Ranks:
    """Join the process group torchrun describes in the environment; SINGLE without one. NCCL when
    the run is on CUDA devices, gloo otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return current()
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        # a long timeout: in extraction one rank may wait at a barrier while another finishes its chunks
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    return current()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device this process computes on: under torchrun on GPUs its own, cuda:LOCAL_RANK (the one
    init_from_env selects), whatever cuda:N was asked for, so N processes use N GPUs; else `device`."""
    return torch.device("cuda", ranks.local_rank) if ranks.distributed and device.type == "cuda" else device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_part(rows: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous part of a global batch (parts differ in length by at most one)."""
    return rows.tensor_split(ranks.world_size)[ranks.rank] if ranks.distributed else rows


def _gather_pieces(x: torch.Tensor, ranks: Ranks) -> list:
    """Every rank's (n_r, ...) tensor, in rank order, without gradient; n_r may differ by rank."""
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(ranks.world_size)]
    dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:len(x)] = x.detach()
    pieces = [torch.empty_like(padded) for _ in range(ranks.world_size)]
    dist.all_gather(pieces, padded)
    return [piece[:int(size.item())] for piece, size in zip(pieces, sizes)]


def gather_rows(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """(sum of n_r, ...): the rows of every rank in rank order, on every rank, without gradient."""
    return torch.cat(_gather_pieces(x, ranks)) if ranks.distributed else x


def gather_with_grad(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """As gather_rows, with this rank's own rows being `x` itself, so gradients reach them."""
    if not ranks.distributed:
        return x
    pieces = _gather_pieces(x, ranks)
    pieces[ranks.rank] = x
    return torch.cat(pieces)


def sum_gradients(params, ranks: Ranks) -> None:
    """Add up the parameters' gradients over the ranks (one flat all-reduce). A parameter with no
    gradient on some rank counts as zero there; one with none on any rank keeps None, as it would
    in one process (Adam then skips it)."""
    if not ranks.distributed:
        return
    params = [p for p in params if p.requires_grad]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has_grad)
    params = [p for p, anywhere in zip(params, has_grad.tolist()) if anywhere]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def broadcast(obj, ranks: Ranks):
    """Rank 0's `obj` (any picklable value) on every rank."""
    if not ranks.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    """Wait until every rank gets here."""
    if ranks.distributed:
        dist.barrier()
