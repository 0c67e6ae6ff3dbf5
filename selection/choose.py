"""`--modality_dropout auto`: choose the paired network's modality dropout per dataset, without labels.

Whether modality dropout helps depends on the data (docs/zoo.md): where one side
is much noisier than the other it keeps the side's noise out of the codes; where
the sides are complementary, or one is clean, it throws information away. A
user without labels cannot find out which by scoring, so the run finds out itself:

1. hold out `select_holdout` of the training pairs (a fixed draw per seed);
2. train one short candidate per value of `select_candidates` on the rest
   (`select_budget` x the default training's epochs, shared among them, an
   epoch at rate r counting 1 + r; a constant rate, no unimodal branch, UCMFH's
   two InfoNCE terms (no late_temperature, fused_temperature or hash_loss_sign;
   the sign term flipped zoo-complementary's choice: docs/zoo-log.md, stop 55),
   no scoring, nothing kept but the codes);
3. score each by the label-free criterion `select_criterion` (selection/criteria.py):
   the held-out pairs' codes against the candidate's training pairs' codes;
4. keep the best (ties go to the first listed), and train the real run with it on every pair.

The record (candidates, their criterion values, the choice and why) goes into the
run's log, results.json, metrics.jsonl and checkpoint; a resumed run reads it
from the checkpoint and does not choose again.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time

import numpy as np

from config import AUTO, NEIGHBOUR_CANDIDATES
from data.splits import DatasetSplits, take_rows
from parallel import broadcast, current
from selection.criteria import feature_relevance, label_free_criteria

MAX_DATABASE = 4000   # training pairs the held-out codes are ranked against (enough for mAP@50)
MAX_HELD_OUT = 1000   # held-out pairs scored (queries of the criterion)
MAX_FIT = 100_000     # pairs a candidate trains on, at most (a large set need not be read whole)


def _unlabelled(split):
    return dataclasses.replace(split, label=None)


def split_for_selection(num_train: int, holdout: float, seed: int) -> tuple:
    """(the held-out rows, the rows candidates train on), both sorted: a fixed draw for `seed`."""
    rng = np.random.default_rng([seed, 314159])
    # `holdout` of the pairs, but at least 200 (at most a quarter) so the criterion is not too noisy
    count = min(num_train - 1, MAX_HELD_OUT, max(1, round(holdout * num_train), min(200, num_train // 4)))
    held = np.sort(rng.choice(num_train, count, replace=False))
    fit = np.setdiff1d(np.arange(num_train), held)
    return held, (fit if len(fit) <= MAX_FIT else np.sort(rng.choice(fit, MAX_FIT, replace=False)))


def split_relevance(queries, database) -> np.ndarray:
    """Which `database` rows count as relevant to each `queries` row, from their features alone."""
    return feature_relevance(*[(np.asarray(split.image), np.asarray(split.text)) for split in (queries, database)])


def network_criteria(model, protocol: str, queries, database, relevance, batch_size: int) -> dict:
    """Every label-free criterion of `model`'s `protocol` codes of `queries` against `database`."""
    codes = [model.encode_split(split, protocol, batch_size) for split in (queries, database)]
    return label_free_criteria(*[tuple(side.numpy() for side in pair) for pair in codes], relevance=relevance)


def training_draw_criteria(solver, protocol: str, candidates, load, setting: str) -> tuple:
    """(every label-free criterion of each candidate, pairs scored) for the forks of a run
    (branch_scale.py, late_temperature.py): `load(candidate)` puts a candidate into `solver`, whose
    `protocol` codes of a fixed draw of training pairs (split_for_selection) are ranked against other
    training pairs; the features give the relevances, no labels."""
    cfg = solver.cfg
    held, fit = split_for_selection(solver.num_train, cfg.select_holdout, cfg.seed)
    queries = take_rows(solver.data.train, held, f"{setting} auto: scored training pairs")
    database = take_rows(solver.data.train, fit[:MAX_DATABASE], f"{setting} auto: ranked training pairs")
    return candidates_criteria(solver, protocol, candidates, load, [(queries, database)]), len(held)


def halves_criteria(solver, protocol: str, candidates, load, setting: str) -> tuple:
    """As training_draw_criteria, scored on every training pair: the rows split into two fixed halves
    (a draw per seed), each half's codes ranked against the other's, the two values of each criterion
    averaged. Five times the queries of the 200-pair draw, whose picks of balanced_neighbours auto were
    noise (docs/zoo-log.md, stop 63). Returns (every candidate's criteria, pairs scored)."""
    cfg, count = solver.cfg, min(solver.num_train, 2 * MAX_DATABASE)
    order = np.random.default_rng([cfg.seed, 2718]).permutation(solver.num_train)[:count]
    halves = [take_rows(solver.data.train, np.sort(part), f"{setting} auto: half {index + 1} of the training pairs")
              for index, part in enumerate((order[:count // 2], order[count // 2:]))]
    return candidates_criteria(solver, protocol, candidates, load, [halves, halves[::-1]]), count


def candidates_criteria(solver, protocol: str, candidates, load, rankings) -> list:
    """Every label-free criterion of each candidate (`load(candidate)` puts it into `solver`), averaged
    over `rankings`, a list of (queries, database): the queries' codes ranked against the database's,
    the features giving the relevances (the same for every candidate), no labels."""
    relevances = [split_relevance(queries, database) for queries, database in rankings]
    every = []
    for candidate in candidates:
        load(candidate)
        found = [network_criteria(solver.model, protocol, queries, database, relevance, solver.cfg.eval_batch_size)
                 for (queries, database), relevance in zip(rankings, relevances)]
        every.append({name: float(np.mean([each[name] for each in found])) for name in found[0]})
    return every


def epochs_each(epochs: int) -> str:
    """How long each candidate trained, for the logged reason: "1 epoch each", "3 epochs each"."""
    return f"{epochs} epoch{'' if epochs == 1 else 's'} each"


def candidate_epochs(cfg, candidates) -> int:
    """Epochs per candidate: select_budget x the default training's epochs (paired + branch),
    shared among the candidates, each of which trains on (1 - select_holdout) of the pairs. An epoch
    at modality dropout r encodes (1 + r) times the tokens of one at 0 (a dropped pair is encoded
    once per side), so a candidate's epochs count (1 + r) times: without that, the candidates 0 and
    0.75 overshot the budget by 38% (docs/zoo.md, the selection's cost)."""
    total = cfg.epoch + cfg.unimodal_epochs
    work = sum(1 + float(rate) for rate in candidates) * (1 - cfg.select_holdout)
    return max(1, math.floor(cfg.select_budget * total / work))


def choose_modality_dropout(cfg, bits: int, data, trainer, log=print) -> dict:
    """Train the candidates of cfg.select_candidates with `trainer` (the Solver class) and return
    the selection record: {"setting", "candidates", "criterion", "values", "all_criteria",
    "chosen", "reason", "epochs", "train_pairs", "held_out_pairs", "seconds"}."""
    start = time.time()
    num_train = min(len(data.train), cfg.train_limit or len(data.train))
    held, fit = split_for_selection(num_train, cfg.select_holdout, cfg.seed)
    fit_split = _unlabelled(take_rows(data.train, fit, "selection: candidates' training pairs"))
    held_split = _unlabelled(take_rows(data.train, held, "selection: held-out pairs"))
    database = take_rows(fit_split, slice(0, MAX_DATABASE), "selection: ranked pairs")
    candidate_data = DatasetSplits(name=data.name, train=fit_split, query=held_split, retrieval=database)
    candidates = [float(value) for value in cfg.select_candidates]
    epochs = candidate_epochs(cfg, candidates)
    log(f"modality_dropout auto: training {len(candidates)} candidates ({', '.join(f'{c:g}' for c in candidates)}) "
        f"for {epochs_each(epochs)} on {len(fit)} training pairs; criterion {cfg.select_criterion} on "
        f"{len(held)} held-out pairs")
    # which ranked pairs count as relevant to each held-out pair: from the features, the same for every candidate
    relevance = split_relevance(held_split, database)
    values, every = [], []
    with tempfile.TemporaryDirectory(prefix="ucmfh-selection-") as scratch:
        for index, rate in enumerate(candidates):
            short = dataclasses.replace(
                cfg, modality_dropout=rate, modality_dropout_anneal=0.0, epoch=epochs, unimodal_epochs=0,
                late_temperature=0.0, fused_temperature=0.0, hash_loss_sign=False,   # UCMFH's two loss terms
                balanced_neighbours=NEIGHBOUR_CANDIDATES[0] if cfg.balanced_neighbours == AUTO
                else cfg.balanced_neighbours,                 # auto: its first candidate, as the fork starts
                train_limit=0, val_queries=0, resume=False, eval_every=0, save_checkpoint=False,   # codes alone
                output_dir=f"{scratch}/candidate{index}", checkpoint_dir=f"{scratch}/checkpoints{index}",
                record_histograms=False, save_codes=False, lr_milestones=[], tensorboard=False)
            solver = trainer(short, bits=bits, data=candidate_data, log=lambda *_: None)
            solver.train()
            found = network_criteria(solver.model, "paired", held_split, database, relevance, cfg.eval_batch_size)
            every.append(found)
            values.append(found[cfg.select_criterion])
            log(f"  candidate modality_dropout {rate:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in found.items()))
    best = int(np.argmax(values))
    reason = (f"highest {cfg.select_criterion} on {len(held)} held-out training pairs: {values[best]:.4f} "
              f"(" + ", ".join(f"{c:g}: {v:.4f}" for c, v in zip(candidates, values)) + ")")
    record = {"setting": "modality_dropout", "candidates": candidates, "criterion": cfg.select_criterion,
              "values": values, "all_criteria": every, "chosen": candidates[best], "reason": reason,
              "epochs": epochs, "train_pairs": len(fit), "held_out_pairs": len(held),
              "seconds": time.time() - start}
    record = broadcast(record, current())   # under torchrun: rank 0's choice everywhere
    log(f"modality_dropout auto: chose {candidates[best]:g}, {reason}; selection took {record['seconds']:.0f} s")
    return record
