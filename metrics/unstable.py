"""UCMFH's ranking, for its compatible mode only: np.argsort of the Hamming distances with numpy's
default (unstable) sort, so items at equal distance come in an order the sort happens to leave.
The project's default orders them by ascending database index (metrics.hamming).

Queries run in chunks whose (chunk, N) distance and relevance matrices stay near _CHUNK_BYTES, so
memory does not grow with the number of queries (one (Q, N) float32 matrix at 2,000 x 190,000
would be 1.5 GB).
"""
from __future__ import annotations

import numpy as np

_CHUNK_BYTES = 32 * 2**20   # target size of one chunk's (chunk, N) matrices
_BYTES_PER_PAIR = 9         # float32 distance, float32 label product and its bool relevance


def unstable_ranking_metrics(query, database, query_labels, database_labels, top: int) -> dict:
    """(Q, B), (N, B) +-1 codes, (Q, C), (N, C) bool labels (tensors or arrays) -> per-query arrays
    ap_k, ap_all, hits_k, the quantities metrics.hamming.count_ranking returns, ranked by
    np.argsort's default kind."""
    query, database = np.asarray(query, dtype=np.float32), np.asarray(database, dtype=np.float32)
    query_labels = np.asarray(query_labels, np.float32)
    database_labels = np.asarray(database_labels, np.float32)
    chunk = max(1, _CHUNK_BYTES // (_BYTES_PER_PAIR * max(1, len(database))))
    ranks = np.arange(1, len(database) + 1)
    ap_k, ap_all, hits_k = (np.zeros(len(query)) for _ in range(3))
    for start in range(0, len(query), chunk):
        # (c, N): exact integer Hamming distances, the same float32 values a query at a time gives
        distances = query[start:start + chunk] @ database.T
        np.subtract(query.shape[1], distances, out=distances)
        distances /= 2
        relevant_rows = (query_labels[start:start + chunk] @ database_labels.T) > 0   # (c, N)
        for offset, (distance, relevant) in enumerate(zip(distances, relevant_rows)):
            i = start + offset
            relevant = relevant[np.argsort(distance)]                                   # in rank order
            hits = np.cumsum(relevant)
            precision = hits / ranks
            ap_all[i] = precision[relevant].mean() if hits[-1] else 0.0
            ap_k[i] = precision[:top][relevant[:top]].mean() if hits[top - 1] else 0.0
            hits_k[i] = hits[top - 1]
    return {"ap_k": ap_k, "ap_all": ap_all, "hits_k": hits_k}
