"""CLIP feature extraction with a random-weight open_clip model (no downloads)."""
import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import OPEN_CLIP_MISSING, TINY_CLIP
from data import DataError, load_dataset
from data.clip_encoder import ClipEncoder, sha256_of
from data.export import write_feature_dataset
from data.extract import extract_features
from data.raw import RawDataset, RawItem, make_splits

pytestmark = OPEN_CLIP_MISSING


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return ClipEncoder(TINY_CLIP, "random", device="cpu")


def tiny_dataset(folder, n=10, broken=()):
    """n pairs with generated images; indices in `broken` get a corrupt file, a truncated JPEG or none."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)).save(path, quality=90)
        items.append(RawItem(f"p{i}", path, [f"a photo of thing {i}", f"thing number {i}"][: 1 + i % 2],
                             [i % 3, 3] if i % 2 else [i % 3]))
    kinds = ["garbage", "truncated", "missing"]
    for k, i in enumerate(broken):
        path = items[i].image
        if kinds[k % 3] == "garbage":
            path.write_bytes(b"this is not an image")
        elif kinds[k % 3] == "truncated":
            path.write_bytes(path.read_bytes()[:200])
        else:
            path.unlink()
    return RawDataset("tiny", ["a", "b", "c", "d"], items, str(folder))


def test_features_are_unit_length_float32_and_deterministic(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=6)
    first = extract_features(raw, encoder, tmp_path / "w1", batch_size=2, workers=0, chunk_size=4)
    second = extract_features(raw, encoder, tmp_path / "w2", batch_size=2, workers=1, chunk_size=4)
    assert first.image.shape == first.text.shape == (6, 512) and first.image.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first.image, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(first.text, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(first.image, second.image) and np.array_equal(first.text, second.text)
    assert first.ok.all() and not first.failures


def test_the_default_architecture_gives_unit_512d_features(tmp_path, encoder):
    """The other tests use a two-layer stand-in (conftest.TINY_CLIP); this one runs the default."""
    torch.manual_seed(0)
    default = ClipEncoder("ViT-B-32", "random", device="cpu")
    # the tokenizer is built once per text-tower config: another encoder of the stand-in reuses the
    # fixture's, the default architecture (another text tower) has its own
    assert ClipEncoder(TINY_CLIP, "random").tokenizer is encoder.tokenizer is not default.tokenizer
    raw = tiny_dataset(tmp_path / "img", n=2)
    features = extract_features(raw, default, tmp_path / "w", batch_size=2, workers=0, chunk_size=2)
    for side in (features.image, features.text):
        assert side.shape == (2, 512) and side.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(side, axis=1), 1, rtol=1e-5)


def test_text_mode_mean_averages_unit_caption_features(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=2)  # item 1 has two texts
    mean = extract_features(raw, encoder, tmp_path / "w", batch_size=2, workers=0, chunk_size=2).text[1]
    parts = encoder.encode_texts(raw.items[1].texts)
    expected = parts.mean(0) / np.linalg.norm(parts.mean(0))
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
    first = extract_features(raw, encoder, tmp_path / "w2", batch_size=2, workers=0, chunk_size=2,
                             text_mode="first").text[1]
    np.testing.assert_allclose(first, parts[0], rtol=1e-5, atol=1e-6)


def write(out, raw, features, fmt="both"):
    kept = int(features.ok.sum())
    splits = make_splits(kept, 2, 4, seed=0)
    meta = {"dataset": "tiny", "date": features.started, "split_seed": 0}
    return write_feature_dataset(out, raw, features, splits, meta, fmt=fmt)


def test_resume_after_a_crash_gives_identical_files(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=10)
    unbroken = extract_features(raw, encoder, tmp_path / "a" / ".work", batch_size=2, workers=0, chunk_size=4)
    write(tmp_path / "a", raw, unbroken)

    def crash(chunk):
        if chunk == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(raw, encoder, tmp_path / "b" / ".work", batch_size=2, workers=0, chunk_size=4,
                         on_chunk_done=crash)
    assert sorted(p.name for p in (tmp_path / "b" / ".work").glob("chunk_*")) == ["chunk_00000.npz",
                                                                                 "chunk_00001.npz"]
    computed = []
    original = encoder.encode_images
    encoder.encode_images = lambda pixels: computed.append(len(pixels)) or original(pixels)
    try:
        resumed = extract_features(raw, encoder, tmp_path / "b" / ".work", batch_size=2, workers=0, chunk_size=4)
    finally:
        encoder.encode_images = original
    assert sum(computed) == 2  # only the last chunk (items 8-9) was encoded again
    write(tmp_path / "b", raw, resumed)
    for split in ("train", "query", "retrieval"):
        assert (tmp_path / "a" / f"{split}.pkl").read_bytes() == (tmp_path / "b" / f"{split}.pkl").read_bytes()
        with h5py.File(tmp_path / "a" / f"{split}.h5") as a, h5py.File(tmp_path / "b" / f"{split}.h5") as b:
            for key in ("image", "text", "label", "ids"):
                assert np.array_equal(a[key][()], b[key][()])
    for name in ("splits.json", "extraction_report.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_resume_refuses_a_work_folder_made_differently(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=4)
    extract_features(raw, encoder, tmp_path / "w", batch_size=2, workers=0, chunk_size=2)
    with pytest.raises(DataError, match="other chunk_size"):
        extract_features(raw, encoder, tmp_path / "w", batch_size=2, workers=0, chunk_size=4)


def test_corrupt_and_missing_images_are_reported_and_skipped(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=9, broken=(1, 4, 7))
    features = extract_features(raw, encoder, tmp_path / "w", batch_size=2, workers=1, chunk_size=4)
    assert sorted(features.failures) == [1, 4, 7] and features.ok.sum() == 6
    write(tmp_path / "out", raw, features, fmt="pkl")
    report = json.loads((tmp_path / "out" / "extraction_report.json").read_text())
    assert [s["id"] for s in report["skipped"]] == ["p1", "p4", "p7"] and report["kept"] == 6
    assert all(s["reason"] for s in report["skipped"])
    with open(tmp_path / "out" / "retrieval.pkl", "rb") as handle:
        ids = pickle.load(handle)["ids"]
    assert not {"p1", "p4", "p7"} & set(ids.tolist())
    # items.json: the kept items' image files and captions, for search results (hashindex/build.py)
    items = json.loads((tmp_path / "out" / "items.json").read_text())
    assert sorted(items) == sorted(f"p{i}" for i in (0, 2, 3, 5, 6, 8))
    assert items["p2"] == {"image": str(raw.items[2].image.resolve()), "caption": raw.items[2].texts[0]}


def test_missing_text_is_an_error_naming_the_item(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=3)
    raw.items[2].texts = ["  "]
    with pytest.raises(DataError, match="item 'p2': missing text"):
        extract_features(raw, encoder, tmp_path / "w", batch_size=3, workers=0, chunk_size=3)


def test_outputs_load_as_a_dataset_in_both_formats(tmp_path, encoder):
    raw = tiny_dataset(tmp_path / "img", n=10)
    features = extract_features(raw, encoder, tmp_path / "w", batch_size=2, workers=0, chunk_size=4)
    write(tmp_path / "pk" / "tiny", raw, features, fmt="pkl")
    write(tmp_path / "h5" / "tiny", raw, features, fmt="h5", )
    a, b = load_dataset("tiny", tmp_path / "pk"), load_dataset("tiny", tmp_path / "h5")
    assert len(a.query) == 2 and len(a.retrieval) == 8 and len(a.train) == 4
    for split in ("train", "query", "retrieval"):
        np.testing.assert_array_equal(getattr(a, split).image, np.asarray(getattr(b, split).image))
        np.testing.assert_array_equal(getattr(a, split).label, getattr(b, split).label)
    assert type(b.retrieval.image).__name__ == "LazyRows"
    with h5py.File(tmp_path / "h5" / "tiny" / "query.h5") as handle:
        assert handle.attrs["dataset"] == "tiny" and handle.attrs["split"] == "query"


def test_weights_policy_never_downloads(tmp_path):
    with pytest.raises(DataError, match="no CLIP weights given: pass --pretrained FILE"):
        ClipEncoder("ViT-B-32", None)
    with pytest.raises(DataError, match="not in the local cache and downloading is off"):
        ClipEncoder("ViT-B-32", "openai", cache_dir=str(tmp_path / "empty-cache"))
    with pytest.raises(DataError, match="not a file and not an open_clip tag"):
        ClipEncoder("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(DataError, match="is not an open_clip model"):
        ClipEncoder("ViT-Nope", "random")


def test_local_checkpoint_file_is_loaded_and_fingerprinted(tmp_path, encoder):
    path = tmp_path / "weights.pt"
    torch.save(encoder.model.state_dict(), path)
    loaded = ClipEncoder(TINY_CLIP, str(path))
    assert loaded.metadata["weights_sha256"] == sha256_of(path)
    texts = ["a dog on the beach"]
    np.testing.assert_allclose(loaded.encode_texts(texts), encoder.encode_texts(texts), rtol=1e-5, atol=1e-6)


def test_manifest_to_training_end_to_end(tmp_path, capsys):
    """The issue's acceptance path: extract_features.py on a manifest, then train.py on its output."""
    import extract_features_cli  # noqa: F401  (see conftest: scripts/extract_features.py)
    import train

    raw = tiny_dataset(tmp_path / "images", n=24, broken=(5,))
    lines = ["image,text,labels"] + [f"{item.image.name},{item.texts[0]},{'|'.join('abcd'[i] for i in item.labels)}"
                                     for item in raw.items]
    (tmp_path / "images" / "pairs.csv").write_text("\n".join(lines) + "\n")
    out = extract_features_cli.main(["--manifest", str(tmp_path / "images" / "pairs.csv"), "--name", "mine",
                                     "--data_root", str(tmp_path / "data"), "--pretrained", "random",
                                     "--clip_model", TINY_CLIP, "--device", "cpu", "--batch_size", "8",
                                     "--chunk_size", "8", "--workers", "1",
                                     "--num_query", "4", "--num_train", "12", "--format", "both"])
    printed = capsys.readouterr().out
    assert "23 pairs kept, 1 skipped" in printed and out == tmp_path / "data" / "mine"
    assert not (out / ".work").exists()
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["clip_model"] == TINY_CLIP and metadata["pretrained"] == "random"
    assert metadata["sizes"] == {"train": 12, "query": 4, "retrieval": 19} and metadata["label_names"] == list("abcd")
    [result] = train.main(["--dataset", "mine", "--data_root", str(tmp_path / "data"), "--epoch", "1",
                           "--modality_dropout", "0", "--balanced_neighbours", "covariance",
                           "--hash_lens", "8", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
                           "--unimodal_epochs", "1", "--checkpoint_dir", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "run")])
    assert result["num_query"] == 4 and result["num_retrieval"] == 19 and 0 <= result["i2t_map"] <= 1


def test_cli_without_weights_says_how_to_get_them(tmp_path, capsys):
    import extract_features_cli

    (tmp_path / "m.csv").write_text("image,text,labels\nx.jpg,a text,1\n")
    with pytest.raises(SystemExit) as exit_info:
        extract_features_cli.main(["--manifest", str(tmp_path / "m.csv"), "--data_root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no CLIP weights given: pass --pretrained FILE" in capsys.readouterr().err


@pytest.mark.parametrize("release", ["mirflickr", "coco"])
def test_raw_release_to_training_end_to_end(tmp_path, release):
    """A tiny fake tree in the release's real layout -> extract_features.py -> train.py."""
    import extract_features_cli
    import fake_raw
    import train

    make = {"mirflickr": fake_raw.make_fake_mirflickr, "coco": fake_raw.make_fake_coco}[release]
    tree = make(tmp_path / "raw")
    out = extract_features_cli.main(["--dataset", release, "--raw_root", str(tree.root), "--name", f"fake-{release}",
                                     "--data_root", str(tmp_path / "data"), "--pretrained", "random",
                                     "--clip_model", TINY_CLIP, "--device", "cpu", "--batch_size", "8",
                                     "--chunk_size", "16", "--workers", "0",
                                     "--num_query", "5", "--num_train", "10"])
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(splits["query"] + splits["retrieval"]) == sorted(tree.ids)
    assert set(splits["train"]) <= set(splits["retrieval"]) and not set(splits["query"]) & set(splits["retrieval"])
    [result] = train.main(["--dataset", f"fake-{release}", "--data_root", str(tmp_path / "data"), "--epoch", "1",
                           "--modality_dropout", "0", "--balanced_neighbours", "covariance",
                           "--hash_lens", "8", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
                           "--unimodal_epochs", "1", "--checkpoint_dir", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "run")])
    assert result["num_train"] == 10 and result["num_query"] == 5


def test_cli_names_the_first_missing_file_of_a_release(tmp_path, capsys):
    import extract_features_cli

    with pytest.raises(SystemExit):
        extract_features_cli.main(["--dataset", "nus", "--raw_root", str(tmp_path), "--pretrained", "random"])
    err = capsys.readouterr().err.strip()
    assert "ImageList/Imagelist.txt not found" in err and "\n" not in err
