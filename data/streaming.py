"""Reading training pairs a window of blocks at a time (config stream_train), for sets larger than
memory: blocks of rows in shuffled order, a window of them read in file order into one buffer,
whose rows the trainer then shuffles and batches (ICMR.Solver._batches)."""
from __future__ import annotations

import numpy as np
import torch


def streams(cfg, train, rows: int) -> bool:
    """Whether training reads its pairs a window at a time (config stream_train): on, off, or auto =
    on for features stored lazily (HDF5) whose float32 size is over stream_min_gb."""
    if cfg.stream_train != "auto":
        return cfg.stream_train == "on"
    lazy = not isinstance(train.image, np.ndarray) or not isinstance(train.text, np.ndarray)
    width = train.image.shape[1] + train.text.shape[1]
    return lazy and rows * width * 4 / 2 ** 30 > cfg.stream_min_gb


def window_spans(rows: int, block_rows: int, window_blocks: int, generator: torch.Generator):
    """One epoch's windows: lists of (start, stop) row spans, each list `window_blocks` blocks of
    `block_rows` rows (the last block shorter), blocks in an order drawn from `generator`, the spans
    of a window in file order."""
    blocks = torch.randperm(-(-rows // block_rows), generator=generator).tolist()
    for first in range(0, len(blocks), window_blocks):
        yield [(b * block_rows, min(rows, (b + 1) * block_rows)) for b in sorted(blocks[first:first + window_blocks])]


def read_window(side, spans, device) -> torch.Tensor:
    """(W, D) float32 on `device`: the rows of `spans` of one side (a numpy array or data.lazy.LazyRows),
    read span by span into one buffer, so the window is never in memory twice."""
    window = torch.empty(sum(stop - start for start, stop in spans), side.shape[1], device=device)
    at = 0
    for start, stop in spans:
        window[at:at + stop - start] = torch.from_numpy(np.asarray(side[start:stop], dtype=np.float32))
        at += stop - start
    return window
