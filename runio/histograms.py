"""histograms.json (`--record_histograms true`): the query set's hash outputs during training.

Taken after the paired epochs whose training progress is 0, 20, ..., 100% (epoch index e of E:
progress e / (E - 1)), each at the scale of that epoch's last step, so a plot shows the codes
going from continuous to nearly binary as the scale grows.
"""
from __future__ import annotations

import numpy as np

from schedules import training_progress

HISTOGRAM_POINTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # training progress at which histograms are taken
HISTOGRAM_EDGES = np.linspace(-1.0, 1.0, 51)


class HistogramRecorder:
    """The snapshots of one run; a resumed run keeps those of the epochs it had done."""

    def __init__(self, solver):
        cfg = solver.cfg
        self.epochs = {round(p * (cfg.epoch - 1)) for p in HISTOGRAM_POINTS} \
            if cfg.record_histograms and solver.hash_stage else set()
        self.snapshots = [h for h in solver.run.read_json("histograms.json", {}).get("snapshots", [])
                          if h["epoch"] <= solver.epoch]

    def after_epoch(self, solver, epoch: int) -> None:
        """A snapshot after epoch `epoch` (from 0) when it is one of the recorded epochs."""
        if epoch not in self.epochs:
            return
        scale = solver.schedule.at(epoch, solver.iteration - 1)
        image, text = solver.model.encode_split(solver.data.query, "paired", solver.cfg.eval_batch_size, scale)
        count = lambda h: np.histogram(h.numpy(), HISTOGRAM_EDGES)[0].tolist()  # noqa: E731
        self.snapshots.append({"epoch": epoch + 1, "progress": training_progress(epoch, solver.cfg.epoch),
                               "scale": scale, "image": count(image), "text": count(text)})
        solver.run.write_histograms(HISTOGRAM_EDGES.tolist(), self.snapshots)
