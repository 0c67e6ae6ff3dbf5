"""Forks of the paired stage: candidate values of one setting trained from the same state, one kept.

Three settings fork (each chooses without labels, docs/zoo.md):

- `modality_dropout auto` with `select_fork` s > 0: from the first paired epoch, every candidate
  of `select_candidates` trains round(s x epoch) epochs (fork_epochs) on every training pair but the
  held-out draw (choose.split_for_selection), then the held-out pairs' codes are scored by
  `select_criterion` against other training pairs; the best goes on, with every pair, to the end.
  Unlike the separate short trainings (choose.choose_modality_dropout), the kept candidate's
  epochs are part of the run, so the fork costs only the dropped candidates' epochs.
- `late_temperature auto` (late_temperature.py): from the switch epoch to the end of the paired stage.
- `balanced_neighbours auto` (the default): the first neighbour_fork_epochs paired epochs (the whole stage on
  the zoo, where it was judged), once per candidate of config.NEIGHBOUR_CANDIDATES (covariance, features); then
  `cluster` scores each candidate's paired codes of every training pair (halves_criteria: two fixed halves, each
  ranked against the other; on a 200-pair draw the picks were noise, docs/zoo-log.md, stop 63), and the kept one
  goes on, to the branch too, with its neighbours. Where no paired loss uses neighbours, or another fork of the
  paired stage runs, covariance is kept without a fork (no_neighbour_fork).

During a fork, each paired epoch runs once per candidate, in turn, from the same generator states
(the same batches and dropout masks); the solver holds the first candidate between epochs (it is
the one scored and checkpointed meanwhile), and `state()` goes into the checkpoint so a run
stopped mid-fork resumes it.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from config import AUTO, NEIGHBOUR_CANDIDATES
from parallel import broadcast, current
from runio.checkpoint import restore_rng, rng_states
from selection import choose, late_temperature

# setting -> (the solver attribute the candidates set, the prefix of each candidate's statistics)
FORKED = {"modality_dropout": ("modality_dropout", "md"), "late_temperature": ("temperature", "t"),
          "balanced_neighbours": ("neighbour_source", "nb_")}


def _name(value) -> str:
    """A candidate as logs and statistics name it: 0.75, 0.3, features."""
    return value if isinstance(value, str) else f"{value:g}"


def forks_dropout(solver) -> bool:
    """Whether the solver chooses modality_dropout auto by a fork (select_fork; streamed runs, whose
    batches are read a window at a time, train separate candidates instead)."""
    cfg = solver.cfg
    return solver.hash_stage and cfg.modality_dropout == AUTO and cfg.select_fork and not solver.streamed


def no_neighbour_fork(cfg) -> str:
    """Why balanced_neighbours auto keeps its first candidate without a fork; "" where it forks."""
    if not (cfg.balanced_loss or cfg.infonce_mask_neighbours):   # the candidates would train alike
        return "no paired loss uses neighbours (--balanced_loss and --infonce_mask_neighbours are off)"
    if cfg.late_temperature == AUTO or cfg.select_fork:          # one fork of the paired stage at a time
        return "the paired stage forks for --late_temperature auto or --select_fork"
    return ""


def neighbour_fork_end(cfg) -> int:
    """The paired epochs balanced_neighbours auto's fork trains before it chooses."""
    return min(cfg.epoch, cfg.neighbour_fork_epochs or cfg.epoch)


def fork_epochs(cfg) -> int:
    """The dropout fork's length: round(select_fork x epoch) epochs, at least 1, and over before a
    late_temperature auto fork starts (on the zoo 0.3 of 10 epochs chose wrongly where 0.6 did not: docs/zoo.md)."""
    last = late_temperature.switch_epoch(cfg) if cfg.late_temperature == AUTO else cfg.epoch
    return max(1, min(round(cfg.select_fork * cfg.epoch), last))


class PairedFork:
    """The candidates' paired states (weights, optimisers, generators, iteration) during a fork."""

    def __init__(self, setting: str, states: dict):
        self.setting, self.states = setting, states   # value -> {"fusion", ..., "iteration"}
        self.attribute, self.prefix = FORKED[setting]
        self.seconds = dict.fromkeys(states, 0.0)     # each candidate's training time (not checkpointed)
        self.trained = None                            # modality_dropout: (N,) bool, the rows candidates train on

    @classmethod
    def start(cls, solver, setting: str, values) -> "PairedFork":
        return cls(setting, {(value if isinstance(value, str) else float(value)): _snapshot(solver)
                             for value in values})

    @classmethod
    def from_state(cls, state: dict) -> "PairedFork":
        """From a checkpoint; those before the dropout fork saved the temperature fork's states alone."""
        return cls(state["setting"], state["states"]) if "setting" in state else cls("late_temperature", state)

    def state(self) -> dict:
        return {"setting": self.setting, "states": self.states}

    def rows(self, solver) -> torch.Tensor | None:
        """(N,) bool: the training rows a candidate trains on (the dropout fork keeps the held-out
        draw out, so the criterion scores pairs no candidate saw); None: every row (with select_holdout
        0 the dropout fork trains on every pair and scores a draw of them, as the temperature fork)."""
        if self.setting == "modality_dropout" and solver.cfg.select_holdout and self.trained is None:
            held, _ = choose.split_for_selection(solver.num_train, solver.cfg.select_holdout, solver.cfg.seed)
            self.trained = torch.ones(solver.num_train, dtype=torch.bool)
            self.trained[torch.from_numpy(held)] = False
        return self.trained

    def train_epoch(self, solver, train) -> dict:
        """One paired epoch (`train()`) of every candidate. Returns the first candidate's statistics
        and {f"{prefix}{value}_{key}": value} of all; the solver is left holding the first."""
        found, first = {}, next(iter(self.states))
        for value in self.states:
            _restore(solver, self.states[value])
            setattr(solver, self.attribute, value)
            start, stats = time.time(), train()
            self.seconds[value] += time.time() - start
            if value == first:
                found.update(stats)
            found.update({f"{self.prefix}{_name(value)}_{key}": number for key, number in stats.items()})
            self.states[value] = _snapshot(solver)
        _restore(solver, self.states[first])
        setattr(solver, self.attribute, first)
        return found

    def choose(self, solver, epochs: int, log=print) -> dict:
        """Score every candidate, keep the best in the solver (ties: the first), return the record."""
        start, cfg, values = time.time(), solver.cfg, list(self.states)
        criterion = cfg.select_criterion if self.setting == "modality_dropout" else late_temperature.LATE_CRITERION
        score = choose.halves_criteria if self.setting == "balanced_neighbours" else choose.training_draw_criteria
        every, scored = score(solver, "paired", values, lambda value: _restore(solver, self.states[value]),
                              self.setting)
        scores = [found[criterion] for found in every]
        best, rows = values[int(np.argmax(scores))], self.rows(solver)
        where = "held-out training pairs (no candidate trained on them)" if rows is not None else "training pairs"
        reason = (f"highest {criterion} of the paired codes of {scored} {where} after {choose.epochs_each(epochs)}: "
                  f"{max(scores):.4f} (" + ", ".join(f"{_name(v)}: {s:.4f}" for v, s in zip(values, scores)) + ")")
        record = {"setting": self.setting, "candidates": values, "criterion": criterion, "values": scores,
                  "all_criteria": every, "chosen": best, "reason": reason, "epochs": epochs, "fork": True,
                  "scored_pairs": scored, "seconds": time.time() - start,
                  # what the fork cost over training the kept candidate alone: the dropped ones' epochs
                  "dropped_seconds": sum(s for v, s in self.seconds.items() if v != best)}
        if self.setting == "modality_dropout":
            trained = solver.num_train if rows is None else int(rows.sum())
            record.update(train_pairs=trained, held_out_pairs=solver.num_train - trained)
        elif self.setting == "late_temperature":
            record["switch_epoch"] = late_temperature.switch_epoch(cfg) + 1
        record = broadcast(record, current())     # under torchrun: rank 0's choice everywhere
        _restore(solver, self.states[record["chosen"]])
        setattr(solver, self.attribute, record["chosen"])
        log(f"{self.setting} auto: chose {_name(record['chosen'])}, {reason}")
        return record


def paired_epoch(solver, epoch: int, train) -> dict:
    """The solver's paired epoch `epoch` (from 0), `train()` running it: a fork starts at its first
    epoch, trains every candidate until its last, then chooses (module docstring)."""
    cfg = solver.cfg
    kept = _neighbours_without_fork(solver, epoch)
    if solver.paired_fork is None:
        if epoch == 0 and forks_dropout(solver) and solver.selection is None:
            solver.paired_fork = PairedFork.start(solver, "modality_dropout", cfg.select_candidates)
            solver.log(f"modality_dropout auto: forking {len(cfg.select_candidates)} candidates ("
                       + ", ".join(f"{c:g}" for c in cfg.select_candidates) + f") for the first {fork_epochs(cfg)} "
                       f"epochs; criterion {cfg.select_criterion} on " + ("held-out training pairs" if
                                                                         cfg.select_holdout else "training pairs"))
        elif solver.hash_stage and cfg.late_temperature == AUTO and solver.temperature_choice is None \
                and epoch == late_temperature.switch_epoch(cfg):
            solver.paired_fork = PairedFork.start(solver, "late_temperature", late_temperature.candidates(cfg))
        elif _neighbour_choice_due(solver, epoch):
            solver.paired_fork = PairedFork.start(solver, "balanced_neighbours", NEIGHBOUR_CANDIDATES)
            solver.log(f"balanced_neighbours auto: forking {', '.join(NEIGHBOUR_CANDIDATES)} for the first "
                       f"{neighbour_fork_end(cfg)} of {cfg.epoch} paired epochs; criterion "
                       f"{late_temperature.LATE_CRITERION} on every training pair")
    fork = solver.paired_fork
    if fork is None or fork.setting != "late_temperature":
        solver.temperature = late_temperature.temperature_at(solver, epoch)
    stats = train() if fork is None else fork.train_epoch(solver, train)
    if kept:
        stats["neighbour_selection"] = kept
    if fork is None:
        return stats
    if fork.setting == "modality_dropout" and epoch + 1 == fork_epochs(cfg):
        solver.selection = stats["selection"] = fork.choose(solver, fork_epochs(cfg), solver.log)
        solver.paired_fork = None
    elif fork.setting == "late_temperature" and epoch + 1 == cfg.epoch:
        solver.temperature_choice = stats["temperature_selection"] = fork.choose(
            solver, late_temperature.late_epochs(cfg), solver.log)
        solver.paired_fork = None
    elif fork.setting == "balanced_neighbours" and epoch + 1 == neighbour_fork_end(cfg):
        solver.neighbour_choice = stats["neighbour_selection"] = fork.choose(solver, epoch + 1, solver.log)
        solver.paired_fork = None
    return stats


def _neighbour_choice_due(solver, epoch: int) -> bool:
    """The first paired epoch of a balanced_neighbours auto run that has no choice yet: where it forks,
    or records why it cannot (_neighbours_without_fork runs first and sets the choice)."""
    return (epoch == 0 and solver.hash_stage and solver.cfg.balanced_neighbours == AUTO
            and solver.neighbour_choice is None)


def _neighbours_without_fork(solver, epoch: int):
    """At the first paired epoch of a balanced_neighbours auto run that cannot fork (no_neighbour_fork):
    keep the first candidate, log why and return the record (results.json, metrics.jsonl); else None."""
    if not _neighbour_choice_due(solver, epoch):
        return None
    reason = no_neighbour_fork(solver.cfg)
    if not reason:
        return None
    solver.neighbour_choice = {"setting": "balanced_neighbours", "candidates": list(NEIGHBOUR_CANDIDATES),
                               "chosen": NEIGHBOUR_CANDIDATES[0], "reason": f"without a fork: {reason}",
                               "fork": False}
    solver.log(f"balanced_neighbours auto: {NEIGHBOUR_CANDIDATES[0]}, without a fork: {reason}")
    return solver.neighbour_choice


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
