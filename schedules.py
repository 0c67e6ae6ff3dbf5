"""Scale schedules for progressive hash learning: codes are tanh(scale * x).

A small scale keeps codes continuous early in training (useful gradients); a
large one makes them nearly binary by the end, so sign() at test time loses
little. Epoch-based schedules take `progress = e / max(E - 1, 1)`, which runs
from 0 at the first epoch to 1 at the last; training_progress is that one
definition, used by the schedules, the log and histograms.json alike.
"""
from __future__ import annotations

import sys

from config import SCALE_SCHEDULES, UNIMODAL_SCALES, scale_max_for

HASHNET_RUN_ITERATIONS = 10_000   # the run length HashNet's step_size 200 and gamma 0.005 were set for
CHECK_MARK = "\u2705"              # the design note's log line starts with it (U+2705, white heavy check mark)


def training_progress(epoch: int, total_epochs: int) -> float:
    """0.0 at the first epoch, 1.0 at the last (epoch counts from 0)."""
    return epoch / max(total_epochs - 1, 1)


def epoch_scale(schedule: str, progress: float, scale_min: float, scale_max: float) -> float:
    """The scale of an epoch-based schedule at `progress` in [0, 1]."""
    if schedule == "linear":
        return scale_min + progress * (scale_max - scale_min)
    if schedule == "exponential":
        return scale_min * (scale_max / scale_min) ** progress
    if schedule == "step":
        # hold scale_min for the first half, then rise linearly to scale_max
        second_half = max(0.0, progress - 0.5) / 0.5
        return scale_min + second_half * (scale_max - scale_min)
    if schedule == "constant":
        return scale_max
    raise ValueError(f"scale_schedule {schedule!r} is not one of {', '.join(SCALE_SCHEDULES)}")


def hashnet_scale(iteration: int, scale_min: float, gamma: float, power: float, step_size: int) -> float:
    """HashNet's schedule: scale_min * (1 + gamma * it)^power, with `it` the
    iteration count at the last multiple of `step_size` (the scale is updated
    every step_size iterations). Uncapped here; ScaleSchedule caps it at scale_max."""
    stepped = (iteration // step_size) * step_size
    return scale_min * (1.0 + gamma * stepped) ** power


def normalized_hashnet(total_iterations: int, scale_min: float, scale_max: float, power: float,
                       step_size: int) -> tuple:
    """(gamma, step_size) of a HashNet schedule fitted to a run of `total_iterations` steps: the
    step scales with the run (HashNet's 200 of 10,000: 50 updates), and gamma is chosen so the
    scale reaches scale_max at the run's last update."""
    step = max(1, round(step_size * total_iterations / HASHNET_RUN_ITERATIONS))
    last_update = ((total_iterations - 1) // step) * step
    if last_update == 0:                     # a one-step run: no update, the scale stays at scale_min
        return 0.0, step
    return ((scale_max / scale_min) ** (1.0 / power) - 1.0) / last_update, step


class ScaleSchedule:
    """The scale for every (epoch, iteration) of a run, built from a Config, the number of training
    steps per epoch and the code length (scale_max may be given per code length)."""

    def __init__(self, cfg, iters_per_epoch: int, bits: int | None = None):
        self.enabled = cfg.use_progressive_hash
        self.name = cfg.scale_schedule
        self.total_epochs = cfg.epoch
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.scale_min, self.scale_max = cfg.scale_min, scale_max_for(cfg.scale_max, bits)
        self.hashnet = (cfg.hashnet_gamma, cfg.hashnet_power, cfg.hashnet_step_size)
        if cfg.hashnet_normalize:
            gamma, step = normalized_hashnet(self.total_epochs * self.iters_per_epoch, self.scale_min,
                                             self.scale_max, cfg.hashnet_power, cfg.hashnet_step_size)
            self.hashnet = (gamma, cfg.hashnet_power, step)

    @property
    def per_iteration(self) -> bool:
        return self.enabled and self.name == "hashnet"

    def at(self, epoch: int, iteration: int = 0) -> float:
        """Scale for a training step; 1.0 when progressive hashing is off."""
        if not self.enabled:
            return 1.0
        if self.name == "hashnet":
            return min(hashnet_scale(iteration, self.scale_min, *self.hashnet), self.scale_max)
        return epoch_scale(self.name, training_progress(epoch, self.total_epochs),
                           self.scale_min, self.scale_max)

    @property
    def eval_scale(self) -> float:
        """Test-time scale: the scale of the run's last training step, so the outputs scored (and
        saved, and histogrammed) are the ones the network was trained to give at the end. That is
        scale_max for every epoch schedule and the normalised hashnet, HashNet's value at the last
        update (capped at scale_max) with hashnet_normalize off, and 1.0 (plain tanh) when
        progressive hashing is off. sign() codes do not depend
        on it; the continuous outputs do."""
        return self.at(self.total_epochs - 1, self.total_epochs * self.iters_per_epoch - 1)

    def branch_at(self, epoch: int, epochs: int, mode: str) -> float:
        """The unimodal branch's scale in its epoch `epoch` (from 0) of `epochs` (config unimodal_scale):
        "plain" 1.0 (tanh(x), as with progressive hashing off); "final" the test-time scale throughout
        (saturated from the first step); "ramp" its own linear ramp from scale_min to the test-time
        scale, so its codes start continuous like the paired run's did. 1.0 whenever progressive
        hashing is off."""
        if not self.enabled or mode == "plain":
            return 1.0
        if mode == "final":
            return self.eval_scale
        if mode == "ramp":
            return epoch_scale("linear", training_progress(epoch, epochs), self.scale_min, self.eval_scale)
        raise ValueError(f"unimodal_scale {mode!r} is not one of {', '.join(UNIMODAL_SCALES)}")

    def describe(self) -> str:
        """The run's announcement; with progressive hashing on, the design note's line verbatim
        (`✅ Using Progressive Hash Learning - Scale from 1.0 to 10.0`, which users grep for)."""
        if not self.enabled:
            return "Progressive Hash Learning off - plain tanh codes"
        if self.name == "hashnet":
            gamma, power, step = self.hashnet
            return checked(f"Using Progressive Hash Learning - HashNet schedule: scale {self.scale_min} * "
                           f"(1 + {gamma:.4g} * iter)^{power}, updated every {step} iterations, capped at "
                           f"{self.scale_max:g}")
        return checked(f"Using Progressive Hash Learning - Scale from {self.scale_min} to {self.scale_max}"
                       + ("" if self.name == "linear" else f" ({self.name} schedule)"))


def checked(message: str) -> str:
    """`message` after the design note's check mark, or alone where sys.stdout cannot encode the mark
    (PYTHONIOENCODING=ascii, a C locale, latin-1): printing it there would raise UnicodeEncodeError,
    and the rest of the line, what users grep for, is the same either way."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        CHECK_MARK.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return message
    return f"{CHECK_MARK} {message}"
