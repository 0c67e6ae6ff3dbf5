"""--unimodal_scale auto (selection/branch_scale.py): the fork keeps exactly the branch its mode alone
would train, chooses by the criterion, records the choice, resumes mid-fork, and skips the fork
where every mode trains at scale 1."""
import numpy as np
import pytest
import torch

import train
from config import SELECT_CRITERIA, ConfigError, build_config
from conftest import run_records, small_dataset, train_until_crash
from selection import branch_scale, choose

UNIMODAL = ("unimodal_i2t_map", "unimodal_t2i_map", "val_unimodal_i2t_map", "val_unimodal_t2i_map")


def _args(tmp_path, name, *extra):
    return ["--dataset", "small", "--data_root", str(small_dataset(tmp_path.parent)), "--hash_lens", "16",
            "--epoch", "2", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--batch_size",
            "64", "--modality_dropout", "0", "--val_queries", "100", "--device", "cpu", "--unimodal_epochs", "3",
            "--unimodal_select_epochs", "2", "--eval_every", "0", "--output_dir", str(tmp_path / name),
            "--checkpoint_dir", str(tmp_path / name / "ck"), "--balanced_neighbours", "covariance", *extra]


def _branch_weights(tmp_path, name):
    [path] = (tmp_path / name / "ck").rglob("*.pth")
    return torch.load(path, map_location="cpu", weights_only=False)["unimodal_branch"]


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    """An auto run with the real criteria."""
    tmp_path = tmp_path_factory.mktemp("auto")
    [result] = train.main(_args(tmp_path, "auto", "--unimodal_scale", "auto"))
    return tmp_path, result


def _favour(monkeypatch, winner):
    """The criteria of the candidates in BRANCH_CANDIDATES' order: `winner` scores 1, the others 0."""
    order = iter(branch_scale.BRANCH_CANDIDATES)
    monkeypatch.setattr(choose, "network_criteria", lambda *a, **k: dict.fromkeys(
        SELECT_CRITERIA, 1.0 if next(order) == winner else 0.0))


@pytest.mark.parametrize("winner", branch_scale.BRANCH_CANDIDATES)
def test_auto_keeps_the_branch_its_mode_alone_would_train(tmp_path, monkeypatch, winner):
    [fixed] = train.main(_args(tmp_path, "fixed", "--unimodal_scale", winner))
    _favour(monkeypatch, winner)
    [chosen] = train.main(_args(tmp_path, "auto", "--unimodal_scale", "auto"))
    assert chosen["branch_selection"]["chosen"] == chosen["unimodal_scale"] == winner
    assert fixed["unimodal_scale"] == winner and fixed["branch_selection"] is None
    for key in UNIMODAL:
        assert chosen[key] == fixed[key], key
    for key, value in _branch_weights(tmp_path, "fixed").items():
        assert torch.equal(_branch_weights(tmp_path, "auto")[key], value), key
    # the epoch after the fork trains the winner alone, at its scale
    fork, after = run_records(tmp_path / "auto")[2:4], run_records(tmp_path / "auto")[4]
    assert [set(r) >= {"final_loss", "plain_loss"} for r in fork] == [True, True]
    assert "branch_selection" not in fork[0] and fork[1]["branch_selection"]["chosen"] == winner
    assert after["scale"] == run_records(tmp_path / "fixed")[4]["scale"] and "final_loss" not in after


def test_auto_chooses_the_candidate_with_the_higher_criterion(auto):
    tmp_path, result = auto
    record = result["branch_selection"]
    assert record["candidates"] == list(branch_scale.BRANCH_CANDIDATES) and record["criterion"] == "shared"
    assert record["values"] == [found["shared"] for found in record["all_criteria"]]
    assert record["chosen"] == record["candidates"][int(np.argmax(record["values"]))]
    assert record["all_criteria"][0] != record["all_criteria"][1]     # each candidate scored on its own codes
    assert sorted(record["all_criteria"][0]) == sorted(SELECT_CRITERIA) and record["epochs"] == 2
    assert run_records(tmp_path / "auto")[3]["branch_selection"] == record
    # each candidate trains at its own scale
    first = run_records(tmp_path / "auto")[2]
    assert first["final_scale"] > 1.0 and first["plain_scale"] == 1.0


def test_a_run_stopped_inside_the_fork_resumes_to_the_unbroken_one(tmp_path, auto):
    _, unbroken = auto
    args = _args(tmp_path, "crash", "--unimodal_scale", "auto", "--save_every", "1")
    train_until_crash(args, 3)    # after the fork's first epoch (paired epochs 1-2): both candidates saved
    [resumed] = train.main([*args, "--resume", "true"])
    assert resumed["branch_selection"]["chosen"] == unbroken["branch_selection"]["chosen"]
    for key in UNIMODAL:
        assert resumed[key] == pytest.approx(unbroken[key], abs=1e-6), key


def test_no_fork_where_every_mode_trains_at_scale_one(tmp_path):
    [result] = train.main(_args(tmp_path, "off", "--unimodal_scale", "auto", "--use_progressive_hash", "false"))
    assert result["branch_selection"] is None and result["unimodal_scale"] == "final"
    assert not any("plain_loss" in record for record in run_records(tmp_path / "off"))


def test_unimodal_select_epochs_must_be_positive():
    with pytest.raises(ConfigError, match="--unimodal_select_epochs: must be at least 1, got 0"):
        build_config(["--unimodal_select_epochs", "0"])
    with pytest.raises(ConfigError, match="unimodal_scale: .*auto, final, plain, ramp"):
        build_config(["--unimodal_scale", "steep"])
