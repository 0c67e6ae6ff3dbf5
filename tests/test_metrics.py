"""evaluate.py's metrics: the definitions by hand, and the fast engines against the definitions."""
import json

import numpy as np
import pytest
import torch

from evaluate import (average_precision, hamming_ranking, precision_at_k, reference_metrics,
                      retrieval_metrics, to_sign_codes)
from metrics.curves import ranking_curves
from tests.oracles import (cosine_map_at_k_loop, pr_by_radius_loop, tie_aware_map_loop,
                           tie_aware_map_patterns, tie_aware_map_rational)

TOL = 1e-9


def map_at_k_loop(q, d, ql, dl, k):
    return reference_metrics(q, d, ql, dl, k, want=("map_k",))["map_k"]


def precision_at_k_loop(q, d, ql, dl, k):
    return reference_metrics(q, d, ql, dl, k, want=("precision_k",))["precision_k"]


def random_problem(n_query, n_db, n_bits, n_labels=5, seed=0):
    """+-1 codes and multi-hot labels; query 0 has no label (nothing relevant)."""
    rng = np.random.default_rng(seed)
    q = np.where(rng.random((n_query, n_bits)) < 0.5, 1.0, -1.0)
    d = np.where(rng.random((n_db, n_bits)) < 0.5, 1.0, -1.0)
    ql = (rng.random((n_query, n_labels)) < 0.25).astype(np.int64)
    dl = (rng.random((n_db, n_labels)) < 0.25).astype(np.int64)
    ql[0] = 0
    return q, d, ql, dl


def test_definitions_by_hand():
    # relevant at ranks 2, 3, 5: precision there 1/2, 2/3, 3/5
    ranked = [False, True, True, False, True]
    assert average_precision(ranked) == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-15)
    assert average_precision(ranked[:3]) == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)   # AP@3
    assert average_precision([False, False]) == 0.0
    assert precision_at_k(ranked, 3) == pytest.approx(2 / 3) and precision_at_k(ranked, 50) == pytest.approx(3 / 5)
    codes = np.array([[1, 1, -1], [-1, -1, 1], [1, -1, -1], [1, 1, -1]], dtype=np.float32)
    # distances from (1, 1, -1): 0, 3, 1, 0 -> rows 0 and 3 tie: ascending row first
    assert hamming_ranking(np.array([1, 1, -1], dtype=np.float32), codes).tolist() == [0, 3, 2, 1]


@pytest.mark.parametrize("n_query, n_db, n_bits, n_labels, k", [
    (20, 300, 4, 5, 10),        # 5 distinct distances: heavy ties
    (25, 500, 8, 5, 50),
    (15, 200, 16, 5, None),     # k=None: whole ranking
    (10, 120, 8, 5, 500),       # k > N
    (12, 5000, 32, 5, 20),
    (30, 1000, 64, 5, 1),       # k = 1
    (9, 700, 5, 5, 30),         # odd code length
    (8, 600, 130, 80, 40),      # codes and labels of several machine words (COCO's 80 labels)
])
def test_matches_the_definitions(n_query, n_db, n_bits, n_labels, k):
    q, d, ql, dl = random_problem(n_query, n_db, n_bits, n_labels=n_labels, seed=n_db)
    got = retrieval_metrics(q, d, ql, dl, k=k)
    want = reference_metrics(q, d, ql, dl, k)
    assert set(got) == {"map_k", "map_all", "precision_k", "k"} and got["k"] == k
    for name in ("map_k", "map_all", "precision_k"):
        assert abs(got[name] - want[name]) < TOL, name
    alone = retrieval_metrics(q, d, ql, dl, k=k, want=("map_k", "precision_k"))
    assert set(alone) == {"map_k", "precision_k", "k"}
    assert alone["map_k"] == got["map_k"] and alone["precision_k"] == got["precision_k"]
    assert all(type(v) is float for name, v in got.items() if name != "k")


def test_long_codes():
    q, d, ql, dl = random_problem(4, 3000, 1024, seed=1)
    got = retrieval_metrics(q, d, ql, dl, k=30)
    want = reference_metrics(q, d, ql, dl, 30)
    assert abs(got["map_k"] - want["map_k"]) < TOL and abs(got["map_all"] - want["map_all"]) < TOL


def test_hand_computed_example():
    q = [[1, 1], [-1, -1]]
    d = [[-1, -1], [1, 1], [1, -1], [1, 1], [-1, 1]]
    ql = [[1, 0], [0, 1]]
    dl = [[1, 0], [0, 1], [1, 0], [1, 1], [0, 0]]
    # query 0: distances 2,0,1,0,1 -> ranking (ties by index) d1 d3 d2 d4 d0,
    #   relevant (label 0): d0 d2 d3 -> ranked relevance 0 1 1 0 1.
    #   AP@3 = (1/2 + 2/3) / 2 = 7/12;  AP@all = (1/2 + 2/3 + 3/5) / 3 = 53/90;
    #   P@3 = 2/3.  (Index-reversed ties would give d3 d1 d4: AP@3 = 1.)
    # query 1: distances 0,2,1,2,1 -> ranking d0 d2 d4 d1 d3,
    #   relevant (label 1): d1 d3 -> ranked relevance 0 0 0 1 1.
    #   AP@3 = 0 (none in the top 3, still counted); AP@all = (1/4 + 2/5) / 2 = 13/40.
    # mAP@3 = 7/24; mAP@all = (53/90 + 13/40) / 2 = 329/720; P@3 = (2/3 + 0) / 2 = 1/3.
    got = retrieval_metrics(q, d, ql, dl, k=3)
    assert got["map_k"] == pytest.approx(7 / 24, abs=1e-12)
    assert got["map_all"] == pytest.approx(329 / 720, abs=1e-12)
    assert got["precision_k"] == pytest.approx(1 / 3, abs=1e-12)
    assert retrieval_metrics(q, d, ql, dl, k=3, chunk_size=1) == got


@pytest.mark.parametrize("k", [5, 40, None])
def test_cosine_matches_loop(k):
    rng = np.random.default_rng(3)
    q = rng.standard_normal((12, 16))
    d = rng.standard_normal((400, 16))
    d[10:400:37] = d[3]        # exact duplicates: ties ordered by index
    d[50] = 0.0                # zero row: similarity 0 to every query
    q[1] = d[3] * 2.0          # a query whose best matches are all tied
    ql = (rng.random((12, 4)) < 0.3).astype(np.float32)
    dl = (rng.random((400, 4)) < 0.3).astype(np.float32)
    got = retrieval_metrics(torch.from_numpy(q), d, ql, dl, k=k, distance="cosine",
                            chunk_size=5)
    assert abs(got["map_k"] - cosine_map_at_k_loop(q, d, ql, dl, k)) < TOL
    assert abs(got["map_all"] - cosine_map_at_k_loop(q, d, ql, dl, None)) < TOL


def test_cosine_ties_by_index():
    # query along x; items 0 and 2 tie at similarity 1, item 1 tied with the
    # zero-similarity item 3 (-0.0 and +0.0 compare equal)
    q = [[1.0, 0.0]]
    d = [[2.0, 0.0], [0.0, 1.0], [5.0, 0.0], [-0.0, -3.0]]
    dl = [[0], [1], [1], [1]]
    got = retrieval_metrics(q, d, [[1]], dl, k=2, distance="cosine")
    # ranking 0, 2, 1, 3 -> relevance 0 1 1 1: AP@2 = (1/2) / 1; AP@all = (1/2 + 2/3 + 3/4) / 3
    assert got["map_k"] == pytest.approx(0.5, abs=1e-12)
    assert got["map_all"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3, abs=1e-12)


def test_cosine_keys_treat_signed_zeros_as_equal():
    from metrics.cosine import _sort_keys
    sim = torch.tensor([[-0.0, 0.0, 0.5, -0.5, -0.0, 1.0]])
    keys = _sort_keys(sim.clone(), torch.zeros(1, 6, dtype=torch.bool),
                        out=torch.empty(1, 6, dtype=torch.int64))
    assert torch.argsort(keys).tolist() == [[5, 2, 0, 1, 4, 3]]


def test_all_items_tied_at_maximal_distance():
    # every database item is the complement of the query: one big tie, so the
    # ranking is the database order
    rng = np.random.default_rng(11)
    q = np.where(rng.random((3, 16)) < 0.5, 1.0, -1.0)
    q[1:] = q[0]
    d = np.repeat(-q[:1], 1000, axis=0)
    ql = np.array([[1, 0], [0, 1], [1, 1]])
    dl = (rng.random((1000, 2)) < 0.3).astype(np.int64)
    for k, want in [(10, ("map_k", "precision_k")), (50, ("map_k", "precision_k")),
                    (10, ("map_k", "map_all", "precision_k")), (None, ("map_k", "precision_k"))]:
        got = retrieval_metrics(q, d, ql, dl, k=k, want=want)
        assert abs(got["map_k"] - map_at_k_loop(q, d, ql, dl, k)) < TOL
        assert abs(got["precision_k"] - precision_at_k_loop(q, d, ql, dl, k)) < TOL


def test_precision_at_k_against_oracle():
    q, d, ql, dl = random_problem(17, 900, 12, seed=7)
    for k in (1, 10, 100, 899, 900, 5000):
        got = retrieval_metrics(q, d, ql, dl, k=k, want="precision_k")
        assert set(got) == {"precision_k", "k"}
        assert abs(got["precision_k"] - precision_at_k_loop(q, d, ql, dl, k)) < TOL


def test_continuous_inputs_equal_their_sign():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((10, 16))
    d = rng.standard_normal((600, 16))
    q[0, :4] = 0.0                  # exact zeros map to +1
    d[:5, :3] = -0.0
    ql = (rng.random((10, 3)) < 0.4).astype(np.int8)
    dl = (rng.random((600, 3)) < 0.4).astype(np.int8)
    signed_q, signed_d = np.where(q >= 0, 1.0, -1.0), np.where(d >= 0, 1.0, -1.0)
    cont = retrieval_metrics(torch.tensor(q, dtype=torch.float32), d, ql, dl, k=20)
    assert cont == retrieval_metrics(signed_q, signed_d, ql, dl, k=20)
    assert abs(cont["map_k"] - map_at_k_loop(signed_q, signed_d, ql, dl, 20)) < TOL


def test_to_sign_codes():
    x = np.array([[0.0, -0.0, -1e-300, 2.0, -3.0]])
    codes = to_sign_codes(x)
    assert codes.dtype == torch.float32
    assert codes.tolist() == [[1.0, 1.0, -1.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match="bool"):
        to_sign_codes(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        to_sign_codes(np.array([[0.5, np.nan]]))


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones((3, 8)), np.ones((5, 6)), np.ones((3, 2)), np.ones((5, 2))), {}, "database"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((4, 2)), np.ones((5, 2))), {}, "query_labels"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((6, 2))), {},
     "database_labels"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((5, 3))), {},
     "database_labels"),
    ((np.ones(8), np.ones((5, 8)), np.ones((1, 2)), np.ones((5, 2))), {}, "query"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((5, 2))), {"k": 0}, "k"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((5, 2))),
     {"chunk_size": 0}, "chunk_size"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((5, 2))),
     {"distance": "l2"}, "distance"),
    ((np.ones((3, 8)), np.ones((5, 8)), np.ones((3, 2)), np.ones((5, 2))),
     {"want": ("map_k", "mrr")}, "want"),
])
def test_bad_arguments_raise(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(*args, **kwargs)


# --- tie-aware mAP (expectation over random orders of equal-distance items) ---

TIES = ("map_k_tie", "map_all_tie")
METRICS_AND_TIES = ("map_k", "map_all", "precision_k", *TIES)


@pytest.mark.parametrize("seed", range(6))
def test_tie_aware_matches_all_permutations(seed):
    # 6-8 items, 2-3 bits: many ties; every cut-off k, so rank k cuts each group
    rng = np.random.default_rng(100 + seed)
    n_db, n_bits = 6 + seed % 3, 2 + seed % 2
    q, d, ql, dl = random_problem(4, n_db, n_bits, n_labels=3, seed=100 + seed)
    dl[rng.random(n_db) < 0.3] = 1          # more relevant items
    want_all = tie_aware_map_loop(q, d, ql, dl, None)
    for k in list(range(1, n_db + 2)) + [None]:
        got = retrieval_metrics(q, d, ql, dl, k=k, want=TIES)
        assert set(got) == {*TIES, "k"} and all(type(got[w]) is float for w in TIES)
        assert abs(got["map_k_tie"] - tie_aware_map_loop(q, d, ql, dl, k)) < TOL, k
        assert abs(got["map_all_tie"] - want_all) < TOL
    alone = retrieval_metrics(q, d, ql, dl, k=3, want="map_k_tie")
    assert set(alone) == {"map_k_tie", "k"}
    assert abs(alone["map_k_tie"] - tie_aware_map_loop(q, d, ql, dl, 3)) < TOL


def test_tie_aware_one_big_tie():
    # all 7 items at the same distance from each query: 7! = 5040 orders
    q = np.array([[1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    d = np.repeat(q[:1], 7, axis=0)
    ql = np.array([[1, 0], [0, 1]])
    dl = np.array([[1, 0], [0, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 0]])
    for k in (1, 3, None):
        got = retrieval_metrics(q, d, ql, dl, k=k, want=TIES)
        assert abs(got["map_k_tie"] - tie_aware_map_loop(q, d, ql, dl, k)) < TOL
    # whole ranking: E[AP] of r relevant among n shuffled, by hand for query 0
    # (3 of 7) and query 1 (2 of 7): (1/r) sum_s (r/n)(1 + (s-1)(r-1)/(n-1)) / s
    def expected(r, n):
        return sum((r / n) * (1 + (s - 1) * (r - 1) / (n - 1)) / s for s in range(1, n + 1)) / r
    assert abs(got["map_all_tie"] - (expected(3, 7) + expected(2, 7)) / 2) < TOL


def test_tie_aware_larger_groups_against_exact_oracles(monkeypatch):
    # groups of up to ~10 items: placements of the relevant items (combinations)
    q, d, ql, dl = random_problem(4, 16, 2, n_labels=3, seed=21)
    for k in (1, 4, 7, 9, 16, None):
        got = retrieval_metrics(q, d, ql, dl, k=k, want=TIES)
        assert abs(got["map_k_tie"] - tie_aware_map_patterns(q, d, ql, dl, k)) < TOL
    # groups of ~40-200 items (hypergeometric over large cut groups): rationals
    q, d, ql, dl = random_problem(5, 600, 4, n_labels=4, seed=22)
    for k in (1, 50, 333, 599, None):
        got = retrieval_metrics(q, d, ql, dl, k=k, want=TIES)
        assert abs(got["map_k_tie"] - tie_aware_map_rational(q, d, ql, dl, k)) < TOL
    from metrics import tie_aware
    monkeypatch.setattr(tie_aware, "_CUT_ELEMENTS", 50)   # the (queries, X) arrays in slices
    again = retrieval_metrics(q, d, ql, dl, k=333, want="map_k_tie")
    assert abs(again["map_k_tie"] - tie_aware_map_rational(q, d, ql, dl, 333)) < TOL
    assert abs(got["map_all_tie"] - tie_aware_map_rational(q, d, ql, dl, None)) < TOL


def test_tie_aware_equals_index_order_without_ties():
    # item i differs from query 0 in i bits (and from query 1 = -query 0 in
    # B - i bits): all distances distinct, so only one ranking exists
    rng = np.random.default_rng(4)
    n_bits = 12
    q0 = np.where(rng.random(n_bits) < 0.5, 1.0, -1.0)
    d = np.array([np.where(np.arange(n_bits) < i, -q0, q0) for i in range(n_bits + 1)])
    d = d[rng.permutation(n_bits + 1)]                  # index order != rank order
    q = np.stack([q0, -q0])
    ql = np.array([[1, 0], [0, 1]])
    dl = (rng.random((n_bits + 1, 2)) < 0.4).astype(int)
    for k in (1, 4, 13, None):
        got = retrieval_metrics(q, d, ql, dl, k=k, want=METRICS_AND_TIES)
        assert abs(got["map_k_tie"] - got["map_k"]) < TOL
        assert abs(got["map_all_tie"] - got["map_all"]) < TOL


def test_tie_aware_continuous_and_cosine():
    q, d, ql, dl = random_problem(23, 3000, 6, seed=8)
    got = retrieval_metrics(q, d, ql, dl, k=100, want=METRICS_AND_TIES)
    assert retrieval_metrics(q, d, ql, dl, k=100) == {w: got[w] for w in ("k", "map_k", "map_all", "precision_k")}
    noisy = q * np.random.default_rng(0).uniform(0.1, 3.0, q.shape)   # same signs
    assert retrieval_metrics(torch.tensor(noisy), d, ql, dl, k=100, want=TIES) == \
        {w: got[w] for w in (*TIES, "k")}
    whole = retrieval_metrics(q, d, ql, dl, k=None, want=TIES)
    assert abs(whole["map_k_tie"] - whole["map_all_tie"]) < TOL
    assert 0.0 <= got["map_k_tie"] <= 1.0
    # cosine: documented to equal the index-ordered values
    cos = retrieval_metrics(noisy, d, ql, dl, k=20, distance="cosine", want=METRICS_AND_TIES)
    assert cos["map_k_tie"] == cos["map_k"] and cos["map_all_tie"] == cos["map_all"]


# --- curves ---

@pytest.mark.parametrize("n_query, n_db, n_bits", [
    (9, 40, 3),        # few radii, everything within radius 3
    (14, 300, 8),      # radius 0 often empty (precision skips queries)
    (6, 50, 16),       # long codes: small radii empty for every query -> None
])
def test_pr_curve_by_radius_matches_loop(n_query, n_db, n_bits):
    q, d, ql, dl = random_problem(n_query, n_db, n_bits, seed=n_db + n_bits)
    got = ranking_curves(torch.tensor(q * 0.3), d, ql, dl)["pr"]
    precision, recall = pr_by_radius_loop(q, d, ql, dl)
    assert got["radius"] == list(range(n_bits + 1))
    for g, w in zip(got["precision"] + got["recall"], precision + recall):
        assert (g is None and w is None) or abs(g - w) < TOL
    assert got["recall"][-1] == pytest.approx(1.0)          # radius B: everything
    assert got["precision_queries"][-1] == n_query
    json.dumps(got, allow_nan=False)                         # plain JSON types


def test_pr_curve_no_relevant_items_anywhere():
    q, d, _, _ = random_problem(3, 20, 4, seed=3)
    got = ranking_curves(q, d, np.zeros((3, 2)), np.ones((20, 2)))["pr"]
    assert got["recall"] == [None] * 5
    assert all(p is None or p == 0.0 for p in got["precision"])


def test_precision_at_k_curve_matches_loop():
    q, d, ql, dl = random_problem(11, 700, 6, seed=12)
    ks = [1, 5, 17, 43, 699, 700, 1000, None]
    got = ranking_curves(torch.tensor(q), d, ql, dl, ks)["pk"]
    assert got["k"] == ks and len(got["precision"]) == len(ks)
    for k, p in zip(ks, got["precision"]):
        assert abs(p - precision_at_k_loop(q, d, ql, dl, k)) < TOL
    unsorted = ranking_curves(q, d, ql, dl, [20, 3, 20, 10])["pk"]      # any order, repeats
    for k, p in zip([20, 3, 20, 10], unsorted["precision"]):
        assert abs(p - precision_at_k_loop(q, d, ql, dl, k)) < TOL
    json.dumps(got, allow_nan=False)
    with pytest.raises(ValueError, match="k"):
        ranking_curves(q, d, ql, dl, [5, 0])
    with pytest.raises(ValueError, match="ks"):
        ranking_curves(q, d, ql, dl, [])



def test_the_ranking_leaves_torch_on_its_thread_count(monkeypatch):
    """numba's OpenMP layer shares torch's runtime, and its first launch in a process sets the runtime
    to NUMBA_NUM_THREADS (seen: torch.get_num_threads() 1 -> 2), so a one-thread training ran on two
    after its first scoring. The kernel is replaced by one that does the same, so the test needs no
    fresh process."""
    from metrics import hamming

    kernel = hamming._count_ranking

    def leaking_kernel(*args):
        torch.set_num_threads(2)
        return kernel(*args)

    monkeypatch.setattr(hamming, "_count_ranking", leaking_kernel)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        signs, labels = torch.ones(4, 8), torch.ones(4, 1, dtype=torch.bool)
        hamming.count_ranking(signs, signs, labels, labels, 2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
