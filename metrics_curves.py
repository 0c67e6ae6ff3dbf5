"""Retrieval curves for Hamming ranking: precision/recall by radius, precision@k.

Same conventions as evaluate.py (relevant = at least one shared label; codes
or continuous outputs binarised with value >= 0 -> +1), queries in chunks.
Both functions are importable from evaluate too. Results are plain python
lists of ints / floats (JSON-serialisable).
"""
from __future__ import annotations

import numpy as np
import torch

from evaluate import (_check_inputs, _hamming_histograms, _positive_int,
                      _ranked_relevance)

__all__ = ["pr_curve_by_radius", "precision_at_k_curve"]


def pr_curve_by_radius(query, database, query_labels, database_labels, chunk_size=None) -> dict:
    """Precision and recall of Hamming-ball retrieval, for every radius 0..B.

    query (Q, B), database (N, B): tensors or arrays, codes or continuous.
    At radius r a query retrieves every item at Hamming distance <= r.
    Returns {"radius": [0, .., B],
             "precision": [..]: mean over queries of (relevant retrieved) /
               (retrieved); a query retrieving nothing at radius r is skipped
               in that radius's mean (None if every query is skipped),
             "precision_queries": [..]: how many queries that mean covers,
             "recall": [..]: mean over queries of (relevant retrieved) /
               (relevant in the database); queries with no relevant item at
               all are skipped (every entry None if that is all of them)}.
    Built from per-query histograms of the distances of all and of the
    relevant items (one bincount per chunk), no sort. chunk_size: queries per
    chunk (default: about 256 MB of (chunk, N) matrices).
    """
    q, d, ql_b, dl_b = _check_inputs(query, database, query_labels, database_labels)
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    n_bits = q.shape[1]
    prec_sum, prec_n = np.zeros(n_bits + 1), np.zeros(n_bits + 1, dtype=np.int64)
    rec_sum, rec_n = np.zeros(n_bits + 1), 0
    for _, hist in _hamming_histograms(q, d, ql_b, dl_b, chunk_size):
        rel_within = np.cumsum(hist[:, :, 1], axis=1)                # (c, B+1)
        all_within = np.cumsum(hist.sum(axis=2), axis=1)             # (c, B+1)
        prec_sum += (rel_within / np.maximum(all_within, 1)).sum(axis=0)   # 0 where skipped
        prec_n += (all_within > 0).sum(axis=0)
        n_rel = rel_within[:, -1]
        has_rel = n_rel > 0
        rec_sum += (rel_within[has_rel] / n_rel[has_rel, None]).sum(axis=0)
        rec_n += int(has_rel.sum())
    return {
        "radius": list(range(n_bits + 1)),
        "precision": [float(s / n) if n else None for s, n in zip(prec_sum, prec_n)],
        "precision_queries": prec_n.tolist(),
        "recall": [float(s / rec_n) if rec_n else None for s in rec_sum],
    }


def precision_at_k_curve(query, database, query_labels, database_labels, ks,
                         chunk_size=None) -> dict:
    """Mean precision@k over queries, for each k in ks (Hamming ranking).

    Ranking as in evaluate.retrieval_metrics: ascending Hamming distance,
    ties by ascending database index; precision@k = relevant items in the top
    min(k, N) / min(k, N) (k None = N). Equals retrieval_metrics(...,
    want="precision_k")["precision_k"] for each k, from one ranking pass.
    Returns {"k": list(ks), "precision": [float per k]}.
    """
    q, d, ql_b, dl_b = _check_inputs(query, database, query_labels, database_labels)
    ks = [None if k is None else _positive_int(k, "k") for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k")
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    n_db = d.shape[0]
    cuts = np.array([n_db if k is None else min(k, n_db) for k in ks])
    top = int(cuts.max())
    cols = torch.from_numpy(cuts - 1)
    hits = np.zeros(len(ks))
    for _, rel in _ranked_relevance(q, d, ql_b, dl_b, top, "hamming", chunk_size, full=False):
        cum = torch.cumsum(rel[:, :top], dim=1, dtype=torch.int64)     # (c, K)
        hits += cum[:, cols].sum(dim=0).numpy()
    return {"k": ks, "precision": (hits / (q.shape[0] * cuts)).tolist()}


CURVE_KS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def write_curves(run_dir) -> dict:
    """curves.json of a run from its codes.npz: PR by Hamming radius and P@K, for I2T and T2I under
    the paired protocol (keys i2t, t2i) and, when codes.npz has its codes, the unimodal one
    (unimodal_i2t, unimodal_t2i)."""
    from pathlib import Path

    from runio import atomic_write_json

    run_dir = Path(run_dir)
    with np.load(run_dir / "codes.npz", allow_pickle=False) as codes:
        c = {key: codes[key] for key in codes.files}
    curves = {}
    for name, q, db in [(prefix + direction, prefix + q, prefix + db)
                        for prefix in ("", "unimodal_") if prefix + "query_image" in c
                        for direction, q, db in (("i2t", "query_image", "database_text"),
                                                 ("t2i", "query_text", "database_image"))]:
        ks = [k for k in CURVE_KS if k <= len(c[db])]
        curves[name] = {"pr": pr_curve_by_radius(c[q], c[db], c["query_label"], c["database_label"]),
                        "pk": precision_at_k_curve(c[q], c[db], c["query_label"], c["database_label"], ks)}
    atomic_write_json(run_dir / "curves.json", curves)
    return curves
