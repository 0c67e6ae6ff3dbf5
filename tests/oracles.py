"""Reference (oracle) implementations of the retrieval metrics.

Plain per-query numpy loops, written to be obviously correct, not fast.
Conventions: relevant = at least one shared label; rank by ascending distance
with a STABLE argsort, so equal distances keep ascending database index; AP@k
= mean over the relevant items in the top k of (relevant so far / rank), 0 if
the top k holds none; k=None means the whole ranking; k > N is the same as N.
"""
import numpy as np


def _check_pm1(codes):
    codes = np.asarray(codes, dtype=np.float64)
    assert np.all(np.abs(codes) == 1), "oracle expects +1/-1 codes"
    return codes


def _average_precision(relevant_in_rank_order):
    """relevant_in_rank_order: 1-D bool array, best-ranked item first."""
    hits = 0
    total = 0.0
    for rank, is_relevant in enumerate(relevant_in_rank_order, start=1):
        if is_relevant:
            hits += 1
            total += hits / rank
    return total / hits if hits > 0 else 0.0


def _hamming_rankings(query_codes, db_codes, query_labels, db_labels):
    """Yield (ranking, relevance) per query: ranking = db indices best first."""
    query_codes, db_codes = _check_pm1(query_codes), _check_pm1(db_codes)
    query_labels = np.asarray(query_labels, dtype=np.float64)
    db_labels = np.asarray(db_labels, dtype=np.float64)
    n_bits = query_codes.shape[1]
    for q in range(query_codes.shape[0]):
        hamming = 0.5 * (n_bits - query_codes[q] @ db_codes.T)         # (N,)
        order = np.argsort(hamming, kind="stable")
        relevant = (query_labels[q] @ db_labels.T) > 0                  # (N,)
        yield order, relevant


def _cut(k, n):
    return n if k is None else min(k, n)


def map_at_k_loop(query_codes, db_codes, query_labels, db_labels, k):
    """mAP@k over Hamming ranking of +-1 codes (k=None: mAP over all)."""
    aps = []
    for order, relevant in _hamming_rankings(query_codes, db_codes, query_labels, db_labels):
        top = order[:_cut(k, len(order))]
        aps.append(_average_precision(relevant[top]))
    return float(np.mean(aps))


def precision_at_k_loop(query_codes, db_codes, query_labels, db_labels, k):
    """Mean over queries of (relevant items in the top k) / k."""
    precisions = []
    for order, relevant in _hamming_rankings(query_codes, db_codes, query_labels, db_labels):
        kk = _cut(k, len(order))
        precisions.append(relevant[order[:kk]].sum() / kk)
    return float(np.mean(precisions))


def cosine_map_at_k_loop(query, db, query_labels, db_labels, k):
    """mAP@k ranking by descending cosine similarity (stable: ties by index)."""
    query = np.asarray(query, dtype=np.float64)
    db = np.asarray(db, dtype=np.float64)
    db_unit = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    query_labels = np.asarray(query_labels, dtype=np.float64)
    db_labels = np.asarray(db_labels, dtype=np.float64)
    aps = []
    for q in range(query.shape[0]):
        q_unit = query[q] / max(np.linalg.norm(query[q]), 1e-12)
        cosine = db_unit @ q_unit                                       # (N,)
        order = np.argsort(-cosine, kind="stable")
        relevant = (query_labels[q] @ db_labels.T) > 0
        aps.append(_average_precision(relevant[order[:_cut(k, len(order))]]))
    return float(np.mean(aps))
