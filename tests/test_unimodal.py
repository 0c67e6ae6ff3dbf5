"""Unimodal encoding (learned placeholders, modality dropout) and the two evaluation protocols."""
import json

import numpy as np
import pytest
import torch

import train
from data import load_dataset
from data.splits import FeatureSplit
from model import CrossModalHasher, FuseTransEncoder, HashHead
from runio.checkpoint import load_trained_model

SMALL = ["--modality_dropout", "0", "--balanced_neighbours", "covariance",
         "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "128", "--batch_size", "256",
         "--unimodal_epochs", "0"]   # one network for both protocols (the branch: test_unimodal_branch.py)


def tiny_model(image_dim=12, text_dim=10, bits=8):
    fusion = FuseTransEncoder(image_dim, text_dim, fusion_dim=32, num_layers=1, num_heads=2, ff_dim=16, dropout=0.0)
    head = lambda: HashHead(16, bits, hidden=24, dropout=0.0)
    model = CrossModalHasher(fusion, head(), head(), default_scale=3.0)
    with torch.no_grad():  # placeholders away from zero, so a test sees if they are used
        fusion.image_placeholder.normal_()
        fusion.text_placeholder.normal_()
    return model.eval()


def test_unimodal_outputs_ignore_the_absent_side_and_paired_ones_do_not():
    model = tiny_model()
    image, text = torch.randn(5, 12), torch.randn(5, 10)
    other_image, other_text = torch.randn(5, 12), torch.randn(5, 10)
    # the training pass with every row unimodal: image side from the image alone, text side from the text alone
    everyone = torch.ones(5, dtype=torch.bool)
    _, _, hash_image, hash_text = model(image, text, 3.0, everyone)
    _, _, hash_image_b, hash_text_b = model(image, other_text, 3.0, everyone)
    _, _, hash_image_c, hash_text_c = model(other_image, text, 3.0, everyone)
    assert torch.equal(hash_image, hash_image_b) and torch.equal(hash_text, hash_text_c)
    assert torch.allclose(hash_image, model.encode_image(image), atol=1e-6)
    assert torch.allclose(hash_text, model.encode_text(text), atol=1e-6)
    # paired codes do see the other side (so the checks above could fail)
    paired_image, _ = model.encode_pair(image, text)
    assert not torch.allclose(paired_image, model.encode_pair(image, other_text)[0])
    assert not torch.allclose(paired_image, model.encode_image(image))


def test_training_pass_mixes_paired_and_unimodal_rows_as_marked():
    model = tiny_model()
    image, text = torch.randn(6, 12), torch.randn(6, 10)
    marked = torch.tensor([True, False, False, True, True, False])
    fused_image, fused_text, hash_image, hash_text = model(image, text, 3.0, marked)
    pair_image, pair_text = model.encode_pair(image, text)
    assert torch.allclose(hash_image[~marked], pair_image[~marked], atol=1e-6)
    assert torch.allclose(hash_text[~marked], pair_text[~marked], atol=1e-6)
    assert torch.allclose(hash_image[marked], model.encode_image(image[marked]), atol=1e-6)
    assert torch.allclose(hash_text[marked], model.encode_text(text[marked]), atol=1e-6)
    assert fused_image.shape == fused_text.shape == (6, 16)


def test_modality_dropout_trains_the_placeholders_and_none_leaves_them_alone():
    model = tiny_model().train()
    image, text = torch.randn(8, 12), torch.randn(8, 10)
    for marked, expect_grad in ((torch.zeros(8, dtype=torch.bool), False), (torch.rand(8) < 2, True)):
        model.zero_grad(set_to_none=True)
        outputs = model(image, text, 3.0, marked)
        sum(o.square().sum() for o in outputs).backward()
        for placeholder in (model.fusion.image_placeholder, model.fusion.text_placeholder):
            has_grad = placeholder.grad is not None and bool(placeholder.grad.abs().sum() > 0)
            assert has_grad == expect_grad


def test_encoder_rejects_a_call_with_neither_side():
    with pytest.raises(ValueError, match="image or text"):
        tiny_model().fusion(None, None)


def test_encode_split_unimodal_codes_do_not_depend_on_the_absent_side():
    model = tiny_model()
    rng = np.random.default_rng(0)
    image, text = rng.standard_normal((7, 12), dtype=np.float32), rng.standard_normal((7, 10), dtype=np.float32)
    split = lambda i, t: FeatureSplit(i, t, np.ones((7, 2), np.float32), "test")
    base = model.encode_split(split(image, text), "unimodal", 3)
    noise_text = model.encode_split(split(image, rng.standard_normal((7, 10), dtype=np.float32)), "unimodal", 3)
    noise_image = model.encode_split(split(rng.standard_normal((7, 12), dtype=np.float32), text), "unimodal", 3)
    assert torch.equal(base[0], noise_text[0]) and torch.equal(base[1], noise_image[1])
    paired = model.encode_split(split(image, text), "paired", 3)
    assert not torch.equal(paired[0], model.encode_split(split(image, text[::-1].copy()), "paired", 3)[0])
    with pytest.raises(ValueError, match="protocol"):
        model.encode_split(split(image, text), "fused", 3)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two short demo runs, with and without modality dropout; codes and curves saved."""
    root = tmp_path_factory.mktemp("protocols")
    runs = {}
    for rate in ("0.5", "0"):
        [runs[rate]] = train.main(["--dataset", "demo", "--data_root", str(root / "data"), "--hash_lens", "16",
                                   "--epoch", "2", "--eval_every", "2", "--save_codes", "true", *SMALL,
                                   "--modality_dropout", rate, "--checkpoint_dir", str(root / f"ck{rate}"),
                                   "--output_dir", str(root / f"run{rate}")])
    return root, runs


def test_results_hold_both_protocols_everywhere_scores_are(demo_runs, capsys):
    root, runs = demo_runs
    saved = json.loads((root / "run0.5" / "results.json").read_text())
    assert saved["protocols"] == ["paired", "unimodal"] and saved["modality_dropout"] == 0.5
    for prefix in ("", "unimodal_"):
        for direction in ("i2t", "t2i"):
            for metric in ("map", "map_all", "precision_k", "map_tie", "map_all_tie", "map_continuous"):
                assert 0.0 < saved[f"{prefix}{direction}_{metric}"] <= 1.0, f"{prefix}{direction}_{metric}"
    records = [json.loads(line) for line in (root / "run0.5" / "metrics.jsonl").read_text().splitlines()]
    assert [("unimodal_i2t_map" in r, "i2t_map" in r) for r in records] == [(False, False), (True, True)]
    with np.load(root / "run0.5" / "codes.npz") as codes:
        assert {"query_image", "unimodal_query_image", "unimodal_database_text"} <= set(codes.files)
    curves = json.loads((root / "run0.5" / "curves.json").read_text())
    assert {"i2t", "t2i", "unimodal_i2t", "unimodal_t2i"} <= set(curves)
    # unimodal and paired codes differ, so the two protocols measure different things
    assert saved["unimodal_i2t_map_all"] != saved["i2t_map_all"]


def test_placeholders_are_learned_only_with_modality_dropout(demo_runs):
    root, _ = demo_runs
    for rate, learned in (("0.5", True), ("0", False)):
        fusion = torch.load(root / f"ck{rate}" / "hash" / "demo_hash_16.pth", weights_only=True)["fusion"]
        for key in ("image_placeholder", "text_placeholder"):
            assert bool(fusion[key].abs().sum() > 0) == learned, (rate, key)


def test_test_hash_rescores_both_protocols_from_the_checkpoint(demo_runs):
    root, runs = demo_runs
    [tested] = train.main(["--dataset", "demo", "--data_root", str(root / "data"), "--hash_lens", "16",
                           "--task", "test_hash", "--checkpoint_dir", str(root / "ck0.5"),
                           "--output_dir", str(root / "tested")])
    for key in ("i2t_map", "unimodal_i2t_map", "unimodal_t2i_map_all"):
        assert tested[key] == runs["0.5"][key]
    # the checkpoint rebuilt outside the Solver gives the same unimodal codes
    model, info = load_trained_model(root / "ck0.5" / "hash" / "demo_hash_16.pth", log=lambda m: None)
    query = load_dataset("demo", root / "data").query
    with np.load(root / "run0.5" / "codes.npz") as codes:
        expected = codes["unimodal_query_text"]
    assert info["bits"] == 16
    assert np.allclose(model.encode_split(query, "unimodal", 100)[1].numpy(), expected, atol=1e-5)
