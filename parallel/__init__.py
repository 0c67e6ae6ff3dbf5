"""Data parallelism over torch.distributed, for processes started by torchrun (see docs/scaling.md)."""
from parallel.ranks import (SINGLE, Ranks, barrier, broadcast, current, gather_rows, gather_with_grad, init_from_env,
                            local_part, rank_device, shutdown, sum_gradients)
from parallel.sharded import sharded_encoder

__all__ = ["SINGLE", "Ranks", "barrier", "broadcast", "current", "gather_rows", "gather_with_grad", "init_from_env",
           "local_part", "rank_device", "sharded_encoder", "shutdown", "sum_gradients"]
