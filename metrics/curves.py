"""Retrieval curves of a Hamming ranking: precision/recall by radius, precision@k, curves.json.

Same conventions as evaluate.py (relevant = at least one shared label; codes
or continuous outputs binarised with value >= 0 -> +1; ties in database-index
order), computed by the counting ranking of metrics.hamming. Results are
plain python lists of ints / floats (JSON-serialisable).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.hamming import CountedRanking, count_ranking
from metrics.inputs import check_inputs, positive_int, signs
from runio.atomic import atomic_write_json

CURVE_KS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)   # the K of curves.json's P@K


def _ranking(query, database, query_labels, database_labels, cuts=()) -> CountedRanking:
    q, d, ql, dl = check_inputs(query, database, query_labels, database_labels)
    return count_ranking(signs(q, "query"), signs(d, "database"), ql, dl, top=1, cuts=cuts)


def _cuts(ks, n_db: int) -> tuple:
    """ks (None = N) -> (cut per k, the distinct cuts ascending)."""
    ks = [None if k is None else positive_int(k, "k") for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k")
    cuts = np.array([n_db if k is None else min(k, n_db) for k in ks])
    return ks, cuts, np.unique(cuts)


def _pr(hist: np.ndarray) -> dict:
    """(Q, B+1, 2) distance histograms -> the "pr" part of ranking_curves."""
    rel_within = np.cumsum(hist[:, :, 1], axis=1)                     # (Q, B+1)
    all_within = np.cumsum(hist.sum(axis=2), axis=1)                  # (Q, B+1)
    prec_sum = (rel_within / np.maximum(all_within, 1)).sum(axis=0)   # 0 where skipped
    prec_n = (all_within > 0).sum(axis=0)
    n_rel = rel_within[:, -1]
    has_rel = n_rel > 0
    rec_sum = (rel_within[has_rel] / n_rel[has_rel, None]).sum(axis=0)
    rec_n = int(has_rel.sum())
    return {
        "radius": list(range(hist.shape[1])),
        "precision": [float(s / n) if n else None for s, n in zip(prec_sum, prec_n)],
        "precision_queries": prec_n.tolist(),
        "recall": [float(s / rec_n) if rec_n else None for s in rec_sum],
    }


def _pk(found: CountedRanking, ks, cuts, distinct) -> dict:
    hits = found.hits_at.sum(axis=0)[np.searchsorted(distinct, cuts)]   # per k, over all queries
    return {"k": ks, "precision": (hits / (len(found.hits_at) * cuts)).tolist()}


def ranking_curves(query, database, query_labels, database_labels, ks=CURVE_KS) -> dict:
    """Both curves of a Hamming ranking, from one counting pass: {"pr": ..., "pk": ...}.

    query (Q, B), database (N, B): tensors or arrays, codes or continuous.
    "pr", precision and recall of Hamming-ball retrieval for every radius 0..B (at radius r a
    query retrieves every item at distance <= r):
        {"radius": [0, .., B],
         "precision": [..]: mean over queries of (relevant retrieved) / (retrieved); a query
           retrieving nothing at radius r is skipped in that radius's mean (None if all are),
         "precision_queries": [..]: how many queries that mean covers,
         "recall": [..]: mean over queries of (relevant retrieved) / (relevant in the database);
           queries with no relevant item at all are skipped (every entry None if all are)}.
    "pk", mean precision@k over queries for each k in ks (None = N; k > N counts as N; any order,
    repeats allowed), ties in index order as in evaluate.retrieval_metrics:
        {"k": list(ks), "precision": [float per k]}.
    """
    ks, cuts, distinct = _cuts(ks, len(database))
    found = _ranking(query, database, query_labels, database_labels, distinct)
    return {"pr": _pr(found.hist), "pk": _pk(found, ks, cuts, distinct)}


def write_curves(run_dir) -> dict:
    """curves.json of a run from its codes.npz: PR by Hamming radius and P@K, for I2T and T2I under
    the paired protocol (keys i2t, t2i) and, when codes.npz has its codes, the unimodal one
    (unimodal_i2t, unimodal_t2i). One counting pass per direction gives both curves."""
    run_dir = Path(run_dir)
    with np.load(run_dir / "codes.npz", allow_pickle=False) as codes:
        c = {key: codes[key] for key in codes.files}
    curves = {}
    for name, q, db in [(prefix + direction, prefix + q, prefix + db)
                        for prefix in ("", "unimodal_") if prefix + "query_image" in c
                        for direction, q, db in (("i2t", "query_image", "database_text"),
                                                 ("t2i", "query_text", "database_image"))]:
        ks = [k for k in CURVE_KS if k <= len(c[db])]
        curves[name] = ranking_curves(c[q], c[db], c["query_label"], c["database_label"], ks)
    atomic_write_json(run_dir / "curves.json", curves)
    return curves
