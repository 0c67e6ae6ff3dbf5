"""Tie-aware mAP (He, Cakir, Bargal, Sclaroff, "Hashing as Tie-Aware Learning to Rank", CVPR 2018).

The index-ordered mAP breaks ties between items at equal Hamming distance by
database index. The tie-aware mAP is its EXPECTED value when every group of
items at equal distance is shuffled uniformly at random (independently per
group), computed exactly from the per-query distance histograms (no sort).
"""
from __future__ import annotations

import numpy as np

_CUT_ELEMENTS = 2**21        # size of the tie-aware AP@K's (queries, X) arrays


def _harmonic(n: int) -> np.ndarray:
    """(n + 1,) long double: H[t] = 1 + 1/2 + ... + 1/t, H[0] = 0. Extended
    precision (on x86) keeps short differences H[b] - H[a] accurate."""
    h = np.zeros(n + 1, dtype=np.longdouble)
    np.cumsum(1 / np.arange(1, n + 1, dtype=np.longdouble), out=h[1:])
    return h


def tie_aware_ap(hist, top):
    """hist (c, G, 2) counts (hist[i, g, 1] / [i, g, 0]: relevant / other items at distance g from
    query i) -> (AP@top, AP@all), (c,) float64 each; top None = the whole ranking.

    Both are exact expectations over the random order of every tie group (items at
    equal distance, each group shuffled uniformly and independently); AP is the
    index-ordered definition applied to the shuffled ranking.
    Group g has n_g items, r_g relevant, and holds ranks N_g + 1 .. N_g + n_g;
    R_g = relevant items in the groups before it, R = all relevant items.

    AP@all (He et al. 2018, eq. for AP_T): the denominator R is fixed, so
      E[AP] = (1/R) sum_g (r_g/n_g) sum_{s=1..n_g} (R_g + 1 + (s-1)(r_g-1)/(n_g-1)) / (N_g + s)
    (rank N_g + s is relevant w.p. r_g/n_g; given that, (s-1)(r_g-1)/(n_g-1)
    relevant items are expected above it within the group); 0 when R = 0.

    AP@K: the group g* holding rank K is cut after its first m = K - N_g* ranks.
    The number X of relevant items among them is hypergeometric (n_g*, r_g*, m),
    and the denominator R_g* + X is random, so the expectation of the ratio is
    taken exactly by conditioning on X = x:
      E[AP@K] = sum_x P(X = x) (A + B(x)) / (R_g* + x)     (a term is 0 when R_g* + x = 0)
    A = the expected precision sum of the whole groups above g* (He's inner sums);
    B(x) = sum_{s=1..m} (x/m) (R_g* + 1 + (s-1)(x-1)/(m-1)) / (N_g* + s), since
    given X = x the first m ranks hold a uniform arrangement of x relevant items.
    K = N gives AP@all.
    """
    c, n_groups, _ = hist.shape
    harmonic = _harmonic(int(hist[0].sum()))
    rel = hist[:, :, 1]
    n = hist.sum(axis=2)
    n_after = np.cumsum(n, axis=1)
    n_before = n_after - n
    r_before = np.cumsum(rel, axis=1) - rel
    # sum_s 1/(N_g + s) and sum_s (s-1)/(N_g + s) over the group's ranks
    h1 = (harmonic[n_after] - harmonic[n_before]).astype(np.float64)
    h2 = n - (n_before + 1) * h1
    alpha = np.where(n > 1, (rel - 1) / np.maximum(n - 1, 1), 0.0)
    term = rel / np.maximum(n, 1) * ((r_before + 1) * h1 + alpha * h2)   # (c, G)
    n_rel = rel.sum(axis=1)
    ap_all = np.where(n_rel > 0, term.sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    if top is None or top == int(n_after[0, -1]):
        return ap_all, ap_all

    g = (n_after < top).sum(axis=1)                      # (c,) the cut group g*
    i = np.arange(c)
    a = np.where(np.arange(n_groups) < g[:, None], term, 0.0).sum(axis=1)
    n0, r0, ng, rg = n_before[i, g], r_before[i, g], n[i, g], rel[i, g]
    m = top - n0                                         # 1 .. ng
    h1 = (harmonic[top] - harmonic[n0]).astype(np.float64)
    h2 = m - (n0 + 1) * h1
    lo, hi = np.maximum(0, m - (ng - rg)), np.minimum(rg, m)     # support of X
    x = np.arange(hi.max() + 1)[None, :]                 # (1, X), X <= K + 1
    ap_k = np.empty(c)
    step_rows = max(1, _CUT_ELEMENTS // x.shape[1])      # bounds the (rows, X) arrays
    for s in range(0, c, step_rows):
        j = slice(s, s + step_rows)
        ap_k[j] = _cut_group_ap(x, lo[j], hi[j], ng[j], rg[j], m[j], r0[j], a[j], h1[j], h2[j])
    return ap_k, ap_all


def _cut_group_ap(x, lo, hi, ng, rg, m, r0, a, h1, h2):
    """E[AP@K] given the group cut by rank K (see _tie_aware_ap); (c,) arrays, x (1, X)."""
    col = lambda v: v[:, None]                           # noqa: E731  (c,) -> (c, 1)
    # P(X = x) up to a constant, by the ratio P(x + 1) / P(x), in logs (no overflow)
    step = (x >= col(lo)) & (x < col(hi))
    ratio = np.where(step, (col(rg) - x) * (col(m) - x), 1.0) / np.where(
        step, (x + 1) * (col(ng - rg - m) + x + 1.0), 1.0)
    log_step = np.log(ratio)
    log_p = np.cumsum(log_step, axis=1) - log_step       # sum over j < x
    log_p = np.where((x >= col(lo)) & (x <= col(hi)), log_p, -np.inf)
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    beta = np.where(col(m) > 1, (x - 1) / np.maximum(col(m) - 1, 1), 0.0)
    b = x / col(m) * (col(r0 + 1) * col(h1) + beta * col(h2))   # (c, X)
    den = col(r0) + x
    return (p * np.where(den > 0, (col(a) + b) / np.maximum(den, 1), 0.0)).sum(axis=1)
