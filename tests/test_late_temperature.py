"""--late_temperature (selection/late_temperature.py): a number switches the temperature at the
switch epoch and not before; auto keeps exactly the network its chosen value alone would train,
chooses by the criterion, records the choice and resumes mid-fork."""
import json

import numpy as np
import pytest

import train
from config import SELECT_CRITERIA, ConfigError, build_config
from conftest import assert_same_run, fork_args, run_records, train_until_crash
from selection import choose, late_temperature

SCORES = ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map", "val_i2t_map", "val_unimodal_t2i_map")
CANDIDATES = (0.5, 0.3, 1.0)     # LATE_FACTORS x the default temperature 0.5


def _args(tmp_path, name, *extra):
    """5 paired epochs (the switch: round(0.6 x 5) = epoch index 3, so epochs 4 and 5 are late), 1 branch epoch."""
    return fork_args(tmp_path, name, 5, "--balanced_neighbours", "covariance", *extra)


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    """An auto run with the real criterion."""
    tmp_path = tmp_path_factory.mktemp("late")
    [result] = train.main(_args(tmp_path, "auto", "--late_temperature", "auto"))
    return tmp_path, result


def test_the_candidates_are_the_factors_of_the_temperature():
    assert late_temperature.candidates(build_config([])) == list(CANDIDATES)
    assert late_temperature.candidates(build_config(["--temperature", "0.2"])) == [0.2, 0.12, 0.4]
    assert late_temperature.switch_epoch(build_config(["--epoch", "10"])) == 6
    assert late_temperature.switch_epoch(build_config(["--epoch", "1"])) == 0      # no epoch before: the first


def test_a_late_temperature_changes_training_from_the_switch_on_only(tmp_path):
    train.main(_args(tmp_path, "off"))
    train.main(_args(tmp_path, "late", "--late_temperature", "0.3"))
    off, late = run_records(tmp_path / "off"), run_records(tmp_path / "late")
    assert [r["temperature"] for r in late] == [0.5, 0.5, 0.5, 0.3, 0.3, 0.3]     # the branch's too
    assert [r["temperature"] for r in off] == [0.5] * 6
    # equal before the switch (to float rounding: with one thread, two runs in one process can differ
    # in the last bits), far apart after it
    assert [r["loss"] for r in late[:3]] == pytest.approx([r["loss"] for r in off[:3]], rel=1e-6)
    assert abs(late[3]["loss"] - off[3]["loss"]) > 0.01 and abs(late[5]["loss"] - off[5]["loss"]) > 0.01


def _favour(monkeypatch, winner):
    """The criteria of the candidates in their order: `winner` scores 1, the others 0."""
    order = iter(CANDIDATES)
    monkeypatch.setattr(choose, "network_criteria", lambda *a, **k: dict.fromkeys(
        SELECT_CRITERIA, 1.0 if next(order) == winner else 0.0))


@pytest.mark.parametrize("winner", CANDIDATES)
def test_auto_keeps_the_network_its_value_alone_would_train(tmp_path, monkeypatch, winner):
    [fixed] = train.main(_args(tmp_path, "fixed", "--late_temperature", str(winner)))
    _favour(monkeypatch, winner)
    [chosen] = train.main(_args(tmp_path, "auto", "--late_temperature", "auto"))
    assert chosen["temperature_selection"]["chosen"] == winner and fixed["temperature_selection"] is None
    assert_same_run(tmp_path, chosen, fixed, SCORES)
    records = run_records(tmp_path / "auto")
    fork = records[3:5]     # paired epochs 4 and 5: every candidate, the first one's statistics unprefixed
    assert all({"t0.3_loss", "t0.5_loss", "t1_loss", "loss"} <= set(r) for r in fork)
    assert fork[0]["loss"] == fork[0]["t0.5_loss"] and "temperature_selection" not in fork[0]
    assert fork[1]["temperature_selection"]["chosen"] == winner
    assert records[5]["temperature"] == winner and "t1_loss" not in records[5]    # the branch: the winner's value


def test_auto_chooses_the_candidate_with_the_higher_criterion(auto):
    tmp_path, result = auto
    record = result["temperature_selection"]
    assert record["candidates"] == list(CANDIDATES) and record["criterion"] == "cluster"
    assert record["values"] == [found["cluster"] for found in record["all_criteria"]]
    assert record["chosen"] == CANDIDATES[int(np.argmax(record["values"]))]
    assert len({json.dumps(found, sort_keys=True) for found in record["all_criteria"]}) == 3   # each its own codes
    assert sorted(record["all_criteria"][0]) == sorted(SELECT_CRITERIA) and record["switch_epoch"] == 4
    assert run_records(tmp_path / "auto")[4]["temperature_selection"] == record
    assert record["reason"].startswith("highest cluster of the paired codes of ")


def test_a_run_stopped_inside_the_fork_resumes_to_the_unbroken_one(tmp_path, auto):
    _, unbroken = auto
    args = _args(tmp_path, "crash", "--late_temperature", "auto", "--save_every", "1")
    train_until_crash(args, 4)    # after the fork's first epoch: every candidate saved in the checkpoint
    [resumed] = train.main([*args, "--resume", "true"])
    assert resumed["temperature_selection"]["values"] == pytest.approx(unbroken["temperature_selection"]["values"])
    for key in SCORES:
        assert resumed[key] == pytest.approx(unbroken[key], abs=1e-6), key


@pytest.mark.parametrize("flags, message", [
    (["--late_temperature", "warm"], "--late_temperature: expected auto or a number"),
    (["--late_temperature", "-0.1"], "--late_temperature/--late_temperature_at: need auto or >= 0"),
    (["--late_temperature_at", "1"], "--late_temperature/--late_temperature_at: need auto or >= 0"),
])
def test_bad_late_temperatures_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        build_config(flags)
