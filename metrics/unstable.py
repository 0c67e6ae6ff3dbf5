"""UCMFH's ranking, for its compatible mode only: np.argsort of the Hamming distances with numpy's
default (unstable) sort, so items at equal distance come in an order the sort happens to leave.
The project's default orders them by ascending database index (metrics.hamming).
"""
from __future__ import annotations

import numpy as np


def unstable_ranking_metrics(query, database, query_labels, database_labels, top: int) -> dict:
    """(Q, B), (N, B) +-1 codes, (Q, C), (N, C) bool labels (tensors or arrays) -> per-query arrays
    ap_k, ap_all, hits_k, the quantities metrics.hamming.count_ranking returns, ranked by
    np.argsort's default kind."""
    query, database = np.asarray(query, dtype=np.float32), np.asarray(database, dtype=np.float32)
    relevant_all = (np.asarray(query_labels, np.float32) @ np.asarray(database_labels, np.float32).T) > 0  # (Q, N)
    ap_k, ap_all, hits_k = (np.zeros(len(query)) for _ in range(3))
    for i, code in enumerate(query):
        relevant = relevant_all[i][np.argsort((query.shape[1] - database @ code) / 2)]   # in rank order
        hits = np.cumsum(relevant)
        ranks = np.arange(1, len(relevant) + 1)
        precision = hits / ranks
        ap_all[i] = precision[relevant].mean() if hits[-1] else 0.0
        ap_k[i] = precision[:top][relevant[:top]].mean() if hits[top - 1] else 0.0
        hits_k[i] = hits[top - 1]
    return {"ap_k": ap_k, "ap_all": ap_all, "hits_k": hits_k}
