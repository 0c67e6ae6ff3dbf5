"""The code index file (hashindex/index_file.py), Hamming search (hashindex/hamming_search.py),
scripts/bench_index.py."""
import json
import sys
import zipfile

import numpy as np
import pytest
import torch

from hashindex.hamming_search import (FaissUnavailableError, HammingSearcher, faiss_available, make_searcher,
                                      store_approximate)
from hashindex.index_file import CodeIndex, IndexFileError, load_index, pack_codes, save_index

import bench_index_cli


def unpack_codes(packed, bits):
    """(N, ceil(B/8)) packed codes -> (N, B) float32 +-1 (the inverse of pack_codes)."""
    return np.unpackbits(packed, axis=1, count=bits, bitorder="big").astype(np.float32) * 2 - 1


def random_packed(rng, n, bits):
    return pack_codes(rng.standard_normal((n, bits)))


def clustered_packed(rng, n, bits=64, clusters=30):
    """Codes with real neighbourhoods: sign of a projected Gaussian mixture."""
    centres, projection = bench_index_cli.mixture(bits, 32, clusters, rng)
    return bench_index_cli.draw_codes(n, centres, projection, 0.7, rng, "test")


def brute_force(database, queries, bits, k):
    """Plain loop: the k rows of smallest (Hamming distance, row), with their distances."""
    db_bits = unpack_codes(database, bits) > 0
    out_d, out_r = [], []
    for q in unpack_codes(queries, bits) > 0:
        dist = [int(np.count_nonzero(q != row)) for row in db_bits]
        rows = sorted(range(len(dist)), key=lambda r: (dist[r], r))[:k]
        out_r.append(rows)
        out_d.append([dist[r] for r in rows])
    return np.array(out_d, dtype=np.int32), np.array(out_r, dtype=np.int64)


def small_index(rng, n=40, bits=13):
    return CodeIndex(
        bits=bits, ids=np.array([f"img{i:03d}" for i in range(n)]),
        codes={"image": random_packed(rng, n, bits), "text": random_packed(rng, n, bits)},
        meta={"checkpoint": {"path": "ck.pt", "sha256": "ab" * 32}, "protocol": "wiki", "bits": bits},
        labels=(rng.random((n, 5)) < 0.3).astype(np.uint8), label_names=list("abcde"),
        captions=np.array([f"caption {i} é" for i in range(n)]),
        image_paths=np.array([f"/images/img{i:03d}.jpg" for i in range(n)]))


# ---------------------------------------------------------------- packing

@pytest.mark.parametrize("bits", [1, 7, 8, 13, 64, 65])
def test_pack_unpack_round_trip(bits):
    signs = np.where(np.random.default_rng(bits).random((9, bits)) < 0.5, -1.0, 1.0)
    packed = pack_codes(signs)
    assert packed.dtype == np.uint8 and packed.shape == (9, (bits + 7) // 8)
    assert np.array_equal(unpack_codes(packed, bits), signs.astype(np.float32))
    assert np.array_equal(pack_codes(torch.from_numpy(signs)), packed)


def test_pack_sign_convention_and_bit_order():
    values = np.array([[0.0, -0.0, -1e-300, 2.0, -3.0, 0.5, -0.5, 1.0, 0.0]])
    # zeros -> bit 1, negatives -> 0; big-endian: the first value is the high bit
    assert pack_codes(values).tolist() == [[0b11010101, 0b10000000]]
    assert unpack_codes(pack_codes(values), 9).tolist() == [[1, 1, -1, 1, -1, 1, -1, 1, 1]]


def test_pack_rejects_bool_nan_and_1d():
    with pytest.raises(ValueError, match="bool"):
        pack_codes(np.ones((2, 8), dtype=bool))
    with pytest.raises(ValueError, match="bool"):
        pack_codes(torch.ones(2, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        pack_codes(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        pack_codes(np.ones(8))


# ---------------------------------------------------------------- file format

def test_save_load_round_trip(tmp_path):
    index = small_index(np.random.default_rng(0))
    path = tmp_path / "sub" / "index.npz"
    save_index(path, index)
    loaded = load_index(path)
    assert loaded.bits == 13 and loaded.size == 40 and loaded.meta == index.meta
    assert loaded.label_names == list("abcde")
    for name in ("ids", "labels", "captions", "image_paths"):
        assert np.array_equal(getattr(loaded, name), getattr(index, name))
        assert getattr(loaded, name).dtype == getattr(index, name).dtype
    assert sorted(loaded.codes) == ["image", "text"]
    queries = random_packed(np.random.default_rng(1), 5, 13)
    for modality in ("image", "text"):
        assert np.array_equal(loaded.codes[modality], index.codes[modality])
        before = HammingSearcher(index.codes[modality], 13, backend="numpy").search(queries, 7)
        after = make_searcher(loaded, modality, backend="numpy").search(queries, 7)
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert loaded.row_of("img017") == 17
    with pytest.raises(KeyError, match="'img000' ... 'img039'"):
        loaded.row_of("nope")
    assert [p.name for p in path.parent.iterdir()] == ["index.npz"]     # no temporary left


def test_index_files_from_numpy_before_2_2_load(tmp_path, monkeypatch):
    # numpy 2.0 and 2.1 have no allow_pickle keyword in savez: every keyword is an array to store
    def savez_before_2_2(file, *args, **arrays):
        with zipfile.ZipFile(file, "w") as archive:
            for key, value in arrays.items():
                with archive.open(key + ".npy", "w") as handle:
                    np.lib.format.write_array(handle, np.asanyarray(value))

    monkeypatch.setattr(np, "savez", savez_before_2_2)
    index = small_index(np.random.default_rng(0))
    save_index(tmp_path / "index.npz", index)
    loaded = load_index(tmp_path / "index.npz")
    assert loaded.meta == index.meta and np.array_equal(loaded.codes["text"], index.codes["text"])


def test_save_rejects_inconsistent_index(tmp_path):
    path = tmp_path / "bad.npz"
    index = small_index(np.random.default_rng(0))
    index.codes["text"] = index.codes["text"][:-1]
    with pytest.raises(IndexFileError, match=r"bad\.npz: key 'codes_text' must be 2-D uint8 with 40 rows"):
        save_index(path, index)
    index = small_index(np.random.default_rng(0))
    index.ids[3] = index.ids[4]
    with pytest.raises(IndexFileError, match="duplicate"):
        save_index(path, index)
    index = small_index(np.random.default_rng(0))
    index.image_paths = index.image_paths[:-1]
    with pytest.raises(IndexFileError, match=r"key 'image_paths' must be 1-D unicode with 40 rows"):
        save_index(path, index)
    index = small_index(np.random.default_rng(0))
    index.approximate["image"] = np.zeros(10, np.uint8)                # no kind in meta
    with pytest.raises(IndexFileError, match=r"meta\['approximate'\]"):
        save_index(path, index)
    assert not path.exists()


def _rewrite(path, change):
    """Rewrite the npz at `path` with change(arrays) applied (a raw np.savez, no validation)."""
    with np.load(path) as archive:
        arrays = dict(archive)
    change(arrays)
    with open(path, "wb") as handle:
        np.savez(handle, allow_pickle=True, **arrays)


def _write_npy(path):
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))


CORRUPTIONS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a readable"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable"),
    "npy not npz": (_write_npy, "not an .npz"),
    "missing key": (lambda p: _rewrite(p, lambda a: a.pop("bits")), "missing key 'bits'"),
    "wrong dtype": (lambda p: _rewrite(p, lambda a: a.update(codes_image=a["codes_image"].astype(np.int16))),
                    "key 'codes_image' must be 2-D uint8"),
    "wrong width": (lambda p: _rewrite(p, lambda a: a.update(codes_text=np.zeros((40, 3), np.uint8))),
                    r"key 'codes_text' must be 2-D uint8 with 40 rows and 2 columns, got shape \(40, 3\)"),
    "rows mismatch": (lambda p: _rewrite(p, lambda a: a.update(captions=a["captions"][:-2])),
                      "key 'captions' must be 1-D unicode with 40 rows"),
    "padding bits": (lambda p: _rewrite(p, lambda a: a["codes_image"].__setitem__((0, 1), 0xFF)),
                     "padding bits"),
    "bad version": (lambda p: _rewrite(p, lambda a: a.update(format_version=np.array(99))),
                    "unsupported format_version 99"),
    "bad meta json": (lambda p: _rewrite(p, lambda a: a.update(meta_json=np.array("{oops"))),
                      "key 'meta_json' is not valid JSON"),
    "meta not a dict": (lambda p: _rewrite(p, lambda a: a.update(meta_json=np.array("[1]"))),
                        "JSON object"),
    "unexpected key": (lambda p: _rewrite(p, lambda a: a.update(extra=np.zeros(1))),
                       "unexpected key 'extra'"),
    "object array": (lambda p: _rewrite(p, lambda a: a.update(ids=a["ids"].astype(object))),
                     "key 'ids' is unreadable"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_files_raise_index_file_error(tmp_path, corruption):
    path = tmp_path / "index.npz"
    save_index(path, small_index(np.random.default_rng(0)))
    corrupt, message = CORRUPTIONS[corruption]
    corrupt(path)
    with pytest.raises(IndexFileError, match=message) as caught:
        load_index(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_crc_error_and_missing_file(tmp_path):
    path = tmp_path / "index.npz"
    index = small_index(np.random.default_rng(0))
    save_index(path, index)
    raw = bytearray(path.read_bytes())
    at = raw.find(index.captions.tobytes())          # inside the stored 'captions' member
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match=r"index\.npz: key 'captions' is unreadable .*CRC"):
        load_index(path)
    with pytest.raises(IndexFileError, match=r"nothere\.npz: no such file"):
        load_index(tmp_path / "nothere.npz")


# ---------------------------------------------------------------- exact search

@pytest.mark.parametrize("bits", [5, 16, 24, 40, 64, 130])
def test_numpy_exact_matches_brute_force(bits):
    rng = np.random.default_rng(bits)
    database, queries = random_packed(rng, 300, bits), random_packed(rng, 6, bits)
    searcher = HammingSearcher(database, bits, backend="numpy")
    for k in (1, 10, 300, 1000):
        dist, rows = searcher.search(queries, k)
        expected = brute_force(database, queries, bits, min(k, 300))
        assert dist.dtype == np.int32 and rows.dtype == np.int64
        assert np.array_equal(dist, expected[0]) and np.array_equal(rows, expected[1])


def test_faiss_flat_and_numpy_agree_on_ties():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    database, queries = random_packed(rng, 3000, 16), random_packed(rng, 12, 16)   # many ties
    numpy_searcher = HammingSearcher(database, 16, backend="numpy")
    faiss_searcher = HammingSearcher(database, 16, backend="faiss")
    assert (numpy_searcher.backend, faiss_searcher.backend) == ("numpy", "faiss")
    for k in (1, 10, 100, 3000):
        from_numpy = numpy_searcher.search(queries, k)
        from_faiss = faiss_searcher.search(queries, k)
        expected = brute_force(database, queries, 16, k)
        for found in (from_numpy, from_faiss):
            assert np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])
    one_by_one = np.concatenate([faiss_searcher.search(q[None], 10)[1] for q in queries])
    assert np.array_equal(one_by_one, numpy_searcher.search(queries, 10)[1])


def test_search_input_checks():
    rng = np.random.default_rng(0)
    searcher = HammingSearcher(random_packed(rng, 20, 12), 12, backend="numpy")
    with pytest.raises(ValueError, match=r"queries must be \(rows, 2\) uint8"):
        searcher.search(np.zeros((1, 3), np.uint8), 5)
    with pytest.raises(ValueError, match="padding bits"):
        searcher.search(np.full((1, 2), 0xFF, np.uint8), 5)
    with pytest.raises(ValueError, match="k must be a positive int"):
        searcher.search(random_packed(rng, 1, 12), 0)
    with pytest.raises(ValueError, match="approximate and needs faiss"):
        HammingSearcher(random_packed(rng, 20, 12), 12, kind="hnsw", backend="numpy")
    with pytest.raises(ValueError, match="kind must be one of"):
        HammingSearcher(random_packed(rng, 20, 12), 12, kind="lsh")


# ---------------------------------------------------------------- approximate search

@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_on_clustered_codes(kind):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    database, queries = clustered_packed(rng, 3000), clustered_packed(rng, 30)
    searcher = HammingSearcher(database, 64, kind=kind)
    dist, rows = searcher.search(queries, 10)
    exact_dist, exact_rows = HammingSearcher(database, 64, backend="numpy").search(queries, 10)
    assert rows.shape == (30, 10) and (rows >= 0).all()
    true_dist = np.array([[int(np.unpackbits(database[r] ^ q).sum()) for r in row]
                          for row, q in zip(rows, queries)])
    assert np.array_equal(dist, true_dist)                 # the distances are the real ones
    assert (np.diff(dist, axis=1) >= 0).all()
    overlap = np.mean([len(np.intersect1d(a, e)) / 10 for a, e in zip(rows, exact_rows)])
    tie_aware = np.mean([min(10, (d <= e[-1]).sum()) / 10 for d, e in zip(dist, exact_dist)])
    assert overlap >= 0.6 and tie_aware >= 0.8, (overlap, tie_aware)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_stored_approximate_index_round_trip(tmp_path, kind):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    index = small_index(rng, n=2000, bits=64)
    index.codes["image"] = clustered_packed(rng, 2000)
    queries = clustered_packed(rng, 8)
    built = HammingSearcher(index.codes["image"], 64, kind=kind, hnsw_ef_search=40, ivf_nprobe=4)
    store_approximate(index, "image", built)
    assert index.meta["approximate"]["image"]["kind"] == kind
    save_index(tmp_path / "index.npz", index)
    loaded = load_index(tmp_path / "index.npz")
    reloaded = make_searcher(loaded, "image")
    assert reloaded.kind == kind and reloaded.describe() == built.describe()
    assert all(np.array_equal(a, b) for a, b in zip(reloaded.search(queries, 10), built.search(queries, 10)))
    assert make_searcher(loaded, "image", kind="flat").exact                 # asked: exact
    assert make_searcher(loaded, "text").exact                              # nothing stored
    with pytest.raises(ValueError, match="not built over"):
        store_approximate(index, "text", built)
    with pytest.raises(ValueError, match="does not match"):
        HammingSearcher.from_serialized(index.codes["image"][:-1], 64, kind, loaded.approximate["image"])


def test_without_faiss_exact_search_falls_back_to_numpy(monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    database, queries = random_packed(rng, 500, 16), random_packed(rng, 5, 16)
    index = CodeIndex(bits=16, ids=np.array([str(i) for i in range(500)]), codes={"image": database})
    if faiss_available():       # store an HNSW index while faiss is still there
        store_approximate(index, "image", HammingSearcher(database, 16, kind="hnsw"))
    save_index(tmp_path / "index.npz", index)
    monkeypatch.setitem(sys.modules, "faiss", None)          # `import faiss` now fails
    assert not faiss_available()
    searcher = HammingSearcher(database, 16)
    assert searcher.backend == "numpy"
    expected = brute_force(database, queries, 16, 20)
    assert all(np.array_equal(a, b) for a, b in zip(searcher.search(queries, 20), expected))
    loaded = load_index(tmp_path / "index.npz")
    if loaded.approximate:
        with pytest.warns(UserWarning, match="faiss is not installed"):
            fallback = make_searcher(loaded, "image")
    else:
        fallback = make_searcher(loaded, "image")
    assert fallback.exact and fallback.backend == "numpy"
    assert all(np.array_equal(a, b) for a, b in zip(fallback.search(queries, 20), expected))
    for kind in ("hnsw", "ivf"):
        with pytest.raises(FaissUnavailableError, match="pip install faiss-cpu"):
            make_searcher(loaded, "image", kind=kind)
    with pytest.raises(FaissUnavailableError, match="pip install faiss-cpu"):
        HammingSearcher(database, 16, backend="faiss")


# ---------------------------------------------------------------- benchmark script

def test_bench_index_small_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_index_cli.main(["--n", "5000", "--queries", "20", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"config", "methods", "files"}
    methods = {m["method"]: m for m in result["methods"]}
    for row in methods.values():
        assert {"build_s", "bytes_per_item", "latency_ms_median", "latency_ms_p99"} <= set(row)
    if faiss_available():
        assert set(methods) == {"exact numpy", "exact faiss flat", "faiss hnsw", "faiss ivf"}
        assert methods["exact faiss flat"]["identical_to_numpy"] is True
        for name in ("faiss hnsw", "faiss ivf"):
            assert 0 < methods[name]["recall_at_k"] <= methods[name]["recall_at_k_tie"] <= 1
    assert all(f["bytes"] > 0 and f["load_s"] >= 0 for f in result["files"])
    assert "median ms" in capsys.readouterr().out


def test_bench_index_runs_the_chosen_methods_and_reports_peak_memory(tmp_path, capsys):
    pytest.importorskip("faiss")
    out = tmp_path / "bench.json"
    assert bench_index_cli.main(["--n", "3000", "--queries", "10", "--methods", "faiss-ivf", "faiss-flat",
                                 "--no_files", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    methods = [m["method"] for m in result["methods"]]
    assert methods == ["exact faiss flat", "faiss ivf"] and result["files"] == []   # the exact one first
    assert 0 < result["methods"][1]["recall_at_k"] <= 1
    assert all(0 < m["peak_rss_gb"] < 64 for m in result["methods"])
    assert "peak resident memory of this process" in capsys.readouterr().out


def test_codes_are_encoded_and_packed_a_block_at_a_time_to_the_same_bits():
    from data.splits import FeatureSplit
    from hashindex.build import encode_packed
    from hashindex.index_file import pack_codes
    from test_unimodal import tiny_model

    model = tiny_model()
    rng = np.random.default_rng(0)
    rows = FeatureSplit(rng.standard_normal((10, 12)).astype(np.float32),
                        rng.standard_normal((10, 10)).astype(np.float32), np.ones((10, 2), np.float32), "test")
    for protocol in ("paired", "unimodal"):
        whole = [pack_codes(side) for side in model.encode_split(rows, protocol, 4)]
        streamed = encode_packed(model, rows, protocol, batch_size=2, block=3)   # blocks of 3, 3, 3, 1
        for a, b in zip(whole, streamed):
            assert b.dtype == np.uint8 and np.array_equal(a, b)
