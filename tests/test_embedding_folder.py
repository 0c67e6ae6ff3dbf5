"""clip-retrieval's embedding folder as a dataset (data/embedding_folder.py) and the .npy shard
reader behind it (data.lazy.NpyRows): read, train without labels, index, and the errors."""
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import evaluate
import train
from config import build_config
from data import DataError, load_dataset
from data.lazy import NpyRows
from data.readers import load_split_file
from data.streaming import streams
from hashindex.index_file import load_index

import build_index_cli

SHARDS = (70, 0, 90)          # rows per shard: an empty shard in the middle must not break row counting


def embedding_folder(root, metadata=True, key=True):
    """<root>/clipset in clip-retrieval's layout: three float16 shards of 16-d image and 12-d text
    embeddings, with parquet metadata (key, caption, image_path)."""
    folder = root / "clipset"
    rng = np.random.default_rng(3)
    for kind in ("img_emb", "text_emb", "metadata"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    first = 0
    for shard, rows in enumerate(SHARDS):
        topic = rng.integers(0, 4, rows)                       # a hidden topic the two sides share
        np.save(folder / "img_emb" / f"img_emb_{shard}.npy",
                (np.eye(4, 16)[topic] * 3 + rng.standard_normal((rows, 16))).astype(np.float16))
        np.save(folder / "text_emb" / f"text_emb_{shard}.npy",
                (np.eye(4, 12)[topic] * 3 + rng.standard_normal((rows, 12))).astype(np.float16))
        if metadata:
            columns = {"caption": [f"caption {first + i}" for i in range(rows)],
                       "image_path": [f"images/{first + i:05d}.jpg" for i in range(rows)]}
            if key:
                columns["key"] = [f"k{first + i:05d}" for i in range(rows)]
            pq.write_table(pa.table(columns), folder / "metadata" / f"metadata_{shard}.parquet")
        first += rows
    return folder


def stacked(folder, kind):
    return np.concatenate([np.load(folder / kind / f"{kind}_{i}.npy") for i in range(len(SHARDS))]).astype(np.float32)


def test_npy_rows_reads_slices_and_index_arrays_across_shards(tmp_path):
    folder = embedding_folder(tmp_path, metadata=False)
    rows = NpyRows([folder / "img_emb" / f"img_emb_{i}.npy" for i in range(len(SHARDS))])
    expected = stacked(folder, "img_emb")
    assert rows.shape == (160, 16) and rows.stored_dtype == np.float16 and len(rows) == 160
    assert np.array_equal(rows[:], expected) and rows[:].dtype == np.float32
    for part in (slice(60, 80), slice(69, 71), slice(150, 400), slice(5, 5), slice(-3, None)):
        assert np.array_equal(rows[part], expected[part])
    picked = np.array([159, 3, 4, 5, 70, 69, 0, 5])             # any order, repeats, across shards
    assert np.array_equal(rows[picked], expected[picked])
    assert np.array_equal(np.concatenate(list(rows.blocks(50))), expected)
    with pytest.raises(IndexError):
        rows[[160]]


def test_npy_rows_rejects_bad_files_with_the_file_named(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "one_d.npy", np.zeros(5, np.float32))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(np.zeros((3, 4), np.float32)))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    for name, problem in (("objects", "2-D numeric"), ("one_d", "2-D numeric"), ("fortran", "Fortran"),
                          ("junk", "not a readable .npy"), ("absent", "not found")):
        with pytest.raises(DataError, match=rf"{name}\.npy: .*{problem}"):
            NpyRows([tmp_path / f"{name}.npy"])
    np.save(tmp_path / "short.npy", np.zeros((10, 4), np.float32))
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-20])
    with pytest.raises(DataError, match=r"short\.npy: file is shorter"):
        NpyRows([tmp_path / "short.npy"])[:]


def npy_with_header(path, header: str, data: bytes = bytes(64)):
    """A version 1.0 .npy file whose header dict is `header` as written, padded as numpy pads it."""
    text = header.encode("latin1")
    pad = -(10 + len(text) + 1) % 64
    path.write_bytes(b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text + b" " * pad
                     + b"\n" + data)


@pytest.mark.parametrize("shape, descr, problem", [
    ("(-5, 4)", "<f4", "negative"), ("(5, -4)", "<f4", "negative"), ("(-5, -4)", "<f4", "negative"),
    ("(10**15, 4)", "<f4", "shorter"), ("(4, 2**62)", "<f4", "shorter"),
    ("(2, 4)", "<f17", "not a readable .npy"), ("(2, 4)", "zz", "not a readable .npy")])
def test_npy_headers_with_impossible_shapes_or_dtypes_name_the_file(tmp_path, shape, descr, problem):
    """A header is a promise the file must keep: negative dimensions, more data than the file holds
    (64 bytes here) and dtypes numpy has no name for are one-line DataErrors naming the file."""
    shape = repr(eval(shape))   # the header holds the integers written out
    npy_with_header(tmp_path / "crafted.npy", f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    with pytest.raises(DataError, match=rf"crafted\.npy: .*{problem}") as caught:
        rows = NpyRows([tmp_path / "crafted.npy"])
        rows[:len(rows)]
    assert "\n" not in str(caught.value)
    # the same header as an .npz split's member (numpy reads it): the file and the key named
    with zipfile.ZipFile(tmp_path / "train.npz", "w") as archive:
        archive.write(tmp_path / "crafted.npy", "image.npy")
        for key in ("text", "label"):
            archive.writestr(f"{key}.npy", (tmp_path / "crafted.npy").read_bytes())
    with pytest.raises(DataError, match=r"train\.npz: key 'image' cannot be read"):
        load_split_file(tmp_path / "train.npz")


def test_a_shard_with_a_negative_row_count_is_named_when_the_set_loads(tmp_path):
    folder = embedding_folder(tmp_path, metadata=False)
    npy_with_header(folder / "img_emb" / "img_emb_1.npy", "{'descr': '<f2', 'fortran_order': False, 'shape': (-3, 16), }")
    with pytest.raises(DataError, match=r"img_emb_1\.npy: .*negative"):
        load_dataset("clipset", tmp_path)


def test_embedding_folder_loads_as_a_set_without_labels(tmp_path):
    folder = embedding_folder(tmp_path)
    data = load_dataset("clipset", tmp_path)
    assert not data.labelled and data.num_labels == 0
    assert data.train.captions._values is None           # metadata is read when asked for, not to train
    assert isinstance(data.train.image, NpyRows)                      # read on demand, not loaded
    assert data.train is data.retrieval and len(data.train) == 160 and len(data.query) == 160
    assert np.array_equal(np.asarray(data.retrieval.text), stacked(folder, "text_emb"))
    assert data.train.ids[70] == "k00070" and data.train.captions[159] == "caption 159"
    assert data.train.image_paths[0] == "images/00000.jpg" and data.query.ids[-1] == "k00159"
    head = data.train.ids.head(75)                         # a prefix reads the shards it needs
    assert len(head) == 75 and head.tolist()[-1] == "k00074"
    cfg = build_config(["--dataset", "clipset", "--data_root", str(tmp_path), "--stream_min_gb", "0"])
    assert streams(cfg, data.train, len(data.train))                  # large .npy sets stream on their own
    # keys that repeat cannot be ids: the row numbers stand in
    pq.write_table(pa.table({"key": ["same"] * 90}), folder / "metadata" / "metadata_2.parquet")
    assert load_dataset("clipset", tmp_path).train.ids[-2:].tolist() == ["158", "159"]
    # without metadata: row numbers as ids, no captions
    (tmp_path / "bare").mkdir()
    for kind in ("img_emb", "text_emb"):
        (folder / kind).rename(tmp_path / "bare" / kind)
    bare = load_dataset("bare", tmp_path)
    assert bare.train.ids is None and bare.train.captions is None and bare.train.image_paths is None


def test_embedding_folder_errors_name_the_file(tmp_path):
    folder = embedding_folder(tmp_path)
    (folder / "text_emb" / "text_emb_2.npy").rename(folder / "text_emb" / "text_emb_3.npy")
    with pytest.raises(DataError, match="different shards"):
        load_dataset("clipset", tmp_path)
    np.save(folder / "text_emb" / "text_emb_2.npy", np.zeros((89, 12), np.float16))
    (folder / "text_emb" / "text_emb_3.npy").unlink()
    with pytest.raises(DataError, match=r"text_emb_2\.npy: 89 rows, but .*img_emb_2\.npy has 90"):
        load_dataset("clipset", tmp_path)
    bad = np.zeros((90, 12), np.float16)
    bad[4, 1] = np.nan
    np.save(folder / "text_emb" / "text_emb_2.npy", bad)
    with pytest.raises(DataError, match=r"text_emb: key 'text_emb' has NaN or inf values in 1 of 160 rows"):
        load_dataset("clipset", tmp_path)
    np.save(folder / "text_emb" / "text_emb_2.npy", np.zeros_like(bad))
    pq.write_table(pa.table({"caption": ["x"] * 5}), folder / "metadata" / "metadata_2.parquet")
    with pytest.raises(DataError, match=r"metadata_2\.parquet: 5 rows, but its embedding shards have 90"):
        load_dataset("clipset", tmp_path)
    for kind in ("text_emb",):
        for path in (folder / kind).iterdir():
            path.unlink()
    with pytest.raises(DataError, match="needs both image and text embeddings; no text_emb/text_emb_0.npy"):
        load_dataset("clipset", tmp_path)


def test_a_set_without_labels_trains_indexes_and_refuses_to_score(tmp_path, capsys):
    embedding_folder(tmp_path)
    args = ["--dataset", "clipset", "--data_root", str(tmp_path), "--hash_lens", "16", "--epoch", "1",
            "--unimodal_epochs", "1", "--balanced_neighbours", "covariance", "--fusion_dim", "32", "--fusion_ff_dim", "32", "--hash_hidden", "32",
            "--batch_size", "32", "--stream_train", "on", "--stream_block_rows", "48",
            "--output_dir", str(tmp_path / "run"), "--checkpoint_dir", str(tmp_path / "ck")]
    [result] = train.main(args)
    out = capsys.readouterr().out
    assert "160 training pairs, no labels (training and indexing only; 160 database items)" in out
    assert "training without scoring" in out
    assert "i2t_map" not in result and result["epoch"] == 2
    assert json.loads((tmp_path / "run" / "results.json").read_text())["num_train"] == 160
    checkpoint = tmp_path / "ck" / "hash" / "clipset_hash_16.pth"
    with pytest.raises(SystemExit):
        train.main([*args, "--task", "test_hash"])
    assert capsys.readouterr().err.startswith("error: scoring ")
    with pytest.raises(DataError, match=r"scoring .*clipset_hash_16\.pth needs labels, and clipset .* has none"):
        evaluate.score_checkpoint(build_config([*args, "--task", "test_hash"]), 16)
    with pytest.raises(SystemExit):
        train.main([*args, "--val_queries", "10"])
    assert "--val_queries needs labels" in capsys.readouterr().err
    out_path = build_index_cli.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "clip.npz")])
    index = load_index(out_path)
    assert index.size == 160 and index.labels is None and index.ids[0] == "k00000"
    assert index.captions[5] == "caption 5" and index.image_paths[5].endswith("clipset/images/00005.jpg")
    assert index.meta["image_root"] == str(tmp_path / "clipset" / "images")


def test_index_details_come_from_the_features_items_json(tmp_path):
    from data.splits import FeatureSplit
    from hashindex.build import image_root, item_details

    (tmp_path / "items.json").write_text(json.dumps({"a": {"image": "/d/x/1.jpg", "caption": "one"},
                                                     "c": {"image": "/d/y/3.jpg", "caption": "three"}}))
    rows = FeatureSplit(np.zeros((3, 2)), np.zeros((3, 2)), None, "t", ids=np.array(["a", "b", "c"]))
    captions, paths = item_details(tmp_path, rows)
    assert captions.tolist() == ["one", "", "three"] and paths.tolist() == ["/d/x/1.jpg", "", "/d/y/3.jpg"]
    assert image_root(paths) == "/d" and image_root(None) is None
    (tmp_path / "items.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"items\.json: expected an object"):
        item_details(tmp_path, rows)
