"""A grid's worker processes: each run in a fresh spawned process that ends itself with the grid.

This module imports nothing heavy (no torch, numpy or scipy), so a spawned worker pays only for
what its run needs: a training imports torch itself, and a test's stand-in run starts in a moment.
"""
from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from runio.logs import progress


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to `count` for the block (None: left as they are), then put back.
    A run made in the caller's own process (--jobs 1, a test, the compatible side of
    compare_reference) left its count behind: a test worker kept at one thread went on with two,
    beside the other worker on a 2-core machine."""
    import torch   # here: a spawned worker imports this module before its run needs torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def end_with_grid(grid_pid: int, run, *item):
    """`run(*item)` in a grid's worker, which ends itself once the grid's process is gone. A worker
    outlives a killed grid (SIGTERM or SIGKILL) and would go on training and writing into a run folder
    its user may be deleting; a later grid would then skip that run as done (5 December 2026)."""
    def watch():
        while os.getppid() == grid_pid:   # an orphan is re-parented, so its parent id changes
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    return run(*item)


def run_in_processes(work, jobs: int, run) -> list:
    """`run(*item)` of every item of `work`, in `jobs` processes, in order. Each run gets a fresh
    process (spawned, one task per child): a worker that trained run after run grew to 7-12 GB of
    memory and was killed on a 23 GB machine (docs/zoo.md). With one job, or one item, they run here."""
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
            guarded = functools.partial(end_with_grid, os.getpid(), run)
            return list(progress(pool.map(guarded, *zip(*work)), total=len(work), desc="runs"))
    return [run(*item) for item in progress(work, desc="runs")]
