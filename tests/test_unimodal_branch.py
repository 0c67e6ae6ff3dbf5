"""The unimodal branch (config unimodal_epochs): the paired path trained as UCMFH does, then a copy
of the network for one-side inputs, distilled from the frozen paired codes."""
import json

import numpy as np
import pytest
import torch

import evaluate
import ICMR
import train
from config import build_config, to_dict
from conftest import small_dataset, train_until_crash
from data import load_dataset
from ICMR import Solver
from losses import distillation_loss
from model import build_model
from runio.checkpoint import load_trained_model, merge_checkpoint_config

PAIRED = ("i2t_map", "t2i_map", "val_i2t_map", "val_t2i_map")
UNIMODAL = ("unimodal_i2t_map", "unimodal_t2i_map")


def _args(tmp_path, name, *extra):
    return ["--dataset", "small", "--data_root", str(small_dataset(tmp_path.parent)), "--hash_lens", "16",
            "--epoch", "3", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--batch_size",
            "64", "--modality_dropout", "0", "--balanced_neighbours", "covariance", "--val_queries", "100", "--device", "cpu", "--save_codes", "true",
            "--output_dir", str(tmp_path / name), "--checkpoint_dir", str(tmp_path / name / "ck"), *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same seed without and with a 2-epoch branch (scored after the paired epochs too)."""
    tmp_path = tmp_path_factory.mktemp("branch")
    [plain] = train.main(_args(tmp_path, "plain", "--unimodal_epochs", "0", "--eval_every", "3"))
    [branch] = train.main(_args(tmp_path, "branch", "--unimodal_epochs", "2", "--eval_every", "3"))
    return tmp_path, plain, branch


def test_distillation_loss_is_the_mean_squared_gap_without_teacher_gradient():
    student, teacher = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    loss = distillation_loss(student, teacher)
    expected = sum((student[i, j] - teacher[i, j]) ** 2 for i in range(4) for j in range(8)) / 32
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_the_branch_leaves_the_paired_codes_as_they_were_and_moves_the_unimodal_ones(runs):
    tmp_path, plain, branch = runs
    for key in PAIRED:
        assert branch[key] == plain[key], key                 # exactly: the paired path is frozen
    codes = [np.load(tmp_path / name / "codes.npz") for name in ("plain", "branch")]
    for key in ("query_image", "query_text", "database_image", "database_text"):
        assert np.array_equal(codes[0][key], codes[1][key])
        assert not np.array_equal(codes[0][f"unimodal_{key}"], codes[1][f"unimodal_{key}"])
    assert any(branch[key] != plain[key] for key in UNIMODAL)


def test_the_branch_trains_after_the_paired_epochs_and_is_saved(runs):
    tmp_path, _, branch = runs
    records = [json.loads(line) for line in (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert ["distill_loss" in r for r in records] == [False, False, False, True, True]
    for record in records[3:]:   # the branch's loss: the main one's terms + unimodal_distill (1) x distillation
        assert record["distill_loss"] > 0 and record["balanced_loss"] > 0    # + unimodal_balanced (1) x balanced
        assert record["loss"] == pytest.approx(record["fused_loss"] + 0.5 * record["hash_loss"]
                                               + record["distill_loss"] + record["balanced_loss"], rel=1e-5)
    state = torch.load(branch["checkpoint"], weights_only=True)
    assert state["epoch"] == 5 and "unimodal_branch" in state and "optimizer_branch" in state
    # a checkpoint scored anew gives the run's scores: the branch is loaded and used for one-side inputs
    rescored = evaluate.main(["--checkpoint", branch["checkpoint"], "--output_dir", str(tmp_path / "rescored"),
                              "--val_queries", "100", "--data_root", str(small_dataset(tmp_path.parent))])
    for key in PAIRED + UNIMODAL:
        assert rescored[key] == pytest.approx(branch[key], abs=1e-9), key


def test_scores_before_the_branch_trains_take_one_side_codes_from_the_paired_network(runs):
    """eval_every during the paired epochs: the branch's weights are still random, so the unimodal
    protocol uses the paired network with placeholders, as a run without a branch does."""
    tmp_path = runs[0]
    plain, branch = ([json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                     for name in ("plain", "branch"))
    assert UNIMODAL[0] in branch[2] and branch[2]["epoch"] == plain[2]["epoch"] == 3
    for key in PAIRED + UNIMODAL:
        assert branch[2][key] == plain[2][key], key


def test_while_the_branch_trains_the_frozen_paired_network_is_scored_once(tmp_path, monkeypatch):
    """eval_every 1: after the last paired epoch the paired network cannot change, so its scores are
    computed once and reused; every record still holds what a whole scoring would give."""
    calls, whole, score_model = [], [], ICMR.score_model

    def spy(model, data, cfg, final=False, codes_dir=None, protocols=None):
        calls.append(protocols)
        if protocols == ("unimodal",):
            whole.append(score_model(model, data, cfg))     # the scoring the two parts stand in for
        return score_model(model, data, cfg, final=final, codes_dir=codes_dir, protocols=protocols)

    monkeypatch.setattr(ICMR, "score_model", spy)
    train.main(_args(tmp_path, "each", "--epoch", "2", "--unimodal_epochs", "2", "--eval_every", "1"))
    assert calls == [None, ("paired",), ("unimodal",), ("unimodal",), None]   # epochs 1, 2, 2, 3, 4 (final)
    records = [json.loads(line) for line in (tmp_path / "each" / "metrics.jsonl").read_text().splitlines()]
    assert len(whole) == 2 and set(whole[0]) >= set(PAIRED + UNIMODAL)
    for record, expected in zip(records[1:3], whole):
        assert {key: record[key] for key in expected} == expected


def test_a_checkpoint_saved_before_the_branch_trains_encodes_one_side_with_the_paired_network(tmp_path):
    """What build_index.py and search.py load: one-side codes from the branch only once it has trained."""
    cfg = build_config(_args(tmp_path, "early", "--unimodal_epochs", "1"))
    solver = Solver(cfg, bits=16, log=lambda *_: None)
    image, text = torch.randn(6, 32), torch.randn(6, 24)
    for epoch, branch_trained in ((0, False), (cfg.epoch, False), (cfg.epoch + 1, True)):
        solver.epoch = epoch
        solver.save_checkpoint()
        for model in ((solver.model, load_trained_model(solver.checkpoint_path)[0]) if epoch == 0 else
                      (load_trained_model(solver.checkpoint_path)[0],)):
            model.eval()
            with torch.no_grad():
                network, scale = (model.unimodal_branch, model.default_scale) if branch_trained else (model, None)
                expected = (network._out(network.image_head, network.fusion(image, None)[0], scale),
                            network._out(network.text_head, network.fusion(None, text)[1], scale))
                torch.testing.assert_close(model.encode_image(image), expected[0], rtol=0, atol=0)
                torch.testing.assert_close(model.encode_text(text), expected[1], rtol=0, atol=0)


def test_the_branch_starts_from_the_trained_network(tmp_path):
    """At the first branch epoch the branch's weights are the paired network's."""
    cfg_args = _args(tmp_path, "start", "--unimodal_epochs", "1")
    seen = {}
    original = Solver.trainbranch

    def spy(solver, mode):
        seen.update({k: torch.equal(v, solver.model.state_dict()[k]) for k, v in solver.branch.state_dict().items()})
        return original(solver, mode)

    Solver.trainbranch = spy
    try:
        train.main(cfg_args)
    finally:
        Solver.trainbranch = original
    assert seen and all(seen.values())


@pytest.mark.parametrize("crash_after", [3, 4])
def test_resume_across_and_inside_the_branch_epochs(tmp_path, runs, crash_after):
    _, _, unbroken = runs
    args = _args(tmp_path, "crash", "--unimodal_epochs", "2", "--save_every", "1")
    train_until_crash(args, crash_after)
    [resumed] = train.main([*args, "--resume", "true"])
    for key in PAIRED + UNIMODAL:
        assert resumed[key] == pytest.approx(unbroken[key], abs=1e-6), key


def test_eval_sequence_batch_feeds_the_branch_each_batch_as_one_sequence_too(tmp_path):
    """UCMFH's batch-as-sequence scoring applies to every network: the branch too, once it encodes."""
    model = build_model(build_config(_args(tmp_path, "sequence", "--unimodal_epochs", "1")), 32, 24, 16, 1.0)
    model.branch_trained = True
    split = load_dataset("small", str(small_dataset(tmp_path.parent))).query                # 100 rows
    image, text = model.encode_protocols(split, 50, "batch")["unimodal"]                   # (100, 16) each
    branch = model.unimodal_branch.eval()
    branch.fusion.batch_as_sequence = True
    for rows in (slice(0, 50), slice(50, 100)):                                             # the two batches
        with torch.no_grad():
            torch.testing.assert_close(image[rows], branch.encode_image(torch.from_numpy(split.image[rows]), 1.0))
            torch.testing.assert_close(text[rows], branch.encode_text(torch.from_numpy(split.text[rows]), 1.0))


def test_unimodal_balanced_0_trains_the_branch_without_the_balanced_loss(tmp_path, runs):
    """unimodal_balanced w (default 1, in `runs`): the branch's loss adds w x HashNet's balanced loss between its
    image-alone and text-alone codes (the paired stage's neighbours); 0 trains the branch as before the key. The
    paired path is the same either way; the one-side codes move."""
    _, _, branch = runs
    [off] = train.main(_args(tmp_path, "off", "--unimodal_epochs", "2", "--eval_every", "3",
                             "--unimodal_balanced", "0"))
    for key in PAIRED:
        assert off[key] == branch[key], key
    assert any(off[key] != branch[key] for key in UNIMODAL)
    records = [json.loads(line) for line in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert ["distill_loss" in r for r in records] == [False, False, False, True, True]
    for record in records[3:]:
        assert "balanced_loss" not in record
        assert record["loss"] == pytest.approx(record["fused_loss"] + 0.5 * record["hash_loss"]
                                               + record["distill_loss"], rel=1e-5)


def test_unimodal_balanced_alone_still_fits_the_input_space(tmp_path):
    """The covariance space is fitted when only the branch's balanced loss needs neighbours, and not without a branch."""
    off = ("--balanced_loss", "false", "--infonce_mask_neighbours", "false")
    for weight, epochs, fitted in (("0", "1", False), ("1", "1", True), ("1", "0", False)):
        cfg = build_config(_args(tmp_path, f"fit{weight}{epochs}", *off, "--unimodal_epochs", epochs,
                                 "--unimodal_balanced", weight))
        assert (Solver(cfg, bits=16, log=lambda *_: None).input_space is not None) == fitted, (weight, epochs)


def test_unimodal_balanced_is_1_by_default_and_0_for_a_checkpoint_saved_before_the_key():
    for dataset in ("demo", "wiki", "zoo-labeltext"):   # chosen on the zoo's validation queries at stop 48
        assert build_config(["--dataset", dataset]).unimodal_balanced == 1.0
    saved = {k: v for k, v in to_dict(build_config([])).items() if k != "unimodal_balanced"}   # saved before it
    assert merge_checkpoint_config(build_config([]), saved, "old.pth").unimodal_balanced == 0.0
