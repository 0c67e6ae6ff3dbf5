"""--balanced_neighbours auto, the default (selection/paired_fork.py): a fork of the paired stage between
covariance and features keeps exactly the network its chosen source alone would train, scores every
training pair (two halves, each ranked against the other), records the choice and resumes mid-fork; a
shorter fork chooses after its epochs; no fork beside another fork or where no paired loss uses neighbours."""
import itertools

import numpy as np
import pytest

import train
from config import NEIGHBOUR_CANDIDATES, SELECT_CRITERIA, ConfigError, build_config
from data import load_dataset
from conftest import assert_same_run, fork_args, run_records, small_dataset, train_until_crash
from selection import choose
from selection.paired_fork import no_neighbour_fork

EPOCHS = 3   # paired epochs, all of them the fork's; then 1 branch epoch (conftest.fork_args)
SCORES = ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map", "val_i2t_map", "val_unimodal_t2i_map")


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    """(its folder's parent, results) of a run of balanced_neighbours auto scored by the real criterion."""
    folder = tmp_path_factory.mktemp("neighbours")
    return folder, train.main(fork_args(folder, "auto", EPOCHS, "--balanced_neighbours", "auto"))[0]


@pytest.mark.parametrize("winner", NEIGHBOUR_CANDIDATES)
def test_auto_keeps_the_network_its_source_alone_would_train(tmp_path, monkeypatch, winner):
    [fixed] = train.main(fork_args(tmp_path, "fixed", EPOCHS, "--balanced_neighbours", winner))
    _favour(monkeypatch, winner)
    [chosen] = train.main(fork_args(tmp_path, "auto", EPOCHS, "--balanced_neighbours", "auto"))
    assert chosen["neighbour_selection"]["chosen"] == winner and fixed["neighbour_selection"] is None
    assert_same_run(tmp_path, chosen, fixed, SCORES)
    records = run_records(tmp_path / "auto")
    assert all({"nb_covariance_loss", "nb_features_loss", "loss"} <= set(r) for r in records[:3])
    assert records[0]["loss"] == records[0]["nb_covariance_loss"]         # the first candidate's, unprefixed
    assert records[2]["neighbour_selection"]["chosen"] == winner and "nb_features_loss" not in records[3]


def test_auto_scores_every_training_pair_by_cluster(auto, monkeypatch):
    tmp_path, result = auto
    record = result["neighbour_selection"]
    assert record["candidates"] == list(NEIGHBOUR_CANDIDATES) and record["criterion"] == "cluster"
    assert record["values"] == [found["cluster"] for found in record["all_criteria"]]
    assert record["chosen"] == NEIGHBOUR_CANDIDATES[record["values"].index(max(record["values"]))]
    assert record["reason"].startswith("highest cluster of the paired codes of 250 training pairs")
    assert record["scored_pairs"] == 250 and run_records(tmp_path / "auto")[2]["neighbour_selection"] == record
    # the halves: disjoint, every training row in one of them, each ranked against the other
    seen = []
    monkeypatch.setattr(choose, "network_criteria", lambda model, protocol, queries, database, *rest: seen.append(
        (queries.image, database.image)) or dict.fromkeys(SELECT_CRITERIA, 0.0))

    class Solver:   # what halves_criteria reads of a solver
        cfg, num_train, model = build_config(["--seed", "3"]), 250, None
        data = load_dataset("small", str(small_dataset(tmp_path.parent)))
    every, scored = choose.halves_criteria(Solver, "paired", ["x"], lambda _: None, "balanced_neighbours")
    assert scored == 250 and every == [dict.fromkeys(SELECT_CRITERIA, 0.0)]
    (first, second), (third, fourth) = seen
    assert np.array_equal(first, fourth) and np.array_equal(second, third) and len(first) + len(second) == 250
    assert np.array_equal(np.unique(np.concatenate([first, second]), axis=0),
                          np.unique(Solver.data.train.image[:250], axis=0))


def _favour(monkeypatch, winner):
    """Every halves_criteria call: `winner`'s criteria 1, the other's 0 (each candidate is scored on two halves)."""
    calls = itertools.cycle([name for name in NEIGHBOUR_CANDIDATES for _ in (0, 1)])
    monkeypatch.setattr(choose, "network_criteria", lambda *a, **k: dict.fromkeys(
        SELECT_CRITERIA, 1.0 if next(calls) == winner else 0.0))


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """The results of a run of balanced_neighbours features."""
    return train.main(fork_args(tmp_path_factory.mktemp("features"), "fixed", EPOCHS, "--balanced_neighbours",
                                "features"))[0]


@pytest.mark.parametrize("crash_after", [2, 3])   # inside the fork; after its choice (the branch still to train)
def test_a_resumed_run_trains_as_the_unbroken_one(tmp_path, monkeypatch, crash_after, features):
    _favour(monkeypatch, "features")
    args = fork_args(tmp_path, "crash", EPOCHS, "--balanced_neighbours", "auto", "--save_every", "1")
    train_until_crash(args, crash_after)
    [resumed] = train.main([*args, "--resume", "true"])
    assert resumed["neighbour_selection"]["chosen"] == "features"
    for key in SCORES:
        assert resumed[key] == pytest.approx(features[key], abs=1e-6), key


def test_the_dropout_candidates_train_with_the_first_source(tmp_path, monkeypatch):
    """modality_dropout auto's short candidates run before the fork: they take its first candidate."""
    trained = []

    class Candidate:
        def __init__(self, cfg, **_):
            trained.append(cfg.balanced_neighbours)
            self.model = None

        def train(self):
            return {}
    monkeypatch.setattr(choose, "network_criteria", lambda *a, **k: dict.fromkeys(SELECT_CRITERIA, 0.0))
    cfg = build_config(fork_args(tmp_path, "x", EPOCHS, "--balanced_neighbours", "auto", "--modality_dropout", "auto"))
    data = load_dataset("small", str(small_dataset(tmp_path.parent)))
    choose.choose_modality_dropout(cfg, 16, data, Candidate, log=lambda *_: None)
    assert trained == [NEIGHBOUR_CANDIDATES[0]] * 2


def test_a_shorter_fork_chooses_after_its_epochs_and_the_kept_source_trains_on(tmp_path, monkeypatch, features):
    _favour(monkeypatch, "features")
    [chosen] = train.main(fork_args(tmp_path, "auto", EPOCHS, "--neighbour_fork_epochs", "2"))   # auto: the default
    for key in SCORES:
        assert chosen[key] == features[key], key
    records = run_records(tmp_path / "auto")
    assert records[1]["neighbour_selection"]["epochs"] == 2 and "nb_features_loss" in records[1]
    assert "nb_features_loss" not in records[2] and "neighbour_selection" not in records[2]


@pytest.mark.parametrize("flags, reason", [
    (["--late_temperature", "auto"], "the paired stage forks for --late_temperature auto"),
    (["--select_fork", "0.3"], "the paired stage forks for"),
    (["--preset", "ucmfh"], "no paired loss uses neighbours"),
    (["--balanced_loss", "false", "--infonce_mask_neighbours", "false"], "no paired loss uses neighbours")])
def test_auto_keeps_its_first_candidate_beside_another_fork_or_where_no_loss_uses_neighbours(flags, reason):
    cfg = build_config(flags)
    assert cfg.balanced_neighbours == "auto" and no_neighbour_fork(cfg).startswith(reason)
    assert not no_neighbour_fork(build_config([])) and not no_neighbour_fork(build_config(["--balanced_loss", "false"]))


def test_a_run_whose_losses_use_no_neighbours_trains_one_paired_stage_and_records_why(tmp_path, capsys):
    [result] = train.main(fork_args(tmp_path, "plain", 1, "--balanced_loss", "false",
                                    "--infonce_mask_neighbours", "false"))
    record = result["neighbour_selection"]
    assert record["chosen"] == "covariance" and record["fork"] is False
    assert record["reason"].startswith("without a fork: no paired loss uses neighbours")
    [first] = run_records(tmp_path / "plain")[:1]
    assert not any(key.startswith("nb_") for key in first) and first["neighbour_selection"] == record
    assert "balanced_neighbours auto: covariance, without a fork: no paired loss" in capsys.readouterr().out


def test_the_fork_length_must_not_be_negative():
    with pytest.raises(ConfigError, match="--neighbour_fork_epochs: must be >= 0"):
        build_config(["--neighbour_fork_epochs", "-1"])
