"""Retrieval metrics: their definitions, the metric API, scoring a model, and a command line.

    python evaluate.py --checkpoint checkpoints/hash/demo_hash_64.pth [--map_k 0] [--key value ...]

Conventions (docs/evaluation.md):
  * relevant: a query and a database item share at least one label (multi-hot, any non-zero entry);
  * ranking: ascending Hamming distance (descending cosine similarity for real-valued outputs);
    items at EQUAL distance keep ASCENDING DATABASE INDEX order (fixed and reproducible);
  * AP@K (UCMFH/DJSRH): over the top K ranks, the mean over their relevant items of (relevant
    items at or above that rank) / rank; a query with no relevant item in its top K scores 0 and
    still counts; mAP@all is the same with K = N; precision@K = relevant items in the top K / K.

The first section defines them as plain functions, query by query: read these to know what the
numbers mean (the tests use them as their oracle). retrieval_metrics computes the same numbers
fast with the engines in metrics/ (a counting ranking for Hamming distances, sort keys for
cosine), plus the tie-aware mAP.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from config import ConfigError, build_config, resolve_device, to_dict
from data import DataError, load_dataset
from data.splits import hold_out_queries, validation_rows, whole_batches
from metrics import cosine, hamming, tie_aware
from metrics.curves import write_curves
from metrics.inputs import check_inputs, positive_int, signs, to_sign_codes
from metrics.unstable import unstable_ranking_metrics
from model import PROTOCOLS as ENCODINGS
from parallel import broadcast, current, rank_device, sharded_encoder
from runio.checkpoint import (check_input_widths, checkpoint_file, merge_checkpoint_config, read_checkpoint,
                              rebuild_model, saved_config)
from runio.run_folder import RunFolder, default_output_dir, results_record, write_codes
from runio.tables import score_table

__all__ = ["METRICS", "TIE_METRICS", "PROTOCOLS", "to_sign_codes", "hamming_ranking", "average_precision",
           "precision_at_k", "reference_metrics", "retrieval_metrics", "score_model", "score_checkpoint"]

METRICS = ("map_k", "map_all", "precision_k")   # the default `want`
TIE_METRICS = ("map_k_tie", "map_all_tie")      # on request only
# protocol (model.PROTOCOLS) -> prefix of its score keys: UCMFH's paired scores keep the plain names
PROTOCOLS = {protocol: "" if protocol == "paired" else f"{protocol}_" for protocol in ENCODINGS}


# --- the definitions ---

def hamming_ranking(query_code: np.ndarray, database_codes: np.ndarray) -> np.ndarray:
    """(B,) and (N, B) +-1 codes -> the N database rows, best first: ascending Hamming distance
    (bits that differ: (B - <q, d>) / 2), ties by ascending row (a stable sort)."""
    distance = (len(query_code) - database_codes @ query_code) / 2
    return np.argsort(distance, kind="stable")


def average_precision(relevant) -> float:
    """AP of one ranked list (relevant: (L,) bool, best first): the mean over its relevant items of
    the precision at that item's rank, (relevant items at or above it) / rank; 0 if none is relevant.
    AP@K of a ranking is average_precision(relevant[:K]); mAP@all uses the whole list."""
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any():
        return 0.0
    hits = np.cumsum(relevant)                               # relevant items at or above each rank
    ranks = np.arange(1, len(relevant) + 1)
    return float(np.mean(hits[relevant] / ranks[relevant]))


def precision_at_k(relevant, k: int) -> float:
    """Share of relevant items among the top k ranks of one ranked list (k capped at its length)."""
    top = np.asarray(relevant, dtype=bool)[:k]
    return float(top.sum() / len(top))


def reference_metrics(query, database, query_labels, database_labels, k=50, want=METRICS) -> dict:
    """The definitions applied query by query with Hamming ranking, as a plain loop: the mean over
    queries of AP@k ("map_k"), AP over the whole ranking ("map_all") and precision@k
    ("precision_k"); k None = the whole ranking. Slow; the yardstick for retrieval_metrics."""
    want = (want,) if isinstance(want, str) else tuple(want)
    q, d = to_sign_codes(query, "query").numpy(), to_sign_codes(database, "database").numpy()
    q_labels = (np.asarray(query_labels) != 0).astype(np.float32)
    d_labels = (np.asarray(database_labels) != 0).astype(np.float32)
    top = len(d) if k is None else min(k, len(d))
    sums = dict.fromkeys(want, 0.0)
    for code, labels in zip(q, q_labels):
        ranking = hamming_ranking(code, d)
        if "map_all" not in want:
            ranking = ranking[:top]                          # only the top K is looked at
        relevant = d_labels[ranking] @ labels > 0            # in rank order
        if "map_k" in want:
            sums["map_k"] += average_precision(relevant[:top])
        if "map_all" in want:
            sums["map_all"] += average_precision(relevant)
        if "precision_k" in want:
            sums["precision_k"] += precision_at_k(relevant, top)
    return {name: total / len(q) for name, total in sums.items()}


# --- the API ---

def retrieval_metrics(query, database, query_labels, database_labels, k=50,
                      distance="hamming", chunk_size=None, want=METRICS, ties="index") -> dict:
    """Score a retrieval of `database` by `query`; the same numbers as reference_metrics.

    query (Q, B), database (N, B): torch tensors or numpy arrays.
      distance="hamming": codes or continuous head outputs, binarised here (value >= 0 -> +1,
        value < 0 -> -1); ranked by the counting ranking of metrics.hamming (no sort).
      distance="cosine": real embeddings, rows L2-normalised here (an all-zero row has
        similarity 0 to everything); ranked by descending similarity.
    query_labels (Q, C), database_labels (N, C): multi-hot, any numeric dtype.
    k: cut-off of map_k, precision_k and map_k_tie; None or k >= N: the whole ranking
      (precision_k then divides by N).
    chunk_size: cosine only, queries per chunk (default: about 256 MB of (chunk, N) matrices).
    want: a subset of "map_k", "map_all", "precision_k" (the default: these three, computed in
      one pass), "map_k_tie", "map_all_tie": the EXPECTED AP@K / AP@all when each group of items
      at equal Hamming distance is shuffled uniformly at random (He et al., CVPR 2018; exact,
      from the distance histograms of the same pass; with cosine they equal map_k / map_all).
    ties: "index" (items at equal Hamming distance in ascending database index), or "unstable"
      (np.argsort's default order, as UCMFH ranks; map_k, map_all and precision_k only, slow).
    Returns the wanted values as python floats, plus "k" (as passed). ValueError on bad input.
    """
    want = (want,) if isinstance(want, str) else tuple(want)
    if not want or any(w not in METRICS + TIE_METRICS for w in want):
        raise ValueError(f"want must be a non-empty subset of {METRICS + TIE_METRICS}, got {want}")
    if distance not in ("hamming", "cosine"):
        raise ValueError(f"distance must be 'hamming' or 'cosine', got {distance!r}")
    q, d, ql, dl = check_inputs(query, database, query_labels, database_labels)
    k = None if k is None else positive_int(k, "k")
    chunk_size = None if chunk_size is None else positive_int(chunk_size, "chunk_size")
    top = d.shape[0] if k is None else min(k, d.shape[0])          # the effective cut-off K
    if distance == "hamming":
        found = hamming.count_ranking(signs(q, "query"), signs(d, "database"), ql, dl, top)._asdict()
        if ties == "unstable":
            found.update(unstable_ranking_metrics(signs(q, "query"), signs(d, "database"), ql, dl, top))
        if any(w in TIE_METRICS for w in want):
            found["ap_k_tie"], found["ap_all_tie"] = tie_aware.tie_aware_ap(found["hist"], top)
    else:
        found = cosine.rank_by_cosine(q, d, ql, dl, top, chunk_size)
        found["ap_k_tie"], found["ap_all_tie"] = found["ap_k"], found["ap_all"]   # float ties keep index order
    per_query = {"map_k": found["ap_k"], "map_all": found["ap_all"], "precision_k": found["hits_k"] / top,
                 "map_k_tie": found.get("ap_k_tie"), "map_all_tie": found.get("ap_all_tie")}
    return {**{name: float(np.mean(per_query[name])) for name in want}, "k": k}


# --- scoring a model ---

def score_model(model, data, cfg, final: bool = False, codes_dir=None, protocols=None) -> dict:
    """I2T (query images against database texts) and T2I scores of `model` on data.query against
    data.retrieval, in `protocols` (None: both; codes.npz needs both), at the model's test-time scale:
    Hamming ranking of hash codes, cosine ranking of fused embeddings for a model without heads. cfg
    gives map_k (0: the whole ranking), eval_batch_size, val_queries (held-out database items scored
    against the rest: val_* keys) and UCMFH's switches eval_sequence, eval_drop_last, tie_order. A final
    scoring of a hash model adds the tie-aware mAP and the continuous outputs' mAP@K (cosine before
    sign: the quantisation gap), and with codes_dir writes codes.npz and curves.json there. Under
    torchrun every rank encodes a share of the splits and rank 0 scores; every rank returns its scores."""
    ranks, query, database = current(), data.query, data.retrieval
    if cfg.eval_drop_last:
        query, database = whole_batches(query, cfg.eval_batch_size), whole_batches(database, cfg.eval_batch_size)
    encode = sharded_encoder(model, cfg.eval_batch_size, cfg.eval_sequence, ranks, protocols)
    database_codes, query_codes, scores = encode(database), encode(query), None
    if cfg.val_queries:
        chosen, rest = validation_rows(data.retrieval, cfg.val_queries)
        if cfg.eval_sequence == "item" and not cfg.eval_drop_last:   # batch-free codes: reuse the database's
            val_query, val_database = ({p: tuple(side[rows] for side in sides) for p, sides in database_codes.items()}
                                       for rows in (chosen, rest))
        else:
            val_query, val_database = map(encode, hold_out_queries(data.retrieval, cfg.val_queries))
    if ranks.main:
        scores, codes = _score_codes(model, query_codes, database_codes, query.label, database.label, cfg, final,
                                     prefix="")
        if cfg.val_queries:
            labels = np.asarray(data.retrieval.label)
            scores.update(_score_codes(model, val_query, val_database, labels[chosen], labels[rest], cfg, final,
                                       prefix="val_")[0])
        if final and model.hashing and codes_dir is not None:
            write_codes(codes_dir, codes, query.label, database.label)
            write_curves(codes_dir)
    return broadcast(scores, ranks)


def _score_codes(model, query_codes, database_codes, query_labels, database_labels, cfg, final, prefix) -> tuple:
    """(scores with keys prefixed `prefix`, the outputs by name) of encoded queries against a database."""
    extra, scores, codes = final and model.hashing, {}, {}
    want = METRICS + TIE_METRICS if extra else METRICS
    for protocol, (query_image, query_text) in query_codes.items():      # the protocols encoded, in order
        name_prefix, (db_image, db_text) = PROTOCOLS[protocol], database_codes[protocol]
        codes.update({f"{name_prefix}{name}": value.numpy() for name, value in (
            ("query_image", query_image), ("query_text", query_text), ("database_image", db_image),
            ("database_text", db_text))})
        for direction, q, db in (("i2t", query_image, db_text), ("t2i", query_text, db_image)):
            args = (q, db, query_labels, database_labels, cfg.map_k or None)
            m = retrieval_metrics(*args, distance="hamming" if model.hashing else "cosine", want=want,
                                  ties=cfg.tie_order)
            name = prefix + name_prefix + direction
            scores.update({f"{name}_map": m["map_k"], f"{name}_map_all": m["map_all"],
                           f"{name}_precision_k": m["precision_k"]})
            if extra:
                continuous = retrieval_metrics(*args, distance="cosine", want="map_k")
                scores.update({f"{name}_map_tie": m["map_k_tie"], f"{name}_map_all_tie": m["map_all_tie"],
                               f"{name}_map_continuous": continuous["map_k"]})
    return scores, codes


def score_checkpoint(cfg, bits, checkpoint=None, state=None, data=None, log=print) -> dict:
    """The test stages (test_hash, test_real): score a checkpoint (default: the stage's file in
    cfg.checkpoint_dir; `state`: its contents when already read) on its dataset, model settings from
    the checkpoint, run settings (config.RUN_KEYS: map_k, data_root, ...) from cfg. Writes config.yaml
    and results.json to the output folder, under torchrun from rank 0 alone; returns the results."""
    path, ranks = Path(checkpoint) if checkpoint else checkpoint_file(cfg, bits), current()
    device = rank_device(resolve_device(cfg.device), ranks)   # under torchrun on GPUs: cuda:LOCAL_RANK
    hint = f"train it first with --task {'train_hash' if bits else 'train_real'}, or set --checkpoint_dir"
    state = state if state is not None else read_checkpoint(path, device, hint)
    cfg = merge_checkpoint_config(cfg, saved_config(state, path), path)
    data = data if data is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.wiki_text)
    data.require_labels(f"scoring {path}")
    check_input_widths(state, cfg, data, path)
    model = rebuild_model(state, cfg, path, device, log)
    run = RunFolder(broadcast(default_output_dir(cfg, bits), ranks), writable=ranks.main)   # rank 0's timestamp
    cfg.output_dir = str(run.path)
    run.write_config(to_dict(cfg))
    log(f"Scoring {path} (trained {state['epoch']} epochs)")
    scores = score_model(model, data, cfg, final=True, codes_dir=run.path if cfg.save_codes else None)
    results = results_record(cfg, bits, scores, epoch=state["epoch"], train_seconds=state["train_seconds"],
                             eval_scale=model.default_scale, protocols=PROTOCOLS, checkpoint=path,
                             output_dir=run.path, data=data)
    run.write_results(results)
    return results


# --- command line ---

def main(argv=None) -> dict:
    """Score a saved checkpoint on its dataset's query and database splits:
    python evaluate.py --checkpoint checkpoints/hash/mirflickr_hash_64.pth [--key value ...]
    Other flags are the run's settings (data_root, device, map_k, eval_batch_size, output_dir,
    save_codes); the model's come from the checkpoint. Prints the score table, writes config.yaml
    and results.json to the output folder and returns the results.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(main.__doc__)
        return {}
    try:
        if "--checkpoint" not in argv or argv.index("--checkpoint") + 1 >= len(argv):
            raise ConfigError("--checkpoint PATH is required (a .pth file written by train.py)")
        at = argv.index("--checkpoint")
        path, rest, state = Path(argv[at + 1]), argv[:at] + argv[at + 2:], read_checkpoint(argv[at + 1])
        dataset, bits = saved_config(state, path).get("dataset"), state.get("bits")
        cfg = build_config(rest, overrides={"dataset": dataset, "task": "test_hash" if bits else "test_real"})
        results = score_checkpoint(cfg, bits, checkpoint=path, state=state)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(score_table([results]))
    return results


if __name__ == "__main__":
    main()
