"""Tests for evaluate.py's metric library against the loop oracles."""
import numpy as np
import pytest
import torch

from evaluate import hamming_distance, retrieval_metrics, to_sign_codes
from tests.oracles import (cosine_map_at_k_loop, map_at_k_loop,
                           precision_at_k_loop)

TOL = 1e-9


def random_problem(n_query, n_db, n_bits, n_labels=5, seed=0):
    """+-1 codes and multi-hot labels; query 0 has no label (nothing relevant)."""
    rng = np.random.default_rng(seed)
    q = np.where(rng.random((n_query, n_bits)) < 0.5, 1.0, -1.0)
    d = np.where(rng.random((n_db, n_bits)) < 0.5, 1.0, -1.0)
    ql = (rng.random((n_query, n_labels)) < 0.25).astype(np.int64)
    dl = (rng.random((n_db, n_labels)) < 0.25).astype(np.int64)
    ql[0] = 0
    return q, d, ql, dl


@pytest.mark.parametrize("n_query, n_db, n_bits, k, chunk_size", [
    (20, 300, 4, 10, None),     # 5 distinct distances: heavy ties
    (25, 500, 8, 50, 3),        # ties + chunks of 3 queries (last chunk: 1)
    (15, 200, 16, None, None),  # k=None: whole ranking
    (10, 120, 8, 500, 4),       # k > N
    (12, 5000, 32, 20, 5),      # two-stage top-K search, padded database
    (8, 4096, 64, 100, None),   # two-stage top-K search, no padding
    (30, 1000, 64, 1, 7),       # k = 1
    (9, 700, 5, 30, None),      # odd code length
])
def test_matches_oracle(n_query, n_db, n_bits, k, chunk_size):
    q, d, ql, dl = random_problem(n_query, n_db, n_bits, seed=n_db)
    got = retrieval_metrics(q, d, ql, dl, k=k, chunk_size=chunk_size)
    assert set(got) == {"map_k", "map_all", "precision_k", "k"} and got["k"] == k
    assert abs(got["map_k"] - map_at_k_loop(q, d, ql, dl, k)) < TOL
    assert abs(got["map_all"] - map_at_k_loop(q, d, ql, dl, None)) < TOL
    assert abs(got["precision_k"] - precision_at_k_loop(q, d, ql, dl, k)) < TOL
    # map_k alone takes the top-K path where it can; same values
    alone = retrieval_metrics(q, d, ql, dl, k=k, chunk_size=chunk_size,
                              want=("map_k", "precision_k"))
    assert set(alone) == {"map_k", "precision_k", "k"}
    assert abs(alone["map_k"] - got["map_k"]) < TOL
    assert abs(alone["precision_k"] - got["precision_k"]) < TOL
    assert all(type(v) is float for name, v in got.items() if name != "k")


def test_long_codes_use_exact_float64_keys():
    # N * (B + 1) > 2^24: the sort key no longer fits float32 exactly
    q, d, ql, dl = random_problem(4, 16500, 1024, seed=1)
    got = retrieval_metrics(q, d, ql, dl, k=30)
    assert abs(got["map_k"] - map_at_k_loop(q, d, ql, dl, 30)) < TOL
    assert abs(got["map_all"] - map_at_k_loop(q, d, ql, dl, None)) < TOL


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
    from evaluate import _cosine_keys
    sim = torch.tensor([[-0.0, 0.0, 0.5, -0.5, -0.0, 1.0]])
    keys = _cosine_keys(sim.clone(), torch.zeros(1, 6, dtype=torch.bool),
                        out=torch.empty(1, 6, dtype=torch.int64))
    assert torch.argsort(keys).tolist() == [[5, 2, 0, 1, 4, 3]]


def test_all_items_tied_at_maximal_distance():
    # every database item is the complement of the query: one big tie, so the
    # ranking is the database order (N = 1000 is not a multiple of the search
    # block: padding must never be picked)
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


def test_to_sign_codes_and_hamming_distance():
    x = np.array([[0.0, -0.0, -1e-300, 2.0, -3.0]])
    codes = to_sign_codes(x)
    assert codes.dtype == torch.float32
    assert codes.tolist() == [[1.0, 1.0, -1.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match="bool"):
        to_sign_codes(torch.ones(2, 3, dtype=torch.bool))
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((7, 33)), rng.standard_normal((11, 33))
    dist = hamming_distance(a, torch.from_numpy(b))
    assert dist.dtype == torch.int32 and dist.shape == (7, 11)
    expected = ((a[:, None, :] >= 0) != (b[None, :, :] >= 0)).sum(axis=2)
    assert np.array_equal(dist.numpy(), expected)


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
    with pytest.raises(ValueError, match="database_codes"):
        hamming_distance(np.ones((2, 4)), np.ones((3, 5)))
