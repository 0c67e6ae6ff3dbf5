"""Oracles for what evaluate.py's definitions do not cover: cosine ranking, the tie-aware mAP
(by brute force over tie orders, and in exact rationals) and precision/recall by radius.

The index-ordered mAP@K, mAP@all and precision@K oracle is evaluate.reference_metrics (the
definitions themselves). Plain per-query loops, written to be obviously correct, not fast.
"""
import numpy as np

from evaluate import average_precision


def _check_pm1(codes):
    codes = np.asarray(codes, dtype=np.float64)
    assert np.all(np.abs(codes) == 1), "oracle expects +1/-1 codes"
    return codes


def _cut(k, n):
    return n if k is None else min(k, n)


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
        aps.append(average_precision(relevant[order[:_cut(k, len(order))]]))
    return float(np.mean(aps))


def _tie_groups(query_code, db_codes):
    """Database indices grouped by Hamming distance to one query, nearest group first."""
    n_bits = query_code.shape[0]
    hamming = np.rint(0.5 * (n_bits - db_codes @ query_code)).astype(int)
    return [list(np.flatnonzero(hamming == h)) for h in np.unique(hamming)]


def _queries_with_tie_groups(query_codes, db_codes, query_labels, db_labels):
    """Per query: relevant (N,) bool and its Hamming tie groups, nearest group first."""
    query_codes, db_codes = _check_pm1(query_codes), _check_pm1(db_codes)
    query_labels = np.asarray(query_labels, dtype=np.float64)
    db_labels = np.asarray(db_labels, dtype=np.float64)
    for q in range(query_codes.shape[0]):
        yield (query_labels[q] @ db_labels.T) > 0, _tie_groups(query_codes[q], db_codes)


def tie_aware_map_loop(query_codes, db_codes, query_labels, db_labels, k):
    """Tie-aware mAP@k by brute force: for each query, the plain mean of the
    index-ordered AP@k over EVERY ranking that orders the Hamming tie groups by
    distance and each group in any of its permutations (all combinations of
    per-group permutations, itertools.permutations), i.e. the exact expectation
    under uniform independent shuffles of the groups. k=None: the whole ranking.
    Only for tiny databases (the count is the product of the groups' factorials).
    """
    import itertools

    aps = []
    for relevant, groups in _queries_with_tie_groups(query_codes, db_codes, query_labels, db_labels):
        kk = _cut(k, len(relevant))
        values = []
        for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
            ranking = [i for order in orders for i in order]
            values.append(average_precision(relevant[ranking[:kk]]))
        aps.append(sum(values) / len(values))
    return float(np.mean(aps))


def tie_aware_map_patterns(query_codes, db_codes, query_labels, db_labels, k):
    """The same expectation, enumerating per group the distinct placements of its
    relevant items (itertools.combinations, all equally likely under a uniform
    shuffle) instead of all permutations: exact, and feasible for somewhat
    larger groups."""
    import itertools

    aps = []
    for relevant, groups in _queries_with_tie_groups(query_codes, db_codes, query_labels, db_labels):
        kk = _cut(k, len(relevant))
        choices = [itertools.combinations(range(len(g)), int(relevant[g].sum())) for g in groups]
        values = []
        for placement in itertools.product(*choices):
            pattern = []
            for g, pos in zip(groups, placement):
                in_group = np.zeros(len(g), dtype=bool)
                in_group[list(pos)] = True
                pattern.extend(in_group)
            values.append(average_precision(np.array(pattern[:kk])))
        aps.append(sum(values) / len(values))
    return float(np.mean(aps))


def pr_by_radius_loop(query_codes, db_codes, query_labels, db_labels):
    """(precision, recall) lists over radius 0..B by per-query, per-radius loops.

    precision[r]: mean over the queries that retrieve at least one item within
    radius r of relevant/retrieved (None if none do); recall[r]: mean over the
    queries with at least one relevant item of relevant-within-r / relevant.
    """
    query_codes, db_codes = _check_pm1(query_codes), _check_pm1(db_codes)
    query_labels = np.asarray(query_labels, dtype=np.float64)
    db_labels = np.asarray(db_labels, dtype=np.float64)
    n_bits = query_codes.shape[1]
    precision, recall = [], []
    for radius in range(n_bits + 1):
        precisions, recalls = [], []
        for q in range(query_codes.shape[0]):
            hamming = 0.5 * (n_bits - db_codes @ query_codes[q])
            relevant = (query_labels[q] @ db_labels.T) > 0
            within = hamming <= radius
            if within.any():
                precisions.append((relevant & within).sum() / within.sum())
            if relevant.any():
                recalls.append((relevant & within).sum() / relevant.sum())
        precision.append(float(np.mean(precisions)) if precisions else None)
        recall.append(float(np.mean(recalls)) if recalls else None)
    return precision, recall


def tie_aware_map_rational(query_codes, db_codes, query_labels, db_labels, k):
    """Tie-aware mAP@k in exact rational arithmetic (fractions, math.comb), term
    by term, for databases too large to enumerate: He et al.'s expectation for
    the whole groups above rank k, and for the group cut by rank k the sum over
    X = relevant items in its top part (hypergeometric) of P(X = x) E[AP | x].
    The brute-force oracles above check this formula; this one checks the float
    arithmetic of evaluate.py on large groups.
    """
    from fractions import Fraction
    from math import comb

    query_codes, db_codes = _check_pm1(query_codes), _check_pm1(db_codes)
    query_labels = np.asarray(query_labels, dtype=np.float64)
    db_labels = np.asarray(db_labels, dtype=np.float64)
    kk = _cut(k, db_codes.shape[0])

    def expected_sum(n_above, r_above, size, n_rel):
        """E[sum of precision over relevant ranks] of `size` ranks after n_above,
        holding n_rel relevant items in uniformly random places."""
        total = Fraction(0)
        for s in range(1, size + 1):
            above = Fraction((s - 1) * (n_rel - 1), size - 1) if size > 1 else 0
            total += Fraction(n_rel, size) * (r_above + 1 + above) / (n_above + s)
        return total

    aps = []
    for q in range(query_codes.shape[0]):
        relevant = (query_labels[q] @ db_labels.T) > 0
        n_above = r_above = 0
        numerator = Fraction(0)
        for g in _tie_groups(query_codes[q], db_codes):
            size, n_rel = len(g), int(relevant[g].sum())
            if n_above + size < kk:           # a whole group above rank k
                numerator += expected_sum(n_above, r_above, size, n_rel)
                n_above, r_above = n_above + size, r_above + n_rel
                continue
            m = kk - n_above                  # this group is cut after m ranks
            ap = Fraction(0)
            for x in range(max(0, m - (size - n_rel)), min(n_rel, m) + 1):
                prob = Fraction(comb(n_rel, x) * comb(size - n_rel, m - x), comb(size, m))
                if r_above + x:
                    ap += prob * (numerator + expected_sum(n_above, r_above, m, x)) / (r_above + x)
            aps.append(ap)
            break
    return float(sum(aps) / len(aps))
