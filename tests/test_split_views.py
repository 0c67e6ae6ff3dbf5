"""No whole copy of a split or of a (Q, N) matrix: row selections read their rows when asked, and
UCMFH's unstable ranking scores a chunk of queries at a time."""
import tracemalloc

import numpy as np
import torch

import evaluate
from data.splits import FeatureSplit, hold_out_queries, whole_batches
from metrics import unstable
from parallel import sharded
from parallel.ranks import Ranks


class CountingRows:
    """A column read on demand (as data.lazy's are) that records how many rows each read returns."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.ndim, self.dtype = array.shape, array.ndim, array.dtype

    def __len__(self):
        return len(self.array)

    def __getitem__(self, rows):
        out = np.asarray(self.array[rows])
        self.reads.append(len(out) if out.ndim else 1)
        return out


def lazy_split(rows, width=6):
    """A split whose image, text, ids and captions count their reads; labels in memory."""
    rng = np.random.default_rng(1)
    columns = {"image": rng.standard_normal((rows, width)).astype(np.float32),
               "text": rng.standard_normal((rows, width)).astype(np.float32),
               "ids": np.arange(rows).astype(str), "captions": np.array([f"caption {i}" for i in range(rows)])}
    counted = {name: CountingRows(value) for name, value in columns.items()}
    label = (rng.random((rows, 3)) < 0.5).astype(np.float32)
    return FeatureSplit(counted["image"], counted["text"], label, "lazy.h5", counted["ids"], counted["captions"]), columns


def test_whole_batches_reads_no_row_until_a_batch_is_asked_for():
    split, columns = lazy_split(1000)
    cut = whole_batches(split, 128)
    assert len(cut) == 896 and all(not split_column.reads for split_column in (split.image, split.text, split.ids,
                                                                                 split.captions))
    np.testing.assert_array_equal(cut.image[128:256], columns["image"][128:256])
    assert split.image.reads == [128]                          # one batch, read when asked
    np.testing.assert_array_equal(np.asarray(cut.text), columns["text"][:896])
    assert list(np.asarray(cut.ids)) == list(columns["ids"][:896]) and cut.captions[3] == "caption 3"
    np.testing.assert_array_equal(cut.label, split.label[:896])
    in_memory = FeatureSplit(columns["image"], columns["text"], split.label, "x.pkl")
    assert np.shares_memory(whole_batches(in_memory, 128).image, columns["image"])   # a view, not a copy


def test_hold_out_queries_copies_no_feature_row():
    rng = np.random.default_rng(0)
    rows, width = 6000, 256
    database = FeatureSplit(rng.standard_normal((rows, width), dtype=np.float32),
                            rng.standard_normal((rows, width), dtype=np.float32),
                            (rng.random((rows, 4)) < 0.5).astype(np.float32), "db.pkl")
    tracemalloc.start()
    try:
        val, rest = hold_out_queries(database, 500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    features = database.image.nbytes + database.text.nbytes       # 12 MB
    assert peak < features / 20, f"holding out queries allocated {peak} bytes for {features} bytes of features"
    chosen = np.sort(np.random.default_rng(0).choice(rows, 500, replace=False))   # data.splits' fixed draw
    others = np.setdiff1d(np.arange(rows), chosen)
    np.testing.assert_array_equal(np.asarray(val.image), database.image[chosen])
    np.testing.assert_array_equal(rest.text[1000:1500], database.text[others[1000:1500]])
    np.testing.assert_array_equal(rest.image[[0, 7, 5]], database.image[others[[0, 7, 5]]])
    np.testing.assert_array_equal(rest.label, database.label[others])
    assert rest.image.shape == (5500, width) and len(rest) == 5500 and rest.image[4].shape == (width,)


class BatchEncoder(torch.nn.Module):
    """Stands in for CrossModalHasher.encode_protocols: reads the split batch by batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def encode_protocols(self, split, batch_size, sequence, protocols=None):
        image = torch.cat([torch.from_numpy(np.asarray(split.image[start:start + batch_size]))
                           for start in range(0, len(split), batch_size)])
        return {"paired": (image, image + 1)}


def test_a_ranks_share_reads_its_batches_one_at_a_time_and_no_metadata(monkeypatch):
    monkeypatch.setattr(sharded, "gather_rows", lambda rows, ranks: rows)    # this rank's share alone
    split, columns = lazy_split(1000)
    encode = sharded.sharded_encoder(BatchEncoder(), 100, "item", Ranks(rank=1, world_size=2))
    image, text = encode(split)["paired"]
    torch.testing.assert_close(image, torch.from_numpy(columns["image"][500:]))   # rank 1: batches 5-9
    assert split.image.reads == [100] * 5 and not split.text.reads
    assert not split.ids.reads and not split.captions.reads


def plain_loop(query, database, query_labels, database_labels, top):
    """UCMFH's unstable ranking, one query at a time, written out: per-query AP@top, AP@all, hits."""
    found = {"ap_k": [], "ap_all": [], "hits_k": []}
    for code, labels in zip(query, query_labels):
        order = np.argsort((query.shape[1] - database @ code) / 2)
        relevant = (database_labels[order].astype(np.float32) @ labels.astype(np.float32)) > 0
        found["ap_k"].append(evaluate.average_precision(relevant[:top]))
        found["ap_all"].append(evaluate.average_precision(relevant))
        found["hits_k"].append(relevant[:top].sum())
    return found


def test_unstable_ranking_never_holds_a_queries_by_database_matrix(monkeypatch):
    rng = np.random.default_rng(2)
    queries, items, bits = 96, 20000, 8                          # 8 bits: many ties, so the sort's order counts
    query = np.where(rng.random((queries, bits)) < 0.5, 1.0, -1.0).astype(np.float32)
    database = np.where(rng.random((items, bits)) < 0.5, 1.0, -1.0).astype(np.float32)
    query_labels, database_labels = rng.random((queries, 5)) < 0.2, rng.random((items, 5)) < 0.2
    whole = queries * items * 4                                  # one (Q, N) float32 matrix: 7.7 MB
    monkeypatch.setattr(unstable, "_CHUNK_BYTES", whole // 16, raising=False)
    tracemalloc.start()
    try:
        found = unstable.unstable_ranking_metrics(query, database, query_labels, database_labels, 50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < whole / 3, f"peak {peak} bytes against {whole} bytes for one (Q, N) float32 matrix"
    checked = 32                                                 # 16 chunks of 2 queries: their seams included
    expected = plain_loop(query[:checked], database, query_labels[:checked], database_labels, 50)
    for name, values in expected.items():
        np.testing.assert_allclose(found[name][:checked], values, rtol=0, atol=1e-12)


def test_bench_unstable_prints_the_peak_memory_next_to_one_queries_by_database_matrix(capsys):
    import bench_unstable_cli

    assert bench_unstable_cli.main(["--queries", "6", "--database", "300", "--bits", "8"]) == 0
    out = capsys.readouterr().out
    assert "Q=6 N=300" in out and "one (Q, N) float32 matrix:" in out and "peak memory allocated in the call:" in out


def test_whole_batches_of_a_split_smaller_than_one_batch_is_a_one_line_error():
    import pytest
    from data.errors import DataError

    split, _ = lazy_split(100)
    assert len(whole_batches(split, 64)) == 64
    with pytest.raises(DataError, match=r"--eval_drop_last: lazy.h5 has 100 rows, fewer than one batch of "
                                        r"--eval_batch_size 128"):
        whole_batches(split, 128)
