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
  others are dropped. The kept network is exactly the one `--late_temperature
  <its value>` trains (tests/test_late_temperature.py); the fork costs the
  dropped candidates' epochs.

Only the hash stage switches; auto's modality-dropout candidates train at `temperature`.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from config import AUTO
from parallel import broadcast, current
from runio.checkpoint import restore_rng, rng_states
from selection.choose import training_draw_criteria

LATE_FACTORS = (1.0, 0.6, 2.0)   # auto's candidates x temperature: 0.5, 0.3, 1.0 at the default (docs/zoo.md)
# the only criterion that ranked the late values right on both sets that flip (docs/zoo.md: shared,
# contrastive, balance, instance and consensus rank zoo-fewlabels backwards)
LATE_CRITERION = "cluster"


def switch_epoch(cfg) -> int:
    """The first paired epoch (from 0) at the late temperature: round(late_temperature_at x epoch),
    kept within 1 .. epoch - 1 (a 1-epoch stage: 0, the only one)."""
    return min(cfg.epoch - 1, max(1, round(cfg.late_temperature_at * cfg.epoch)))


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


class TemperatureFork:
    """The candidates' paired states (weights, optimisers, generators, iteration) during the fork;
    `state()` goes into the checkpoint so a run stopped mid-fork resumes it."""

    def __init__(self, states: dict):
        self.states = states                 # temperature -> {"weights", "optimizers", "rng", ..., "iteration"}

    @classmethod
    def start(cls, solver) -> "TemperatureFork":
        return cls({value: _snapshot(solver) for value in candidates(solver.cfg)})

    def state(self) -> dict:
        return self.states

    def train_epoch(self, solver, train) -> dict:
        """One paired epoch (`train()`: the solver's epoch at solver.temperature) of every candidate.
        Returns the first candidate's statistics and {f"t{value}_{key}": value} of all; the solver is
        left holding the first (the one scored and checkpointed meanwhile)."""
        found, first = {}, next(iter(self.states))
        for value in self.states:
            _restore(solver, self.states[value])
            solver.temperature = value
            stats = train()
            if value == first:
                found.update(stats)
            found.update({f"t{value:g}_{key}": number for key, number in stats.items()})
            self.states[value] = _snapshot(solver)
        _restore(solver, self.states[first])
        solver.temperature = first
        return found

    def choose(self, solver, log=print) -> dict:
        """Score every candidate, keep the best in the solver, return the selection record."""
        start, cfg, values = time.time(), solver.cfg, list(self.states)
        every, scored = training_draw_criteria(solver, "paired", values,
                                               lambda value: _restore(solver, self.states[value]), "late_temperature")
        scores = [found[LATE_CRITERION] for found in every]
        chosen = values[int(np.argmax(scores))]
        _restore(solver, self.states[chosen])
        solver.temperature = chosen
        reason = (f"highest {LATE_CRITERION} of the paired codes of {scored} training pairs after "
                  f"{cfg.epoch - switch_epoch(cfg)} epochs each: {max(scores):.4f} ("
                  + ", ".join(f"{value:g}: {score:.4f}" for value, score in zip(values, scores)) + ")")
        record = broadcast({"setting": "late_temperature", "candidates": values, "criterion": LATE_CRITERION,
                            "values": scores, "all_criteria": every, "chosen": chosen, "reason": reason,
                            "switch_epoch": switch_epoch(cfg) + 1, "scored_pairs": scored,
                            "seconds": time.time() - start}, current())
        log(f"late_temperature auto: chose {chosen:g}, {reason}")
        return record


def paired_epoch(solver, epoch: int, train) -> dict:
    """The solver's paired epoch `epoch` (from 0), `train()` running it: with late_temperature auto,
    the fork starts at the switch, trains every candidate until the paired stage ends, then chooses."""
    cfg = solver.cfg
    if solver.hash_stage and cfg.late_temperature == AUTO and epoch == switch_epoch(cfg) \
            and solver.temperature_fork is None and solver.temperature_choice is None:
        solver.temperature_fork = TemperatureFork.start(solver)
    if solver.temperature_fork is None:
        solver.temperature = temperature_at(solver, epoch)
        return train()
    stats = solver.temperature_fork.train_epoch(solver, train)
    if epoch + 1 == cfg.epoch:
        solver.temperature_choice = stats["temperature_selection"] = solver.temperature_fork.choose(solver, solver.log)
        solver.temperature_fork = None
    return stats


def _snapshot(solver) -> dict:
    """Copies of what a candidate's paired epoch changes."""
    model = solver.model
    return copy.deepcopy({"fusion": model.fusion.state_dict(), "image_head": model.image_head.state_dict(),
                          "text_head": model.text_head.state_dict(),
                          "optimizer_fusion": solver.optimizer_fusion.state_dict(),
                          "optimizer_hash": solver.optimizer_hash.state_dict(),
                          "lr_scheduler": solver.lr_scheduler.state_dict(), "rng": rng_states(solver.device),
                          "shuffle": solver.shuffle_generator.get_state(),
                          "modality": solver.modality_generator.get_state(), "iteration": solver.iteration})


def _restore(solver, state: dict) -> None:
    """Load a candidate into the solver: weights, optimisers, generators and iteration."""
    for part in ("fusion", "image_head", "text_head"):
        getattr(solver.model, part).load_state_dict(state[part])
    solver.optimizer_fusion.load_state_dict(state["optimizer_fusion"])
    solver.optimizer_hash.load_state_dict(state["optimizer_hash"])
    solver.lr_scheduler.load_state_dict(state["lr_scheduler"])
    restore_rng(state["rng"], solver.device)
    solver.shuffle_generator.set_state(state["shuffle"].cpu())
    solver.modality_generator.set_state(state["modality"].cpu())
    solver.iteration = state["iteration"]
