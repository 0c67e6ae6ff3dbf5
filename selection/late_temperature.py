"""`--late_temperature`: the InfoNCE temperature of the last paired epochs (and of the branch).

Which temperature suits a set flips across the zoo (docs/zoo.md): switched late
from 0.5 to 0.3, zoo-labeltext gains 1.6 / 2.3 points; to 1.0, zoo-fewlabels
gains 1.9 / 0.8; the others move less than a point. So the switch comes late,
from epoch round(late_temperature_at x epoch) of the paired stage on:

- a number > 0: that temperature from the switch on;
- auto: a fork. At the switch every candidate (LATE_FACTORS x temperature) starts
  from the same state and trains the remaining paired epochs, one epoch each in
  turn from the same generator states (the same batches and dropout masks); at the
  end of the paired stage each is scored by LATE_CRITERION on its paired codes of
  a fixed draw of training pairs against other training pairs (features give the
  relevances; no labels), and the best goes on (ties: the first listed); the
  others are dropped (selection/paired_fork.py). The kept network is exactly the
  one `--late_temperature <its value>` trains (tests/test_late_temperature.py);
  the fork costs the dropped candidates' epochs.

Only the hash stage switches; auto's modality-dropout candidates train at `temperature`.
"""
from __future__ import annotations

from config import AUTO

LATE_FACTORS = (1.0, 0.6, 2.0)   # auto's candidates x temperature: 0.5, 0.3, 1.0 at the default (docs/zoo.md)
# the only criterion that ranked the late values right on both sets that flip (docs/zoo.md: shared,
# contrastive, balance, instance and consensus rank zoo-fewlabels backwards)
LATE_CRITERION = "cluster"


def switch_epoch(cfg) -> int:
    """The first paired epoch (from 0) at the late temperature: round(late_temperature_at x epoch),
    kept within 1 .. epoch - 1 (a 1-epoch stage: 0, the only one)."""
    return min(cfg.epoch - 1, max(1, round(cfg.late_temperature_at * cfg.epoch)))


def late_epochs(cfg) -> int:
    """The paired epochs from the switch on: each candidate of the fork trains them (the dropped ones' are its cost)."""
    return cfg.epoch - switch_epoch(cfg)


def candidates(cfg) -> list:
    return [round(factor * cfg.temperature, 6) for factor in LATE_FACTORS]


def temperature_at(solver, epoch: int) -> float:
    """The temperature epoch `epoch` (from 0; the branch's come after the paired ones) trains with
    outside the fork: temperature before the switch, then late_temperature or auto's choice."""
    cfg = solver.cfg
    if not solver.hash_stage or not cfg.late_temperature or epoch < switch_epoch(cfg):
        return cfg.temperature
    if cfg.late_temperature != AUTO:
        return cfg.late_temperature
    return (solver.temperature_choice or {}).get("chosen", cfg.temperature)
