"""Hamming ranking by counting: every metric of a query in two O(N) passes, no sort.

Hamming distances are small integers (0..B). The ranking is ascending distance
with ties in ascending database index, so an item's rank is

    rank(i) = #{items at a smaller distance} + #{items at its distance with a smaller index} + 1

and the relevant items ranked at or above it are counted the same way. Pass 1
counts, per distance, the items and the relevant items (the distance
histogram); a prefix sum turns it into the rank offset of each distance.
Pass 2 walks the database in index order with one running counter per
distance, which gives each relevant item its rank and its hits exactly, so
AP@K, AP@all and precision@K need no N log N sort (a counting sort, in
effect). Queries run in parallel (numba), each pass reads the packed codes
and labels, so memory stays O(N) per thread.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit, prange

from metrics.inputs import pack_words


class CountedRanking(NamedTuple):
    """Per query (Q rows): AP over the top `top` ranks, AP over all ranks, relevant items in the
    top `top` ranks, relevant items in the top cuts[j] ranks (Q, len(cuts)), and the histogram
    hist[q, h, r] of items at distance h that are relevant (r = 1) or not (r = 0), (Q, B + 1, 2)."""
    ap_k: np.ndarray
    ap_all: np.ndarray
    hits_k: np.ndarray
    hits_at: np.ndarray
    hist: np.ndarray


@njit(inline="always")
def _popcount(x):
    """Set bits of a uint64 (LLVM turns this into one popcnt instruction)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(parallel=True, cache=True)
def _count_ranking(q_codes, d_codes, q_labels, d_labels, n_bits, top, cuts):
    """Packed (Q, W) / (N, W) codes and (Q, V) / (N, V) labels -> the CountedRanking arrays."""
    n_q, n_db = q_codes.shape[0], d_codes.shape[0]
    ap_k, ap_all = np.zeros(n_q), np.zeros(n_q)
    hits_k = np.zeros(n_q, np.int64)
    hits_at = np.zeros((n_q, len(cuts)), np.int64)
    hist = np.zeros((n_q, n_bits + 1, 2), np.int64)
    for q in prange(n_q):
        # pass 1: distance and relevance of every item, and their histogram
        item = np.empty(n_db, np.uint16)                     # 2 * distance + relevant
        for i in range(n_db):
            h = 0
            for w in range(q_codes.shape[1]):
                h += _popcount(q_codes[q, w] ^ d_codes[i, w])
            r = 0
            for w in range(q_labels.shape[1]):
                if q_labels[q, w] & d_labels[i, w]:
                    r = 1
            item[i] = 2 * h + r
            hist[q, h, r] += 1
        # ranks and hits before each distance: prefix sums of the histogram
        ranked = np.empty(n_bits + 1, np.int64)             # items ranked so far, per distance
        hit = np.empty(n_bits + 1, np.int64)                # relevant items ranked so far
        seen = seen_rel = 0
        for h in range(n_bits + 1):
            ranked[h], hit[h] = seen, seen_rel
            seen += hist[q, h, 0] + hist[q, h, 1]
            seen_rel += hist[q, h, 1]
        # pass 2: in index order, each item takes the next rank of its distance
        sum_k = sum_all = 0.0
        n_k = 0
        for i in range(n_db):
            h = item[i] >> 1
            ranked[h] += 1
            if item[i] & 1:
                hit[h] += 1
                precision = hit[h] / ranked[h]              # precision at this relevant item's rank
                sum_all += precision
                if ranked[h] <= top:
                    sum_k += precision
                    n_k += 1
                if len(cuts) and ranked[h] <= cuts[-1]:
                    j = 0
                    while cuts[j] < ranked[h]:
                        j += 1
                    hits_at[q, j] += 1
        for j in range(1, len(cuts)):
            hits_at[q, j] += hits_at[q, j - 1]
        ap_all[q] = sum_all / seen_rel if seen_rel else 0.0
        ap_k[q] = sum_k / n_k if n_k else 0.0
        hits_k[q] = n_k
    return ap_k, ap_all, hits_k, hits_at, hist


def count_ranking(query_signs: torch.Tensor, database_signs: torch.Tensor, query_labels: torch.Tensor,
                  database_labels: torch.Tensor, top: int, cuts=()) -> CountedRanking:
    """+-1 codes (Q, B) and (N, B), bool labels (Q, C) and (N, C) -> CountedRanking.
    top: the K of AP@K (1..N); cuts: ascending ranks at which to count the relevant items."""
    cuts = np.asarray(cuts, dtype=np.int64)
    if query_signs.shape[1] >= 2**15:       # 2 * distance + relevant is stored in 16 bits
        raise ValueError(f"codes of {query_signs.shape[1]} bits: at most 32767 bits are supported")
    if np.any(np.diff(cuts) <= 0):
        raise ValueError(f"cuts must be ascending and distinct, got {cuts.tolist()}")
    # numba's threads follow torch's setting (scripts share the cores out with torch.set_num_threads)
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS)))
    found = _count_ranking(pack_words(query_signs > 0), pack_words(database_signs > 0),
                           pack_words(query_labels), pack_words(database_labels),
                           query_signs.shape[1], top, cuts)
    # numba's OpenMP layer shares torch's OpenMP runtime, and its first launch sets the runtime's
    # thread count to NUMBA_NUM_THREADS: without this, torch would train on more threads than asked
    # from then on (one-thread grid runs oversubscribed the cores after their first scoring)
    torch.set_num_threads(torch_threads)
    return CountedRanking(*found)
