"""Tests for the data package: formats, validation, safe unpickling, demo, wiki."""

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from data.lazy import LazyRows
from data import (ALIASES, KNOWN_DATASETS, DataError, DatasetSplits, canonical_dataset_name,
                  load_dataset, load_split_file, make_demo_dataset, safe_load_pickle)

SHARED_WIKI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wiki"


# --------------------------------------------------------------- helpers
def make_arrays(n=6, di=8, dt=5, c=4, seed=0):
    rng = np.random.default_rng(seed)
    label = (rng.random((n, c)) < 0.4).astype(np.int64)
    label[:, 0] = 1  # every row has a label
    return {"image": rng.standard_normal((n, di)).astype(np.float32),
            "text": rng.standard_normal((n, dt)),  # float64, converted on load
            "label": label}


def write_split(path, arrays):
    """Write ``arrays`` to ``path`` in the format its suffix names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(arrays, protocol=4))
    elif path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as handle:
            for key, value in arrays.items():
                handle[key] = value
    return path


def write_dataset(root, name="mine", ext=".pkl", overrides=None):
    """Write a valid three-split dataset; ``overrides`` = {split: arrays}."""
    overrides = overrides or {}
    for seed, split in enumerate(("train", "query", "retrieval")):
        arrays = overrides.get(split, make_arrays(n=6 + seed, seed=seed))
        write_split(Path(root) / name / f"{split}{ext}", arrays)
    return Path(root) / name


def load_error(*args, **kwargs):
    with pytest.raises(DataError) as info:
        load_dataset(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------- formats
def test_user_folder_loads_as_float32(tmp_path):
    write_dataset(tmp_path)
    ds = load_dataset("mine", tmp_path)
    assert isinstance(ds, DatasetSplits) and ds.name == "mine"
    assert (len(ds.train), len(ds.query), len(ds.retrieval)) == (6, 7, 8)
    assert (ds.image_dim, ds.text_dim, ds.num_labels) == (8, 5, 4)
    for split in (ds.train, ds.query, ds.retrieval):
        assert split.image.dtype == split.text.dtype == split.label.dtype == np.float32
    assert ds.train.source == str(tmp_path / "mine" / "train.pkl")


@pytest.mark.parametrize("ext", [".npz", ".h5"])
def test_formats_give_identical_arrays(tmp_path, ext):
    arrays = make_arrays()
    from_pkl = load_split_file(write_split(tmp_path / "a.pkl", arrays))
    other = load_split_file(write_split(tmp_path / f"a{ext}", arrays))
    assert from_pkl.keys() == other.keys() == {"image", "text", "label"}
    for key in from_pkl:
        if isinstance(other[key], LazyRows):  # .h5 features are read on demand, as float32
            assert ext == ".h5" and key in ("image", "text")
            np.testing.assert_array_equal(from_pkl[key].astype(np.float32), np.asarray(other[key]))
            np.testing.assert_array_equal(from_pkl[key][2:5].astype(np.float32), other[key][2:5])
        else:
            np.testing.assert_array_equal(from_pkl[key], other[key])
            assert from_pkl[key].dtype == other[key].dtype
    write_dataset(tmp_path, "viapkl")
    write_dataset(tmp_path, "viaother", ext=ext)
    a, b = load_dataset("viapkl", tmp_path), load_dataset("viaother", tmp_path)
    for split in ("train", "query", "retrieval"):
        for key in ("image", "text", "label"):
            np.testing.assert_array_equal(getattr(getattr(a, split), key),
                                          getattr(getattr(b, split), key))


def test_pkl_is_preferred_and_extra_keys_ignored(tmp_path):
    folder = write_dataset(tmp_path, ext=".npz")
    arrays = make_arrays(n=3, seed=9)
    write_split(folder / "train.pkl", {**arrays, "ids": np.array(["a", "b", "c"]), "note": "x"})
    ds = load_dataset("mine", tmp_path)
    assert ds.train.source.endswith("train.pkl") and len(ds.train) == 3
    assert ds.query.source.endswith("query.npz")


# --------------------------------------------------------------- validation
def bad_case(key, value):
    arrays = make_arrays()
    arrays[key] = value
    return arrays


@pytest.mark.parametrize("arrays, expected", [
    ([1, 2, 3], ["expected a dict", "got list"]),
    ({"image": np.zeros((2, 2)), "label": np.ones((2, 1))},
     ["missing key 'text'", "'image'", "'label'"]),
    (bad_case("image", np.zeros(6)), ["key 'image'", "2-D numeric", "1-D"]),
    (bad_case("text", np.array([["a"] * 5] * 6)), ["key 'text'", "2-D numeric"]),
    (bad_case("label", [[1]] * 6), ["key 'label'", "2-D numeric", "got a list"]),
    (bad_case("text", np.zeros((5, 5))), ["row counts", "image 6", "text 5", "label 6"]),
    (bad_case("image", np.where(np.eye(6, 8) > 0, np.nan, 0.0)),
     ["key 'image'", "NaN or inf", "6 of 6 rows"]),
    (bad_case("text", np.pad(np.full((1, 5), np.inf), ((0, 5), (0, 0)))),
     ["key 'text'", "1 of 6 rows"]),
    (bad_case("image", np.full((6, 8), 1e300)), ["key 'image'", "NaN or inf"]),
    (bad_case("label", np.full((6, 4), 2)), ["key 'label'", "only 0/1"]),
    (bad_case("label", np.zeros((6, 4), dtype=int)),
     ["key 'label'", "6 rows with no label", "mirflickr promises"]),
    ({k: v[:0] for k, v in make_arrays().items()}, ["key 'image'", "empty"]),
])
def test_validation_errors_name_file_and_key(tmp_path, arrays, expected):
    folder = write_dataset(tmp_path, "mirflickr", overrides={"query": arrays})
    message = load_error("flickr", tmp_path)
    assert message.startswith(str(folder / "query.pkl"))
    for part in expected:
        assert part in message, message


def test_rows_without_label_are_allowed_in_user_folders(tmp_path):
    write_dataset(tmp_path, overrides={"train": bad_case("label", np.zeros((6, 4), int))})
    assert load_dataset("mine", tmp_path).train.label.sum() == 0


@pytest.mark.parametrize("key, shape", [("image", (7, 3)), ("text", (7, 9)), ("label", (7, 2))])
def test_width_mismatch_names_both_files(tmp_path, key, shape):
    arrays = make_arrays(n=7)
    arrays[key] = np.ones(shape)
    folder = write_dataset(tmp_path, overrides={"query": arrays})
    message = load_error("mine", tmp_path)
    assert str(folder / "query.pkl") in message and str(folder / "train.pkl") in message
    assert f"key '{key}' has {shape[1]} columns" in message


def test_unreadable_files(tmp_path):
    folder = write_dataset(tmp_path)
    (folder / "train.pkl").write_bytes(pickle.dumps(make_arrays())[:50])
    assert "train.pkl: not a readable pickle" in load_error("mine", tmp_path)
    (folder / "train.pkl").unlink()
    (folder / "train.h5").write_bytes(b"not hdf5")
    assert "train.h5: not a readable HDF5 file" in load_error("mine", tmp_path)
    np.savez(folder / "query.npz", image=np.zeros((2, 2)), text=np.array([None, 1]),
             label=np.ones((2, 1)))
    with pytest.raises(DataError, match="query.npz: key 'text' cannot be read"):
        load_split_file(folder / "query.npz")


# --------------------------------------------------------------- safe pickle
class Plain:
    """An ordinary class: loading it would run its module's import code."""


class Exploit:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "MARKER"
    folder = write_dataset(tmp_path, "mirflickr")
    payload = {"image": Exploit(f"touch {marker}"), "text": np.zeros((2, 2)),
               "label": np.ones((2, 1))}
    (folder / "train.pkl").write_bytes(pickle.dumps(payload, protocol=2))
    message = load_error("mirflickr", tmp_path)
    assert message.startswith(f"{folder / 'train.pkl'}: refused to unpickle '")
    assert "system'" in message and "only numpy arrays" in message
    assert not marker.exists()


@pytest.mark.parametrize("obj, refused", [
    (eval, "builtins.eval'"),
    (__import__("subprocess").Popen, "subprocess.Popen'"),
    (Plain(), "test_data.Plain'"),  # module may be test_data or tests.test_data
    (__import__("collections").OrderedDict(a=1), "'collections.OrderedDict'"),
])
def test_other_globals_are_refused(tmp_path, obj, refused):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"image": obj}, protocol=4))
    with pytest.raises(DataError) as info:
        safe_load_pickle(path)
    assert str(info.value).startswith(f"{path}: refused to unpickle '")
    assert refused in str(info.value)


def test_object_arrays_and_odd_codecs_are_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"ids": np.array([1, "a"], dtype=object)}, protocol=4))
    with pytest.raises(DataError, match="obj.pkl: refused object-dtype array at key 'ids'"):
        safe_load_pickle(path)
    # protocol 2 rebuilds bytes with _codecs.encode(s, "latin1"); no other codec is offered
    hacked = pickle.dumps(np.arange(3), protocol=2).replace(b"X\x06\x00\x00\x00latin1",
                                                            b"X\x06\x00\x00\x00rot_13")
    assert b"rot_13" in hacked
    path.write_bytes(hacked)
    with pytest.raises(DataError, match="obj.pkl: not a readable pickle"):
        safe_load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickles_load(tmp_path, protocol):
    rng = np.random.default_rng(1)
    value = {
        "f32": rng.standard_normal((4, 3)).astype(np.float32),
        "f64": np.asfortranarray(rng.standard_normal((3, 5))),
        "i64": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],
        "u8": np.arange(6, dtype=np.uint8),
        "bool": rng.random((2, 2)) > 0.5,
        "big_endian": np.arange(3, dtype=">f4"),
        "names": np.array(["ab", "c"]),
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), 2, 2.5, "s", None, (1, 2)],
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = safe_load_pickle(path)
    reference = pickle.loads(path.read_bytes())  # what the unrestricted loader gives
    for key in value:
        if key == "scalars":
            assert loaded[key] == value[key]
            assert [type(x) for x in loaded[key]] == [type(x) for x in value[key]]
        else:
            np.testing.assert_array_equal(loaded[key], value[key])
            assert loaded[key].dtype == reference[key].dtype


def test_numpy1_module_names_load(tmp_path):
    # numpy 1.x writes numpy.core.multiarray; numpy 2.x writes numpy._core.
    data = pickle.dumps({"x": np.arange(4.0)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    (tmp_path / "old.pkl").write_bytes(old)
    np.testing.assert_array_equal(safe_load_pickle(tmp_path / "old.pkl")["x"], np.arange(4.0))


# --------------------------------------------------------------- names
def test_aliases_and_canonical_names(tmp_path):
    assert ALIASES == {"flickr": "mirflickr", "nus": "nus-wide", "coco": "mscoco"}
    from data.zoo import ZOO
    assert set(KNOWN_DATASETS) == {"mirflickr", "nus-wide", "mscoco", "demo", "wiki", *ZOO}
    for alias, canonical in ALIASES.items():
        assert canonical_dataset_name(alias) == canonical
        assert canonical_dataset_name(canonical) == canonical
    assert canonical_dataset_name("MIRFlickr") == "mirflickr"
    assert canonical_dataset_name("My_Set") == "My_Set"
    write_dataset(tmp_path, "nus-wide")
    assert load_dataset("nus", tmp_path).name == "nus-wide"


def test_missing_folder_message(tmp_path):
    message = load_error("coco", tmp_path)
    assert message.startswith(f"{tmp_path / 'mscoco' / 'train.pkl'} not found")
    assert "train.npz, train.h5" in message and "docs/data.md" in message
    assert "train.pkl, query.pkl and retrieval.pkl" in message
    folder = write_dataset(tmp_path, "mine")
    (folder / "retrieval.pkl").unlink()
    message = load_error("mine", tmp_path)
    assert message.startswith(f"{folder / 'retrieval.pkl'} not found")
    assert "not a known dataset" in message


# --------------------------------------------------------------- demo
def test_demo_is_deterministic(tmp_path):
    make_demo_dataset(tmp_path / "a")
    make_demo_dataset(tmp_path / "b")
    for name in ("train.pkl", "query.pkl", "retrieval.pkl", "README.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    make_demo_dataset(tmp_path / "c", seed=1)
    other_seed = (tmp_path / "c" / "query.pkl").read_bytes()
    assert other_seed != (tmp_path / "a" / "query.pkl").read_bytes()
    assert not list((tmp_path / "a").glob(".*tmp"))  # no temp files left behind


def test_demo_content(tmp_path):
    ds = load_dataset("demo", tmp_path)
    assert (tmp_path / "demo" / "README.txt").is_file()
    assert (len(ds.train), len(ds.query), len(ds.retrieval)) == (1500, 400, 3600)
    assert (ds.image_dim, ds.text_dim, ds.num_labels) == (512, 512, 24)
    for split in (ds.train, ds.query, ds.retrieval):
        for feats in (split.image, split.text):
            np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
        assert split.label.min() >= 0 and split.label.sum(1).min() >= 1
    labels = ds.retrieval.label
    assert 2 <= labels.sum(1).mean() <= 4
    freq = labels.mean(0)
    assert freq.max() > 0.3 and np.median(freq) < 0.1  # a few common, most rare
    retrieval_rows = {row.tobytes() for row in ds.retrieval.image}
    assert all(row.tobytes() in retrieval_rows for row in ds.train.image)
    assert not any(row.tobytes() in retrieval_rows for row in ds.query.image)
    # Loading again reads the files instead of regenerating them.
    stamp = (tmp_path / "demo" / "train.pkl").stat().st_mtime_ns
    again = load_dataset("demo", tmp_path)
    assert (tmp_path / "demo" / "train.pkl").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.query.text, ds.query.text)


def test_broken_demo_names_the_file(tmp_path):
    make_demo_dataset(tmp_path / "demo")
    (tmp_path / "demo" / "query.pkl").write_bytes(b"garbage")
    message = load_error("demo", tmp_path)
    assert str(tmp_path / "demo" / "query.pkl") in message and "delete" in message


# --------------------------------------------------------------- wiki
def write_fake_wiki(folder, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    mat = {f"{k}_{part}": rng.random((n, d)) for part, n in (("tr", n_train), ("te", n_test))
           for k, d in (("I", 128), ("T", 10), ("T_tfidf", 1000))}
    scipy.io.savemat(folder / "raw_features_sph.mat", mat)
    for name, n in (("trainset", n_train), ("testset", n_test)):
        lines = [f"t{i}\timg{i}\t{i % 10 + 1}" for i in range(n)]
        (folder / f"{name}_txt_img_cat.list").write_text("\n".join(lines) + "\n")
    return folder


def test_fake_wiki_loads(tmp_path):
    write_fake_wiki(tmp_path / "wiki")
    ds = load_dataset("wiki", tmp_path, wiki_text="lda")
    assert (len(ds.train), len(ds.query), len(ds.retrieval)) == (5, 3, 5)
    assert (ds.image_dim, ds.text_dim, ds.num_labels) == (128, 10, 10)
    np.testing.assert_array_equal(ds.query.label.argmax(1), [0, 1, 2])
    np.testing.assert_allclose(np.linalg.norm(ds.train.text, axis=1), 1, atol=1e-6)


@pytest.mark.parametrize("missing", ["raw_features_sph.mat", "testset_txt_img_cat.list"])
def test_wiki_missing_file(tmp_path, missing):
    (write_fake_wiki(tmp_path / "wiki") / missing).unlink()
    message = load_error("wiki", tmp_path)
    assert message.startswith(f"{tmp_path / 'wiki' / missing} not found")
    assert "--data_root" in message and "docs/data.md" in message


def test_wiki_bad_inputs(tmp_path):
    folder = write_fake_wiki(tmp_path / "wiki")
    assert "'tfidf', 'lda'" in load_error("wiki", tmp_path, wiki_text="bow")
    (folder / "testset_txt_img_cat.list").write_text("t0\ti0\t1\nt1\ti1\t2\n")
    message = load_error("wiki", tmp_path)
    assert "testset_txt_img_cat.list: has 2 lines" in message and "'I_te'" in message
    (folder / "testset_txt_img_cat.list").write_text("t0\ti0\t1\nt1\ti1\t11\nt2\ti2\t3\n")
    assert "testset_txt_img_cat.list: line 2" in load_error("wiki", tmp_path)
    scipy.io.savemat(folder / "raw_features_sph.mat", {"I_tr": np.ones((5, 128))})
    message = load_error("wiki", tmp_path)
    assert "raw_features_sph.mat: missing key 'I_te'" in message and "'I_tr'" in message


@pytest.mark.skipif(not SHARED_WIKI.is_dir(), reason="shared wiki data not present")
@pytest.mark.parametrize("wiki_text, text_dim", [("tfidf", 1000), ("lda", 10)])
def test_real_wiki(wiki_text, text_dim):
    ds = load_dataset("wiki", SHARED_WIKI.parent, wiki_text=wiki_text)
    assert (len(ds.train), len(ds.query), len(ds.retrieval)) == (2173, 693, 2173)
    assert (ds.image_dim, ds.text_dim, ds.num_labels) == (128, text_dim, 10)
    np.testing.assert_array_equal(ds.train.label.sum(1), 1)
    np.testing.assert_array_equal(ds.retrieval.image, ds.train.image)
    np.testing.assert_allclose(np.linalg.norm(ds.query.image, axis=1), 1, atol=1e-5)
