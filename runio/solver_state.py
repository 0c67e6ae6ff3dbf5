"""What a Solver's checkpoint holds, and how a resumed Solver takes it back.

`solver_state` gathers everything needed to continue a run (models, optimisers, counters, RNG, config,
scores, the choices of the selection forks); `load_solver_state` puts a checkpoint's state into a
freshly built Solver (ICMR.py) of the same config. The Solver writes the state with
runio.atomic.atomic_torch_save; runio.checkpoint reads it back (weights only).
"""
from __future__ import annotations

from config import to_dict
from runio.checkpoint import load_weights, restore_rng, rng_states, value_rows_only
from selection.branch_scale import BranchFork
from selection.paired_fork import PairedFork


def solver_state(solver) -> dict:
    """Everything needed to continue: models, optimisers, counters, RNG, config, scores."""
    state = {"fusion": solver.model.fusion.state_dict(), "optimizer_fusion": solver.optimizer_fusion.state_dict(),
             "epoch": solver.epoch, "iteration": solver.iteration, "train_seconds": solver.train_seconds,
             "config": to_dict(solver.cfg), "metrics": solver.last_scores, "bits": solver.bits,
             "rng_shuffle": solver.shuffle_generator.get_state(), **rng_states(solver.device),
             "rng_modality": solver.modality_generator.get_state(), "selection": solver.selection}
    if solver.hash_stage:
        state.update(image_head=solver.model.image_head.state_dict(), text_head=solver.model.text_head.state_dict(),
                     optimizer_hash=solver.optimizer_hash.state_dict(),
                     lr_scheduler=solver.lr_scheduler.state_dict(), temperature_choice=solver.temperature_choice,
                     neighbour_choice=solver.neighbour_choice,
                     paired_fork=solver.paired_fork and solver.paired_fork.state())
    if solver.branch is not None:
        state.update(unimodal_branch=solver.branch.state_dict(), optimizer_branch=solver.optimizer_branch.state_dict(),
                     branch_choice=solver.branch_choice,
                     branch_fork=solver.branch_fork and solver.branch_fork.state(),
                     branch_average=solver.branch_average and solver.branch_average.state_dict())
    return state


def load_solver_state(solver, state: dict) -> None:
    """`state` (solver_state's dict, read from solver.checkpoint_path) into `solver`. Under torchrun every rank
    takes rank 0's state, then the ranks other than 0 re-seed their generators: each draws its own dropout masks."""
    load_weights(solver.model, state, str(solver.checkpoint_path), solver.log)
    solver.optimizer_fusion.load_state_dict(value_rows_only(state["optimizer_fusion"], solver.optimizer_fusion))
    if solver.hash_stage:
        solver.optimizer_hash.load_state_dict(state["optimizer_hash"])
        solver.lr_scheduler.load_state_dict(state["lr_scheduler"])
        solver.temperature_choice = state.get("temperature_choice")
        solver.neighbour_choice = state.get("neighbour_choice")
        if solver.neighbour_choice:
            solver.neighbour_source = solver.neighbour_choice["chosen"]
        fork = state.get("paired_fork") or state.get("temperature_fork")   # the latter: saved before 2026-12-04
        solver.paired_fork = fork and PairedFork.from_state(fork)
    if solver.branch is not None:
        solver.optimizer_branch.load_state_dict(state["optimizer_branch"])
        solver.branch_choice = state.get("branch_choice")
        solver.branch_fork = BranchFork.from_state(state["branch_fork"]) if state.get("branch_fork") else None
        if solver.branch_average is not None and state.get("branch_average"):   # none: saved before averaging
            solver.branch_average.load_state_dict(state["branch_average"])
    solver.epoch, solver.iteration = state["epoch"], state["iteration"]
    solver.train_seconds, solver.last_scores = state["train_seconds"], dict(state["metrics"])
    reseed = solver.cfg.seed + 7919 * solver.ranks.rank + solver.epoch if solver.ranks.rank else None
    restore_rng(state, solver.device, reseed)   # rank 0's generators; the other ranks draw masks of their own
    solver.shuffle_generator.set_state(state["rng_shuffle"].cpu())
    if "rng_modality" in state:
        solver.modality_generator.set_state(state["rng_modality"].cpu())
