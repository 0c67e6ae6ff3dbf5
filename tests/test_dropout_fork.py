"""--modality_dropout auto --select_fork true (selection/paired_fork.py): the candidates are a fork
of the run's first epochs, trained without the held-out pairs, scored on them, and the kept one
goes on with every pair; no separate candidates are trained; the record; resume mid-fork."""
import json

import numpy as np
import pytest
import torch

import ICMR
import train
from config import SELECT_CRITERIA, ConfigError, build_config
from conftest import checkpoint_weights, run_records, small_dataset, train_until_crash
from selection import choose
from selection.choose import split_for_selection
from selection.paired_fork import fork_epochs

SCORES = ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map")


def _args(tmp_path, name, *extra):
    """4 paired epochs, the fork the first 2, 1 branch epoch."""
    return ["--dataset", "small", "--data_root", str(small_dataset(tmp_path.parent)), "--hash_lens", "16",
            "--epoch", "4", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--batch_size",
            "64", "--device", "cpu", "--unimodal_epochs", "1", "--eval_every", "0", "--select_fork", "0.5",
            "--output_dir", str(tmp_path / name), "--checkpoint_dir",
            str(tmp_path / name / "ck"), *extra]


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    """A fork run with the real criterion; separate candidates would fail it."""
    tmp_path = tmp_path_factory.mktemp("dropout_fork")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ICMR, "choose_modality_dropout", lambda *a, **k: pytest.fail("separate candidates trained"))
        [result] = train.main(_args(tmp_path, "fork"))
    return tmp_path, result


def test_the_fork_is_a_share_of_the_paired_epochs():
    assert build_config([]).select_fork == 0                                    # off: separate candidates
    assert fork_epochs(build_config(["--epoch", "10", "--select_fork", "0.6"])) == 6
    assert fork_epochs(build_config(["--epoch", "2", "--select_fork", "1"])) == 2       # the whole stage
    assert fork_epochs(build_config(["--epoch", "10", "--select_fork", "0.01"])) == 1   # at least one
    late = ["--epoch", "10", "--late_temperature", "auto", "--select_fork", "0.9"]
    assert fork_epochs(build_config(late)) == 6                                 # over before the temperature fork
    for bad in ("-0.1", "1.5"):
        with pytest.raises(ConfigError, match="--select_fork"):
            build_config(["--select_fork", bad])


def test_the_fork_chooses_by_the_criterion_on_held_out_pairs_and_records_it(forked):
    tmp_path, result = forked
    record = result["selection"]
    assert record["fork"] and record["candidates"] == [0.0, 0.75] and record["epochs"] == 2
    assert record["values"] == [found["shared"] for found in record["all_criteria"]]
    assert record["chosen"] == record["candidates"][int(np.argmax(record["values"]))] == result["modality_dropout"]
    assert len({json.dumps(found, sort_keys=True) for found in record["all_criteria"]}) == 2   # each its own codes
    assert sorted(record["all_criteria"][0]) == sorted(SELECT_CRITERIA)
    assert record["held_out_pairs"] == record["scored_pairs"] == 62 and record["train_pairs"] == 250 - 62
    assert record["reason"].startswith("highest shared of the paired codes of 62 held-out training pairs "
                                       "(no candidate trained on them) after 2 epochs each: ")
    records = run_records(tmp_path / "fork")
    assert all({"md0_loss", "md0.75_loss", "loss"} <= set(r) for r in records[:2])        # both candidates
    assert records[0]["loss"] == records[0]["md0_loss"] and "selection" not in records[0]
    assert records[1]["selection"] == record and "md0_loss" not in records[2]
    # beside this fork the neighbour source keeps covariance, and the run records why from its first epoch
    kept = result["neighbour_selection"]
    assert kept["chosen"] == "covariance" and not kept["fork"] and records[0]["neighbour_selection"] == kept
    assert kept["reason"] == "without a fork: the paired stage forks for --late_temperature auto or --select_fork"


@pytest.mark.parametrize("holdout", ["0.1", "0"])
def test_no_candidate_trains_on_the_held_out_pairs_and_the_run_then_does(tmp_path, monkeypatch, holdout):
    # select_holdout 0: the fork trains on every pair and scores a draw of them
    seen = {}                                     # epoch -> the training rows its batches held
    real = ICMR.Solver._forward

    def spy(solver, idx, scale=None):
        seen.setdefault(solver.epoch, set()).update(idx.tolist())
        return real(solver, idx, scale)

    monkeypatch.setattr(ICMR.Solver, "_forward", spy)
    [result] = train.main(_args(tmp_path, "spy", "--select_holdout", holdout))
    held = set(split_for_selection(250, 0.1, 0)[0].tolist()) if holdout != "0" else set()
    assert seen[0] == seen[1] == set(range(250)) - held
    assert seen[2] == seen[3] == set(range(250))
    record = result["selection"]
    assert record["train_pairs"] == 250 - len(held) == 250 - record["held_out_pairs"] and record["scored_pairs"] == 62
    assert ("held-out training pairs" in result["selection"]["reason"]) == bool(held)


def _favour(monkeypatch, winner, candidates):
    """The criteria of the candidates in their order: `winner` scores 1, the others 0."""
    order = iter(candidates)
    monkeypatch.setattr(choose, "network_criteria", lambda *a, **k: dict.fromkeys(
        SELECT_CRITERIA, 1.0 if next(order) == winner else 0.0))


@pytest.mark.parametrize("winner", [0.0, 0.75])
def test_the_kept_candidate_is_the_network_a_fork_of_it_alone_trains(tmp_path, monkeypatch, winner):
    # the other candidate's epochs, run in between, leave nothing behind: weights and scores equal
    _favour(monkeypatch, winner, [0.0, 0.75])
    [both] = train.main(_args(tmp_path, "both"))
    _favour(monkeypatch, winner, [winner])
    [alone] = train.main(_args(tmp_path, "alone", "--select_candidates", str(winner)))
    assert both["selection"]["chosen"] == alone["selection"]["chosen"] == winner == both["modality_dropout"]
    assert both["selection"]["epochs"] == alone["selection"]["epochs"] == 2
    for key in SCORES:
        assert both[key] == pytest.approx(alone[key], abs=1e-4), key
    alone_weights = checkpoint_weights(tmp_path / "alone")
    for key, value in checkpoint_weights(tmp_path / "both").items():
        torch.testing.assert_close(value, alone_weights[key], rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.parametrize("winner", [0.0, 0.75])
def test_with_no_held_out_pairs_the_kept_network_is_the_fixed_value_run(tmp_path, monkeypatch, winner):
    # select_holdout 0: the fork trains on every pair, so its kept candidate is --modality_dropout <value>
    _favour(monkeypatch, winner, [0.0, 0.75])
    [forked] = train.main(_args(tmp_path, "forked", "--select_holdout", "0"))
    [fixed] = train.main(_args(tmp_path, "fixed", "--modality_dropout", str(winner)))
    assert forked["modality_dropout"] == fixed["modality_dropout"] == winner and fixed["selection"] is None
    for key in SCORES:
        assert forked[key] == pytest.approx(fixed[key], abs=1e-4), key
    # equal to float rounding (restored tensors can round differently on one thread: 2e-7 seen)
    fixed_weights = checkpoint_weights(tmp_path / "fixed")
    for key, value in checkpoint_weights(tmp_path / "forked").items():
        torch.testing.assert_close(value, fixed_weights[key], rtol=1e-5, atol=1e-5, msg=key)


def test_a_run_stopped_inside_the_fork_resumes_to_the_unbroken_one(tmp_path, forked, monkeypatch):
    _, unbroken = forked
    args = _args(tmp_path, "crash", "--save_every", "1")
    train_until_crash(args, 1)     # after the fork's first epoch: both candidates saved in the checkpoint
    monkeypatch.setattr(ICMR, "choose_modality_dropout", lambda *a, **k: pytest.fail("separate candidates trained"))
    [resumed] = train.main([*args, "--resume", "true"])
    assert resumed["selection"]["values"] == pytest.approx(unbroken["selection"]["values"])
    for key in SCORES:
        assert resumed[key] == pytest.approx(unbroken[key], abs=1e-6), key


def test_streamed_runs_train_separate_candidates(tmp_path):
    [result] = train.main(_args(tmp_path, "streamed", "--stream_train", "on", "--stream_block_rows", "64"))
    assert "fork" not in result["selection"] and result["selection"]["chosen"] in (0.0, 0.75)
