"""Reading training pairs a window of blocks at a time (config stream_train), for sets larger than
memory: blocks of rows in shuffled order, a window of them read in file order into one buffer,
whose rows are shuffled and batched (stream_epoch, for ICMR.Solver._batches). The rows of a window
that do not fill a batch start the next window's batches, so every batch is full but the epoch's
last, as when the pairs are in memory, and an epoch runs the steps the scale schedule planned."""
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


def read_window(side, spans, device, head=None) -> torch.Tensor:
    """(R + W, D) float32 on `device`: the (R, D) rows `head` (none by default), then the W rows of
    `spans` of one side (a numpy array or data.lazy.LazyRows), read span by span into one buffer, so
    the window is never in memory twice."""
    carried = 0 if head is None else len(head)
    window = torch.empty(carried + sum(stop - start for start, stop in spans), side.shape[1], device=device)
    if carried:
        window[:carried] = head
    at = carried
    for start, stop in spans:
        window[at:at + stop - start] = torch.from_numpy(np.asarray(side[start:stop], dtype=np.float32))
        at += stop - start
    return window


def window_batches(carried: int, rows: int, batch_size: int, generator: torch.Generator, last: bool,
                   drop_last: bool) -> tuple:
    """(batches, leftover): index batches into a buffer of `carried` rows left from the last window
    (already shuffled: taken first, in order) then `rows` new rows (shuffled now), and the indices
    that do not fill a batch. Those are carried into the next window, except in the epoch's `last`
    window, where they make the short last batch (dropped with `drop_last`)."""
    order = torch.cat([torch.arange(carried), carried + torch.randperm(rows, generator=generator)])
    batches = list(order.split(batch_size))
    if batches and len(batches[-1]) < batch_size and (drop_last or not last):
        short = batches.pop()
        return batches, (order[:0] if last else short)
    return batches, order[:0]


def stream_epoch(train, rows: int, cfg, generator: torch.Generator, device):
    """One streamed epoch over the first `rows` pairs of `train`: yields ((image, text), batches)
    per window, the buffers (R + W, Di) and (R + W, Dt) on `device` (R < batch_size rows carried from
    the window before) and index batches into them. The caller drops its references to a window
    before asking for the next, which is then read: at most one window is in memory."""
    windows = list(window_spans(rows, cfg.stream_block_rows, cfg.stream_window_blocks, generator))
    head = (None, None)                 # the last window's rows in no batch yet: (R, Di), (R, Dt)
    for number, spans in enumerate(windows):
        buffers = tuple(read_window(side, spans, device, rest) for side, rest in zip((train.image, train.text), head))
        carried = 0 if head[0] is None else len(head[0])
        head = (None, None)
        batches, leftover = window_batches(carried, len(buffers[0]) - carried, cfg.batch_size, generator,
                                           number == len(windows) - 1, cfg.train_drop_last)
        yield buffers, [idx.to(device) for idx in batches]
        head = tuple(buffer[leftover.to(device)] for buffer in buffers) if len(leftover) else (None, None)
        del buffers
