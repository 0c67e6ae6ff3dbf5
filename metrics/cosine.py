"""Ranking real-valued outputs by cosine similarity: one packed sort key per item.

Used for the real-valued stage (fused embeddings) and for the continuous hash
outputs before sign (the quantisation gap). Ties (equal float similarity) are
ordered by ascending database index, as in the Hamming ranking. Queries run
in chunks whose (chunk, N) matrices stay near 256 MB, and the chunk's
scratch tensors are reused: fresh (chunk, N) tensors cost more in page
faults than the arithmetic.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_CHUNK_BYTES = 256 * 2**20   # target size of one chunk's (chunk, N) matrices
_BYTES_PER_PAIR = 33         # scores, keys, label counts, relevance, AP scratch


def average_precision_rows(rel: torch.Tensor, inv_rank: torch.Tensor, hits=None, terms=None) -> torch.Tensor:
    """rel (c, L) bool in rank order -> (c,) float64 AP over those L ranks (0 without a relevant item).

    inv_rank (>= L,) float64 = 1 / rank; hits (c, L) int32 and terms (c, L)
    float64 are optional scratch buffers.
    """
    hits = torch.cumsum(rel, dim=1, dtype=torch.int32, out=hits)  # relevant at or above
    n_rel = hits[:, -1].to(torch.float64)                          # (c,)
    hits.mul_(rel)                                       # keep it at relevant ranks only
    terms = hits.to(torch.float64) if terms is None else terms.copy_(hits)
    prec_sum = terms @ inv_rank[: rel.shape[1]]          # (c,) sum of precision@rank
    return torch.where(n_rel > 0, prec_sum / n_rel.clamp(min=1), 0.0)


def _sort_keys(sim: torch.Tensor, rel: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """sim (c, N) float32 (overwritten), rel (c, N) bool -> out (c, N) int64 keys.

    Ascending key = descending similarity, then ascending index; the lowest bit
    carries rel: key = ~(order-preserving int32 of sim) << 32 | (2 * index + rel).
    """
    bits = sim.add_(0.0).view(torch.int32)         # + 0.0 turns -0.0 into +0.0 (a tie)
    bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)   # int order == float order
    out.copy_(bits.bitwise_not_()).bitwise_left_shift_(32)
    return out.add_(torch.arange(0, 2 * sim.shape[1], 2)).add_(rel)


def rank_by_cosine(q, d, ql, dl, top: int, chunk_size: int | None = None) -> dict:
    """q (Q, D), d (N, D) real, ql (Q, C), dl (N, C) bool -> per query (Q,) float64 arrays
    ap_k (over the top `top` ranks), ap_all and hits_k (relevant items in the top `top`)."""
    if torch.isnan(q).any() or torch.isnan(d).any():
        raise ValueError("query or database contains NaN")
    n_q, n_db = q.shape[0], d.shape[0]
    chunk_size = min(chunk_size or max(1, _CHUNK_BYTES // (_BYTES_PER_PAIR * n_db)), n_q)
    lhs, rhs = F.normalize(q.to(torch.float32), dim=1), F.normalize(d.to(torch.float32), dim=1)
    ql_f, dl_f = ql.to(torch.float32), dl.to(torch.float32)                   # (Q, C), (N, C)
    scores = torch.empty(chunk_size, n_db)                                    # scratch, reused
    counts = torch.empty(chunk_size, n_db)
    relevant = torch.empty(chunk_size, n_db, dtype=torch.bool)
    keys = torch.empty(chunk_size, n_db, dtype=torch.int64)
    hits = torch.empty(chunk_size, n_db, dtype=torch.int32)
    terms = torch.empty(chunk_size, n_db, dtype=torch.float64)
    inv_rank = 1.0 / torch.arange(1, n_db + 1, dtype=torch.float64)
    found = {name: np.zeros(n_q) for name in ("ap_k", "ap_all", "hits_k")}
    for start in range(0, n_q, chunk_size):
        rows = slice(start, min(start + chunk_size, n_q))
        c = rows.stop - rows.start
        sim = torch.mm(lhs[rows], rhs.T, out=scores[:c])                      # (c, N)
        rel = torch.gt(torch.mm(ql_f[rows], dl_f.T, out=counts[:c]), 0, out=relevant[:c])
        ranked = _sort_keys(sim, rel, out=keys[:c])
        ranked.numpy().sort(axis=1)       # in place; numpy's SIMD sort >> torch.sort here
        rel = torch.ne(ranked.bitwise_and_(1), 0, out=relevant[:c])         # (c, N) in rank order
        found["ap_all"][rows] = average_precision_rows(rel, inv_rank, hits[:c], terms[:c]).numpy()
        found["ap_k"][rows] = average_precision_rows(rel[:, :top], inv_rank).numpy()
        found["hits_k"][rows] = rel[:, :top].sum(dim=1).numpy()
    return found
