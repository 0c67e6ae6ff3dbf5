"""Retrieval metrics for cross-modal hashing: mAP@K, mAP@all, precision@K.

Conventions (see docs "Retrieval metrics"):
  * relevance: a query and a database item are relevant when they share at
    least one label (labels are multi-hot; any non-zero entry counts);
  * ranking: ascending distance; items at EQUAL distance are ordered by
    ASCENDING DATABASE INDEX (fixed, reproducible tie order);
  * AP@K (UCMFH/DJSRH): keep the top K; AP is the mean, over the relevant
    items in the top K, of (relevant items at or above that rank) / rank; a
    query with no relevant item in its top K scores 0 and still counts;
  * mAP@all: the same with K = N; precision@K: relevant items in top K / K;
  * tie-aware (He, Cakir, Bargal, Sclaroff, "Hashing as Tie-Aware Learning to
    Rank", CVPR 2018), Hamming only: the EXPECTED AP@K / AP@all when every
    group of items at equal Hamming distance is shuffled uniformly at random
    (independently per group) instead of ordered by index; see _tie_aware_ap.

Everything runs on the CPU, queries in chunks so memory stays bounded.
Shapes: Q queries, N database items, B bits (or embedding dims), C labels.
The curves (pr_curve_by_radius, precision_at_k_curve) live in
metrics_curves.py and are importable from here.
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["METRICS", "TIE_METRICS", "to_sign_codes", "hamming_distance",
           "retrieval_metrics", "pr_curve_by_radius", "precision_at_k_curve"]

METRICS = ("map_k", "map_all", "precision_k")   # the default `want`
TIE_METRICS = ("map_k_tie", "map_all_tie")      # on request only
_CHUNK_BYTES = 256 * 2**20   # target size of one chunk's (chunk, N) matrices
_BYTES_FULL = 32             # per pair: scores, sort keys, relevance, AP scratch
_BYTES_HIST = 12             # per pair: bin index (float32), label counts, int32 bins
_TOPK_MAX_FRACTION = 16      # K > N / 16: a full sort beats topk
_BLOCK = 64                  # block width of the two-stage top-K search
_CUT_ELEMENTS = 2**21        # size of the tie-aware AP@K's (queries, X) arrays


def _as_2d(x, name: str) -> torch.Tensor:
    """numpy array / tensor / nested list -> 2-D CPU tensor (no copy if possible)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        a = np.asarray(x)
        t = torch.from_numpy(a.copy() if not a.flags.writeable else a)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t


def _positive_int(value, name: str) -> int:
    try:
        if not isinstance(value, bool) and operator.index(value) >= 1:
            return operator.index(value)
    except TypeError:
        pass
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def _signs(t: torch.Tensor, name: str) -> torch.Tensor:
    """2-D tensor -> float32 +1/-1 (value >= 0 -> +1, < 0 -> -1)."""
    if t.dtype == torch.bool:
        raise ValueError(f"{name} is bool; convert {{0,1}} codes to +-1 first (2*x-1)")
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    # compare in the input dtype: a tiny negative float64 must not round to -0.0
    return torch.where(t >= 0, 1.0, -1.0).to(torch.float32)


def to_sign_codes(x, name: str = "x") -> torch.Tensor:
    """Binarise (Q, B) real values (tensor or array) into float32 +1/-1 codes.

    value >= 0 -> +1 (an exact 0, and -0.0, maps to +1), value < 0 -> -1.
    Bool input is rejected ({0, 1} codes would all map to +1; pass 2*x-1).
    `name` is what error messages call the input.
    """
    return _signs(_as_2d(x, name), name)


def hamming_distance(query_codes, database_codes) -> torch.Tensor:
    """(Q, B), (N, B) codes (signed as in to_sign_codes) -> (Q, N) int32 distances."""
    q = _signs(_as_2d(query_codes, "query_codes"), "query_codes")
    d = _signs(_as_2d(database_codes, "database_codes"), "database_codes")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"database_codes has {d.shape[1]} bits, query_codes {q.shape[1]}")
    # +-1 codes: <q, d> = B - 2 * hamming; float32 products/sums are exact integers
    return ((q.shape[1] - q @ d.T) * 0.5).to(torch.int32)


def _average_precision(rel, inv_rank, hits=None, terms=None) -> torch.Tensor:
    """rel (c, L) bool in rank order -> (c,) float64 AP over those L ranks.

    inv_rank (>= L,) float64 = 1 / rank; hits (c, L) int32 and terms (c, L)
    float64 are optional scratch buffers (reusing them avoids page faults).
    """
    hits = torch.cumsum(rel, dim=1, dtype=torch.int32, out=hits)  # relevant at or above
    n_rel = hits[:, -1].to(torch.float64)                          # (c,)
    hits.mul_(rel)                                       # keep it at relevant ranks only
    terms = hits.to(torch.float64) if terms is None else terms.copy_(hits)
    prec_sum = terms @ inv_rank[: rel.shape[1]]          # (c,) sum of precision@rank
    return torch.where(n_rel > 0, prec_sum / n_rel.clamp(min=1), 0.0)


def _smallest_k(keys: torch.Tensor, k: int) -> torch.Tensor:
    """keys (c, M), unique per row -> (c, k) int64 columns of the k smallest, ascending.

    Same result as torch.topk, about 3x faster for k << M: the k smallest keys
    lie in the k blocks (of _BLOCK columns) with the smallest block minima,
    because a block holding one of them has its minimum among them and distinct
    blocks have distinct minima. So: topk of block minima, then of those blocks.
    """
    c, m = keys.shape
    n_blocks = m // _BLOCK
    if m % _BLOCK or n_blocks <= k:
        return torch.topk(keys, k, dim=1, largest=False, sorted=True).indices
    blocks = keys.view(c, n_blocks, _BLOCK)                                 # (c, M/G, G)
    best = torch.topk(blocks.amin(dim=2), k, dim=1, largest=False).indices  # (c, k)
    cand = torch.gather(blocks, 1, best.unsqueeze(2).expand(c, k, _BLOCK))  # (c, k, G)
    pos = torch.topk(cand.view(c, -1), k, dim=1, largest=False, sorted=True).indices
    return torch.gather(best, 1, pos // _BLOCK) * _BLOCK + pos % _BLOCK


def _cosine_keys(sim, rel, out) -> torch.Tensor:
    """sim (c, N) float32 (overwritten), rel (c, N) bool -> out (c, N) int64 keys.

    Ascending key = descending similarity, then ascending index; the lowest bit
    carries rel: key = ~(order-preserving int32 of sim) << 32 | (2 * index + rel).
    """
    bits = sim.add_(0.0).view(torch.int32)         # + 0.0 turns -0.0 into +0.0 (a tie)
    bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)   # int order == float order
    out.copy_(bits.bitwise_not_()).bitwise_left_shift_(32)
    return out.add_(torch.arange(0, 2 * sim.shape[1], 2)).add_(rel)


def _check_inputs(query, database, query_labels, database_labels):
    """-> q (Q, B), d (N, B) as given; ql (Q, C), dl (N, C) bool. Raises ValueError."""
    q, d = _as_2d(query, "query"), _as_2d(database, "database")
    ql, dl = _as_2d(query_labels, "query_labels"), _as_2d(database_labels, "database_labels")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"database has {d.shape[1]} columns, query has {q.shape[1]}")
    if ql.shape[0] != q.shape[0]:
        raise ValueError(f"query_labels has {ql.shape[0]} rows, query has {q.shape[0]}")
    if dl.shape[0] != d.shape[0]:
        raise ValueError(f"database_labels has {dl.shape[0]} rows, database has {d.shape[0]}")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(f"database_labels has {dl.shape[1]} columns, query_labels has {ql.shape[1]}")
    if q.shape[0] == 0 or d.shape[0] == 0:
        raise ValueError(f"empty query ({q.shape[0]} rows) or database ({d.shape[0]} rows)")
    return q, d, ql != 0, dl != 0


def _ranked_relevance(q, d, ql_b, dl_b, top, distance, chunk_size, full):
    """Yield (rows, rel) per chunk of queries: rel (c, N if full else top) bool is
    the relevance of the ranked database, best first, ties by ascending index.

    full: sort each whole ranking (forced for cosine and for K > N / 16); else a
    top-K search. rel may be a view into a buffer that the next chunk reuses.
    """
    n_q, n_db, n_bits = q.shape[0], d.shape[0], q.shape[1]
    full = full or distance == "cosine" or top * _TOPK_MAX_FRACTION > n_db
    exact32 = distance == "cosine" or n_db * (n_bits + 1) <= 2**24   # see key below
    dtype = torch.float32 if exact32 else torch.float64
    if chunk_size is None:   # top-K path: one (chunk, N) key matrix
        per_row = (_BYTES_FULL if full else dtype.itemsize) * n_db
        chunk_size = max(1, _CHUNK_BYTES // per_row)
    chunk_size = min(chunk_size, n_q)

    if distance == "hamming":
        # key = idx - N * <q, d> = N * (2 * hamming - B) + idx: unique per row and
        # ordered like (hamming, index). One matmul gives it: q_aug = [-N q, 1],
        # d_aug = [d, idx]. Every partial sum is an integer of magnitude
        # <= N (B + 1), exact in float32 up to 2^24 (float64 beyond). The top-K
        # path pads the database to a multiple of _BLOCK with all-zero codes
        # whose key N (B + 1) exceeds every real key (never selected).
        n_pad = 0 if full else -n_db % _BLOCK
        idx = torch.cat([torch.arange(n_db, dtype=dtype),
                         torch.full((n_pad,), n_db * (n_bits + 1), dtype=dtype)])
        d_aug = torch.cat([F.pad(_signs(d, "database").to(dtype), (0, 0, 0, n_pad)),
                           idx.unsqueeze(1)], dim=1)                        # (N+pad, B+1)
        q_aug = torch.cat([_signs(q, "query").to(dtype) * -n_db,
                           torch.ones(n_q, 1, dtype=dtype)], dim=1)         # (Q, B+1)
        lhs, rhs = q_aug, d_aug
    else:
        if torch.isnan(q).any() or torch.isnan(d).any():
            raise ValueError("query or database contains NaN")
        lhs = F.normalize(q.to(dtype), dim=1)                               # (Q, B)
        rhs = F.normalize(d.to(dtype), dim=1)                               # (N, B)
    buf = torch.empty(chunk_size, rhs.shape[0], dtype=dtype)   # (chunk, N[+pad]) scores
    if full:   # scratch reused by every chunk: fresh (chunk, N) tensors cost more in
        # page faults than the arithmetic. Sort keys: 2 * key + rel (hamming)
        # or _cosine_keys, int32 when it fits (faster sort).
        small = distance == "hamming" and 2 * n_db * (n_bits + 1) < 2**31
        kbuf = torch.empty(chunk_size, n_db, dtype=torch.int32 if small else torch.int64)
        cbuf = torch.empty(chunk_size, n_db, dtype=torch.float32)
        rbuf = torch.empty(chunk_size, n_db, dtype=torch.bool)
        ql_f, dl_f = ql_b.to(torch.float32), dl_b.to(torch.float32)        # (Q, C), (N, C)

    for start in range(0, n_q, chunk_size):
        rows = slice(start, min(start + chunk_size, n_q))
        c = rows.stop - rows.start
        scores = torch.mm(lhs[rows], rhs.T, out=buf[:c])   # (c, N) keys or similarities
        if full:
            counts = torch.mm(ql_f[rows], dl_f.T, out=cbuf[:c])   # (c, N) shared labels
            rel = torch.gt(counts, 0, out=rbuf[:c])               # (c, N) database order
            keys = kbuf[:c]
            if distance == "hamming":     # 2 * key + rel: same order, rel in the low bit
                keys.copy_(scores).mul_(2).add_(rel)
            else:
                _cosine_keys(scores, rel, out=keys)
            keys.numpy().sort(axis=1)     # in place; numpy's SIMD sort >> torch.sort here
            yield rows, torch.ne(keys.bitwise_and_(1), 0, out=rbuf[:c])   # (c, N) rank order
        else:
            order = _smallest_k(scores, top)                                # (c, K)
            yield rows, (dl_b[order] & ql_b[rows].unsqueeze(1)).any(dim=2)  # (c, K)


def _hamming_histograms(q, d, ql_b, dl_b, chunk_size=None):
    """Yield, per chunk of queries, hist (c, B+1, 2) int64 numpy: hist[i, h, 1] /
    hist[i, h, 0] = relevant / irrelevant database items at Hamming distance h
    from query i. No sort: one bincount of bin = 2 h + rel + (2 B + 2) i.
    """
    n_q, n_db, n_bits = q.shape[0], d.shape[0], q.shape[1]
    n_bins = 2 * n_bits + 2                              # per query: (h, rel) pairs
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (_BYTES_HIST * n_db))
    # bins in float32: every partial sum is an integer below c * n_bins <= 2^24
    dtype = torch.float32 if n_bins <= 2**24 else torch.float64
    chunk_size = max(1, min(chunk_size, n_q, 2**24 // n_bins))
    # [-q, B] . [d, 1] = B - <q, d> = 2 h  (+-1 codes)
    lhs = torch.cat([-_signs(q, "query"), torch.full((n_q, 1), float(n_bits))], 1).to(dtype)
    rhs = torch.cat([_signs(d, "database"), torch.ones(n_db, 1)], 1).to(dtype)
    offset = torch.arange(chunk_size, dtype=dtype) * n_bins                 # (chunk,)
    ql_f, dl_f = ql_b.to(dtype), dl_b.to(dtype)
    bins = torch.empty(chunk_size, n_db, dtype=dtype)      # reused: see _ranked_relevance
    counts = torch.empty(chunk_size, n_db, dtype=dtype)
    ibuf = torch.empty(chunk_size, n_db, dtype=torch.int32)
    for start in range(0, n_q, chunk_size):
        rows = slice(start, min(start + chunk_size, n_q))
        c = rows.stop - rows.start
        lhs_c = lhs[rows].clone()
        lhs_c[:, -1] += offset[:c]
        b = torch.mm(lhs_c, rhs.T, out=bins[:c])                            # (c, N)
        rel = torch.mm(ql_f[rows], dl_f.T, out=counts[:c]).clamp_(max=1)   # 1: shares a label
        idx = ibuf[:c].copy_(b.add_(rel))           # (float + float: far faster than + bool)
        hist = torch.bincount(idx.view(-1), minlength=c * n_bins)
        yield rows, hist.view(c, n_bits + 1, 2).numpy()


def _harmonic(n: int) -> np.ndarray:
    """(n + 1,) long double: H[t] = 1 + 1/2 + ... + 1/t, H[0] = 0. Extended
    precision (on x86) keeps short differences H[b] - H[a] accurate."""
    h = np.zeros(n + 1, dtype=np.longdouble)
    np.cumsum(1 / np.arange(1, n + 1, dtype=np.longdouble), out=h[1:])
    return h


def _tie_aware_ap(hist, top, harmonic):
    """hist (c, G, 2) counts (see _hamming_histograms) -> (AP@top, AP@all), (c,) float64.

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


def retrieval_metrics(query, database, query_labels, database_labels, k=50,
                      distance="hamming", chunk_size=None, want=METRICS) -> dict:
    """Score a retrieval of `database` by `query`.

    query (Q, B), database (N, B): torch tensors or numpy arrays.
      distance="hamming": codes or continuous head outputs; they are binarised
        here with value >= 0 -> +1 and value < 0 -> -1 (exact 0 maps to +1).
      distance="cosine": real embeddings, rows L2-normalised here (an all-zero
        row has similarity 0 to everything); ranked by descending similarity.
    query_labels (Q, C), database_labels (N, C): multi-hot, any numeric dtype;
      relevant = share at least one label (non-zero entry).
    k: cut-off for map_k / precision_k / map_k_tie; None or k >= N means the
      whole ranking (precision_k then divides by N).
    Ranking: ascending distance (descending cosine similarity); items at equal
      distance are ordered by ascending database index.
    chunk_size: queries per chunk; default keeps a chunk's (chunk, N) matrices
      near 256 MB.
    want: a subset of "map_k", "map_all", "precision_k" (the default: these
      three), "map_k_tie", "map_all_tie"; the dict returned holds only these,
      as python floats, plus "k" (as passed).
      map_k_tie / map_all_tie (hamming): mean over queries of the EXPECTED
        AP@K / AP@all when each group of items at equal Hamming distance is
        shuffled uniformly at random (He et al., CVPR 2018). Exact, including
        AP@K's random denominator when K cuts a tie group; see _tie_aware_ap.
        From per-query distance histograms, no sort. With distance="cosine"
        they equal map_k / map_all (float similarities; exact ties keep the
        index order).
      Cost on 2 CPU cores, Q=2100, N=184477, 64 bits: map_k alone ~0.9 s;
      map_all (and cosine) sorts each whole ranking, ~5 s; the tie-aware
      pair, one histogram pass, about a third of map_all (scripts/bench_map.py).
    Raises ValueError on inconsistent shapes or bad arguments.
    """
    want = (want,) if isinstance(want, str) else tuple(want)
    if not want or any(w not in METRICS + TIE_METRICS for w in want):
        raise ValueError(f"want must be a non-empty subset of {METRICS + TIE_METRICS}, got {want}")
    if distance not in ("hamming", "cosine"):
        raise ValueError(f"distance must be 'hamming' or 'cosine', got {distance!r}")
    q, d, ql_b, dl_b = _check_inputs(query, database, query_labels, database_labels)
    n_q, n_db = q.shape[0], d.shape[0]
    k = None if k is None else _positive_int(k, "k")
    top = n_db if k is None else min(k, n_db)          # effective cut-off K
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    ties = distance == "hamming" and any(w in TIE_METRICS for w in want)
    # index-ordered metrics to compute (cosine: the tie-aware ones are these)
    base = [w for w in want if w in METRICS] + [w[:-4] for w in want if w in TIE_METRICS and not ties]
    base = tuple(dict.fromkeys(base))

    totals = dict.fromkeys(base + TIE_METRICS, 0.0)
    inv_rank = 1.0 / torch.arange(1, n_db + 1, dtype=torch.float64)         # (N,)
    hbuf = tbuf = None
    for rows, rel in (_ranked_relevance(q, d, ql_b, dl_b, top, distance, chunk_size,
                                        full="map_all" in base) if base else ()):
        c = rel.shape[0]
        if "map_all" in base:
            if hbuf is None:   # AP scratch, reused by every chunk (the first is the largest)
                hbuf = torch.empty(c, n_db, dtype=torch.int32)
                tbuf = torch.empty(c, n_db, dtype=torch.float64)
            ap = _average_precision(rel, inv_rank, hbuf[:c], tbuf[:c])
            totals["map_all"] += ap.sum().item()
        rel_top = rel[:, :top]                                              # (c, K)
        if "map_k" in base:
            if not (top == n_db and "map_all" in base):   # else: ap is AP@N
                ap = _average_precision(rel_top, inv_rank)
            totals["map_k"] += ap.sum().item()
        if "precision_k" in base:
            totals["precision_k"] += rel_top.sum().item() / top
    if ties:
        harmonic = _harmonic(n_db)
        for _, hist in _hamming_histograms(q, d, ql_b, dl_b, chunk_size):
            ap_k, ap_all = _tie_aware_ap(hist, top if "map_k_tie" in want else None, harmonic)
            totals["map_k_tie"] += float(ap_k.sum())
            totals["map_all_tie"] += float(ap_all.sum())

    result = {name: totals[name if ties or name in METRICS else name[:-4]] / n_q
              for name in want}
    result["k"] = k
    return result


def __getattr__(name):
    """The curves live in metrics_curves.py (which imports this module), loaded on first use."""
    if name in ("pr_curve_by_radius", "precision_at_k_curve"):
        import metrics_curves
        return getattr(metrics_curves, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- command line ---


def main(argv=None) -> dict:
    """Score a saved checkpoint on its dataset's query and database splits.

        python evaluate.py --checkpoint checkpoints/hash/mirflickr_hash_64.pth [--key value ...]

    Other flags are config keys that may differ from training (data_root,
    device, map_k, eval_batch_size, output_dir). Prints the score table and
    writes results.json to the output folder; returns the results.
    """
    import sys

    from config import ConfigError, build_config
    from data import DataError
    from ICMR import Solver
    from runio import score_table
    from trained_model import read_checkpoint

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(main.__doc__)
        return {}
    try:
        if "--checkpoint" not in argv or argv.index("--checkpoint") + 1 >= len(argv):
            raise ConfigError("--checkpoint PATH is required (a .pth file written by train.py)")
        at = argv.index("--checkpoint")
        path, rest = argv[at + 1], argv[:at] + argv[at + 2:]
        saved = read_checkpoint(path)
        try:
            bits, dataset = saved["bits"], saved["config"]["dataset"]
        except Exception as err:
            raise ConfigError(f"{path}: not a checkpoint written by train.py ({type(err).__name__})") from None
        cfg = build_config(rest, overrides={"dataset": dataset, "task": "test_hash" if bits else "test_real"})
        solver = Solver(cfg, bits=bits, checkpoint_path=path)
        results = solver.run_task()
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(score_table([results]))
    return results


if __name__ == "__main__":
    main()
