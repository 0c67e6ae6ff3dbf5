"""A grid's worker processes: each run in a fresh spawned process that ends itself with the grid.

This module imports nothing heavy (no torch, numpy or scipy), so a spawned worker pays only for
what its run needs: a training imports torch itself, and a test's stand-in run starts in a moment.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from runio.logs import progress


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
