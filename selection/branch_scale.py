"""`--unimodal_scale auto`: choose the unimodal branch's training scale per dataset, without labels.

The branch trained at the test-time scale (`final`) or at scale 1 (`plain`) wins
on different sets (docs/zoo.md: plain gains about a point on three zoo sets and
loses 4.2 on wiki). Which one a set wants shows after a few branch epochs, not
after one, so the two candidates share their start and fork:

1. both start as copies of the trained paired network, with the same fresh optimiser;
2. for the first `unimodal_select_epochs` branch epochs each trains one epoch in
   turn, from the same generator states (the same batches and dropout masks);
3. then each is scored by `select_criterion` (selection/criteria.py) on its
   unimodal codes of a fixed draw of training pairs against other training pairs
   (the features give the relevances; no labels), and the better one (ties: the
   first listed) goes on for the remaining branch epochs; the other is dropped.

The kept branch is exactly the one `--unimodal_scale <its mode>` would have
trained (tests/test_branch_scale.py); the fork costs the dropped candidate's
epochs. With progressive hashing off every mode trains at scale 1: no fork.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from config import AUTO
from parallel import broadcast, current
from runio.checkpoint import restore_rng, rng_states
from selection.choose import training_draw_criteria

BRANCH_CANDIDATES = ("final", "plain")   # the modes auto chooses between (config.UNIMODAL_SCALES)


class BranchFork:
    """The candidates' states (branch weights, optimiser, generators, iteration) during the fork;
    `state()` goes into the checkpoint so a run stopped mid-fork resumes it."""

    def __init__(self, states: dict):
        self.states = states                 # mode -> {"branch", "optimizer", "rng", "shuffle", "iteration"}

    @classmethod
    def start(cls, solver) -> "BranchFork":
        """Every candidate at the solver's present branch (the copy of the paired network)."""
        return cls({mode: _snapshot(solver) for mode in BRANCH_CANDIDATES})

    @classmethod
    def from_state(cls, state: dict) -> "BranchFork":
        """From a checkpoint (what state() saved), as PairedFork.from_state."""
        return cls(state)

    def state(self) -> dict:
        return self.states

    def train_epoch(self, solver) -> dict:
        """One branch epoch of every candidate, each from its own generator states (the same for all:
        every epoch draws alike). Returns {f"{mode}_{key}": value} of the candidates' epoch statistics."""
        found = {}
        for mode in BRANCH_CANDIDATES:
            _restore(solver, self.states[mode])
            found.update({f"{mode}_{key}": value for key, value in solver.trainbranch(mode).items()})
            self.states[mode] = _snapshot(solver)
        return found

    def choose(self, solver, epochs: int, log=print) -> dict:
        """Score every candidate, keep the best in the solver, return the selection record."""
        start, cfg = time.time(), solver.cfg
        every, scored = training_draw_criteria(solver, "unimodal", BRANCH_CANDIDATES,
                                               lambda mode: _restore(solver, self.states[mode]), "unimodal_scale")
        values = [found[cfg.select_criterion] for found in every]
        best = int(np.argmax(values))
        chosen = BRANCH_CANDIDATES[best]
        _restore(solver, self.states[chosen])
        reason = (f"highest {cfg.select_criterion} of the branch's unimodal codes of {scored} training pairs "
                  f"after {epochs} epochs: {values[best]:.4f} ("
                  + ", ".join(f"{mode}: {value:.4f}" for mode, value in zip(BRANCH_CANDIDATES, values)) + ")")
        record = broadcast({"setting": "unimodal_scale", "candidates": list(BRANCH_CANDIDATES),
                            "criterion": cfg.select_criterion, "values": values, "all_criteria": every,
                            "chosen": chosen, "reason": reason, "epochs": epochs, "scored_pairs": scored,
                            "seconds": time.time() - start}, current())
        log(f"unimodal_scale auto: chose {chosen}, {reason}")
        return record


def branch_mode(solver) -> str:
    """unimodal_scale, or auto's choice (final until made, and with progressive hashing off: all at scale 1)."""
    if solver.cfg.unimodal_scale != AUTO:
        return solver.cfg.unimodal_scale
    return (solver.branch_choice or {}).get("chosen", "final")


def branch_epoch(solver, epoch: int) -> dict:
    """The solver's branch epoch `epoch` (counted over the whole run, from 0): of every candidate
    while unimodal_scale auto forks, then the choice; else of the branch in its mode."""
    if solver.branch_fork is None:
        return solver.trainbranch(branch_mode(solver))
    stats, done = solver.branch_fork.train_epoch(solver), epoch + 1 - solver.cfg.epoch
    if done >= min(solver.cfg.unimodal_select_epochs, solver.cfg.unimodal_epochs):
        solver.branch_choice = stats["branch_selection"] = solver.branch_fork.choose(solver, done, solver.log)
        solver.branch_fork = None
    return stats


def _snapshot(solver) -> dict:
    """Copies of what a candidate's epoch changes."""
    return {"branch": copy.deepcopy(solver.branch.state_dict()),
            "optimizer": copy.deepcopy(solver.optimizer_branch.state_dict()),
            "average": solver.branch_average and solver.branch_average.state_dict(),   # a copy
            "rng": rng_states(solver.device), "shuffle": solver.shuffle_generator.get_state(),
            "iteration": solver.iteration}


def _restore(solver, state: dict) -> None:
    """Load a candidate into the solver: weights, optimiser, generators and iteration."""
    solver.branch.load_state_dict(state["branch"])
    solver.optimizer_branch.load_state_dict(state["optimizer"])
    if solver.branch_average is not None and state.get("average"):   # none: saved before averaging
        solver.branch_average.load_state_dict(state["average"])
    restore_rng(state["rng"], solver.device)
    solver.shuffle_generator.set_state(state["shuffle"].cpu())
    solver.iteration = state["iteration"]
