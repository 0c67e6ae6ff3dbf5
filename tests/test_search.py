"""scripts/build_index.py and search.py on a tiny demo model: id, text and image queries, errors."""
import json

import numpy as np
import pytest
import torch

import search_cli as search
import train
from hashindex.index_file import load_index, pack_codes, save_index
from conftest import TINY_CLIP
from data import load_dataset
from data.clip_encoder import ClipEncoder
from runio.checkpoint import load_trained_model

import build_index_cli

SMALL = ["--modality_dropout", "0", "--balanced_neighbours", "covariance",
         "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "128", "--batch_size", "256",
         "--unimodal_epochs", "1"]   # one branch epoch gives the unimodal codes the index holds (20, the default, took 6 s)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 16-bit and a 32-bit demo checkpoint (one epoch each) and a 16-bit index with a random-weight
    ViT-B-32 recorded as the encoder."""
    root = tmp_path_factory.mktemp("search")
    train.main(["--dataset", "demo", "--data_root", str(root / "data"), "--hash_lens", "16", "32",
                "--epoch", "1", "--eval_every", "0", *SMALL, "--checkpoint_dir", str(root / "ck"),
                "--output_dir", str(root / "runs")])
    checkpoint = root / "ck" / "hash" / "demo_hash_16.pth"
    index = build_index_cli.main(["--checkpoint", str(checkpoint), "--data_root", str(root / "data"),
                                  "--out", str(root / "demo16.npz"), "--clip_model", TINY_CLIP,
                                  "--clip_pretrained", "random"])
    return root, checkpoint, index


def run_search(capsys, *argv):
    found = search.main(list(argv))
    return found, capsys.readouterr().out


def brute_force(query_code, codes, k):
    """Plain loop: Hamming distance to every item, sorted by (distance, row)."""
    bits = lambda packed: np.unpackbits(packed)
    distances = [(int((bits(query_code) != bits(row)).sum()), i) for i, row in enumerate(codes)]
    return sorted(distances)[:k]


def test_index_holds_the_models_unimodal_codes_and_its_facts(built):
    root, checkpoint, path = built
    index = load_index(path)
    model, _ = load_trained_model(checkpoint, log=lambda m: None)
    retrieval = load_dataset("demo", root / "data").retrieval
    image, text = model.encode_split(retrieval, "unimodal", 512)
    assert np.array_equal(index.codes["image"], pack_codes(image))
    assert np.array_equal(index.codes["text"], pack_codes(text))
    assert index.codes["image"].shape == (len(retrieval), 2) and index.bits == 16
    assert index.meta["protocol"] == "unimodal" and index.meta["split"] == "retrieval"
    assert index.meta["encoder"]["clip_model"] == TINY_CLIP and len(index.meta["checkpoint_sha256"]) == 64
    assert np.array_equal(index.labels, retrieval.label.astype(np.uint8))
    assert index.ids[0] == "0" and index.ids[-1] == str(len(retrieval) - 1)


def test_query_id_prints_a_ranked_list_that_matches_a_plain_loop(built, capsys):
    _, _, path = built
    found, out = run_search(capsys, "--index", str(path), "--query_id", "0")
    lines = out.strip().splitlines()
    assert lines[0].startswith("image query") and "rank" in lines[1] and len(lines) == 2 + 10
    index = load_index(path)
    expected = brute_force(index.codes["image"][0], index.codes["text"], 10)
    assert [(r["distance"], r["row"]) for r in found["results"]] == expected
    assert all(r["labels"] for r in found["results"])  # demo items all have labels
    found, out = run_search(capsys, "--index", str(path), "--query_id", "5", "--query_modality", "text",
                            "--target", "text", "--top_k", "3", "--json")
    assert json.loads(out) == found and found["target"] == "text" and len(found["results"]) == 3
    assert found["results"][0]["distance"] == 0  # itself, or an item with the same code and a lower row
    assert found["results"][0]["row"] <= 5


def expected_code(checkpoint, index, modality, features):
    model, _ = load_trained_model(checkpoint, log=lambda m: None)
    features = torch.from_numpy(features) * index.meta["feature_norms"][modality]
    encode = model.encode_text if modality == "text" else model.encode_image
    return pack_codes(encode(features))[0].tobytes().hex()


def test_text_query_goes_through_open_clip_and_the_checkpoint(built, capsys):
    _, checkpoint, path = built
    found, _ = run_search(capsys, "--index", str(path), "--text", "a dog on the beach", "--json")
    index = load_index(path)
    torch.manual_seed(0)
    features = ClipEncoder(TINY_CLIP, "random").encode_texts(["a dog on the beach"])
    assert found["query"]["code"] == expected_code(checkpoint, index, "text", features)
    query = np.frombuffer(bytes.fromhex(found["query"]["code"]), np.uint8)
    assert found["target"] == "image"
    assert [(r["distance"], r["row"]) for r in found["results"]] == brute_force(query, index.codes["image"], 10)


def test_image_query_goes_through_open_clip_and_the_checkpoint(built, capsys, tmp_path):
    from PIL import Image

    _, checkpoint, path = built
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo)
    found, out = run_search(capsys, "--index", str(path), "--image", str(photo), "--top_k", "4")
    index = load_index(path)
    torch.manual_seed(0)
    encoder = ClipEncoder(TINY_CLIP, "random")
    with Image.open(photo) as picture:
        features = encoder.encode_images(encoder.preprocess(picture.convert("RGB")).unsqueeze(0))
    assert found["query"]["code"] == expected_code(checkpoint, index, "image", features)
    assert found["target"] == "text" and len(found["results"]) == 4 and len(out.strip().splitlines()) == 6


def test_stored_approximate_index_is_used(built, capsys):
    pytest.importorskip("faiss")
    root, checkpoint, _ = built
    path = build_index_cli.main(["--checkpoint", str(checkpoint), "--data_root", str(root / "data"),
                                 "--out", str(root / "hnsw.npz"), "--kind", "hnsw"])
    found, _ = run_search(capsys, "--index", str(path), "--query_id", "3", "--json")
    assert found["search"]["kind"] == "hnsw" and len(found["results"]) == 10
    exact, _ = run_search(capsys, "--index", str(path), "--query_id", "3", "--kind", "flat", "--json")
    assert exact["search"]["kind"] == "flat"
    assert found["results"][0]["distance"] >= exact["results"][0]["distance"]


def fails(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        search.main(list(argv))
    assert stop.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_mismatched_checkpoint_is_a_clear_error(built, capsys, tmp_path):
    root, checkpoint, path = built
    other_bits = root / "ck" / "hash" / "demo_hash_32.pth"
    message = fails(capsys, "--index", str(path), "--text", "a cat", "--checkpoint", str(other_bits))
    assert "32-bit" in message and "16-bit" in message
    retrained = tmp_path / "retrained.pth"
    state = torch.load(checkpoint, weights_only=True)
    state["image_head"]["mlp.0.bias"] += 1.0
    torch.save(state, retrained)
    assert "sha256 mismatch" in fails(capsys, "--index", str(path), "--text", "a cat", "--checkpoint", str(retrained))
    index = load_index(path)
    index.meta["model"]["fusion_layers"] = 3
    save_index(tmp_path / "other_model.npz", index)
    message = fails(capsys, "--index", str(tmp_path / "other_model.npz"), "--text", "a cat")
    assert "fusion_layers" in message and "not the model" in message


def test_corrupt_or_unusable_index_is_a_clear_error(built, capsys, tmp_path):
    root, checkpoint, path = built
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:500])
    assert str(truncated) in fails(capsys, "--index", str(truncated), "--query_id", "0")
    assert "no such file" in fails(capsys, "--index", str(tmp_path / "absent.npz"), "--query_id", "0")
    assert "'nope' is not in the index" in fails(capsys, "--index", str(path), "--query_id", "nope")
    plain = build_index_cli.main(["--checkpoint", str(checkpoint), "--data_root", str(root / "data"),
                                  "--out", str(tmp_path / "plain.npz"), "--split", "query"])
    assert "records no CLIP encoder" in fails(capsys, "--index", str(plain), "--text", "a cat")
    assert "not a readable image" in fails(capsys, "--index", str(path), "--image", str(truncated))


def test_build_index_rejects_bad_input(built, capsys, tmp_path):
    root, checkpoint, _ = built
    for argv, expected in (
            (["--checkpoint", str(tmp_path / "none.pth")], "checkpoint not found"),
            (["--checkpoint", str(checkpoint), "--data_root", str(root / "data"), "--clip_model", TINY_CLIP],
             "go together"),
            (["--checkpoint", str(checkpoint), "--data_root", str(root / "data"), "--captions",
              str(tmp_path / "none.json")], "--captions")):
        with pytest.raises(SystemExit) as stop:
            build_index_cli.main([*argv, "--out", str(tmp_path / "x.npz")])
        assert stop.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_encoder_and_label_names_come_from_the_features_metadata(built, capsys, tmp_path):
    """Features made by extract_features.py carry metadata.json: the index takes the encoder and
    the label names from it, so --text works without --clip_model flags."""
    import shutil

    root, checkpoint, _ = built
    data_root = tmp_path / "data"
    shutil.copytree(root / "data" / "demo", data_root / "demo")
    names = [f"concept{c}" for c in range(24)]
    (data_root / "demo" / "metadata.json").write_text(json.dumps(
        {"clip_model": TINY_CLIP, "pretrained": "random", "weights_file": None, "label_names": names}))
    path = build_index_cli.main(["--checkpoint", str(checkpoint), "--data_root", str(data_root),
                                 "--out", str(tmp_path / "meta.npz")])
    index = load_index(path)
    assert index.meta["encoder"]["clip_model"] == TINY_CLIP and index.label_names == names
    found, out = run_search(capsys, "--index", str(path), "--text", "two dogs", "--top_k", "2")
    assert len(found["results"]) == 2 and set(found["results"][0]["labels"]) <= set(names)
    assert "concept" in out


def test_exported_encoders_answer_text_and_image_queries_without_the_checkpoint(built, capsys, tmp_path,
                                                                                monkeypatch):
    """scripts/search.py --encoder: the ONNX encoders of scripts/export.py run by onnxruntime give the
    query code the checkpoint gives, even where the checkpoint is gone; one that does not fit is one line."""
    import uvicorn
    from PIL import Image

    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from hashindex.encoders import ExportedEncoders
    import export_cli

    root, checkpoint, path = built
    export_cli.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "enc")])
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(photo)
    with_checkpoint = [run_search(capsys, "--index", str(path), *query, "--json")[0]
                       for query in (["--text", "a dog on the beach"], ["--image", str(photo)])]
    index = load_index(path)
    assert index.meta["scale"] == load_trained_model(checkpoint, log=lambda m: None)[0].default_scale
    index.meta["checkpoint"] = str(tmp_path / "gone.pth")
    save_index(tmp_path / "orphan.npz", index)
    for query, expected in zip((["--text", "a dog on the beach"], ["--image", str(photo)]), with_checkpoint):
        found, _ = run_search(capsys, "--index", str(tmp_path / "orphan.npz"), *query, "--encoder",
                              str(tmp_path / "enc"), "--json")
        assert found["query"]["code"] == expected["query"]["code"] and found["results"] == expected["results"]
    started = {}   # the page's server (--serve) loads them too: its text and image queries are on
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app))
    search.main(["--serve", "--index", str(tmp_path / "orphan.npz"), "--encoder", str(tmp_path / "enc")])
    assert started["app"].state.disabled_reason is None
    assert isinstance(started["app"].state.engine.encoders()[0], ExportedEncoders)
    export_cli.main(["--checkpoint", str(root / "ck" / "hash" / "demo_hash_32.pth"), "--out", str(tmp_path / "e32")])
    message = fails(capsys, "--index", str(path), "--text", "a cat", "--encoder", str(tmp_path / "e32"))
    assert "32-bit codes, the index holds 16-bit" in message and "sha256 mismatch" in message
    index.meta["scale"] = 3.5
    save_index(tmp_path / "scaled.npz", index)
    message = fails(capsys, "--index", str(tmp_path / "scaled.npz"), "--text", "a cat", "--encoder", str(tmp_path / "enc"))
    assert "the index's is 3.5" in message
    assert "needs image_encoder.onnx" in fails(capsys, "--index", str(path), "--text", "a cat", "--encoder", str(tmp_path))
