"""--tensorboard: the event file of a run holds what metrics.jsonl and histograms.json hold."""
import importlib.metadata
import importlib.util
import json

import pytest
import ICMR
import train
from config import RUN_KEYS, ConfigError, build_config
from runio import tensorboard_log
from conftest import run_records, small_dataset
from runio.run_folder import RunFolder
from test_train import SMALL

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

SELECTION = {"setting": "modality_dropout", "candidates": [0.0, 0.75], "criterion": "shared", "values": [0.1, 0.2],
             "all_criteria": [{"shared": 0.1, "balance": 0.5}, {"shared": 0.2, "balance": 0.625}],
             "chosen": 0.75, "reason": "highest shared", "epochs": 1, "train_pairs": 9, "held_out_pairs": 1,
             "seconds": 0.0}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("small"))


def args(tmp_path, data_root, *extra):
    """A 2-epoch run of test_train's small model on conftest's small set, scored at the end."""
    return ["--dataset", "small", "--data_root", str(data_root), "--checkpoint_dir", str(tmp_path / "ck"),
            "--output_dir", str(tmp_path / "run"), "--hash_lens", "16", "--epoch", "2", *SMALL,
            "--eval_every", "0", *extra]


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_the_events_are_the_records_of_metrics_jsonl(tmp_path, data_root, monkeypatch):
    # auto with the project installed as a package; the choice of a setting is recorded, not made here
    monkeypatch.setattr(tensorboard_log, "installed_as_package", lambda: True)
    monkeypatch.setattr(ICMR, "choose_modality_dropout", lambda *a, **k: dict(SELECTION))
    train.main(args(tmp_path, data_root, "--modality_dropout", "auto", "--record_histograms", "true"))
    run = tmp_path / "run"
    records, found = run_records(run), events(run / "tensorboard")
    scalars = found.Tags()["scalars"]
    assert {"i2t_map", "t2i_map", "unimodal_i2t_map"} <= set(records[-1])
    for record in records:
        numbers = {key: value for key, value in record.items() if key != "epoch" and isinstance(value, float)}
        assert {"loss", "scale", "abs_h", "saturated", "quant_error", "bit_balance", "lr_fusion",
                "lr_hash"} <= set(numbers)
        for key, value in numbers.items():
            [tag] = [t for t in scalars if t.split("/", 1)[1] in (key, key.removeprefix("lr_"))
                     and t.startswith("lr/") == key.startswith("lr_")]
            [event] = [e for e in found.Scalars(tag) if e.step == record["epoch"]]
            assert event.value == pytest.approx(value, rel=1e-6, abs=1e-7), (tag, record["epoch"])
    assert found.Scalars("lr/fusion")[0].value == pytest.approx(1e-4)
    # the selection record's criterion values, at the first epoch
    assert records[0]["selection"] == SELECTION
    for candidate, criteria in zip(SELECTION["candidates"], SELECTION["all_criteria"]):
        for name, value in criteria.items():
            [event] = found.Scalars(f"selection/{name}/modality_dropout_{candidate:g}")
            assert event.step == 1 and event.value == pytest.approx(value)
    assert found.Scalars("selection/chosen_modality_dropout")[0].value == 0.75
    # h's histogram at each snapshot of histograms.json, with its counts
    snapshots = json.loads((run / "histograms.json").read_text())["snapshots"]
    assert [s["epoch"] for s in snapshots] == [1, 2]
    for side in ("image", "text"):
        written = found.Histograms(f"h/{side}")
        assert [h.step for h in written] == [1, 2]
        for event, snapshot in zip(written, snapshots):
            assert event.histogram_value.bucket == snapshot[side]
            assert event.histogram_value.num == sum(snapshot[side])


def test_false_writes_none_and_auto_follows_the_installed_package(tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(tensorboard_log, "installed_as_package", lambda: True)
    train.main(args(tmp_path, data_root, "--epoch", "1", "--tensorboard", "false"))
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and not (tmp_path / "run" / "tensorboard").exists()
    monkeypatch.undo()

    def distribution(name):
        if name == "ucmfh-ph" and installed:
            return object()
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    for installed in (True, False):
        assert tensorboard_log.wanted("auto") is installed
        assert tensorboard_log.wanted(True) is True and tensorboard_log.wanted(False) is False
    assert "tensorboard" in RUN_KEYS                 # a resumed run may change it
    assert build_config([]).tensorboard == "auto" and build_config(["--tensorboard"]).tensorboard is True
    with pytest.raises(ConfigError, match="--tensorboard: expected auto, true or false"):
        build_config(["--tensorboard", "sometimes"])
    installed = True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)     # no tensorboard package
    assert tensorboard_log.wanted("auto") is False
    with pytest.raises(ConfigError, match="--tensorboard true: the tensorboard package is not installed"):
        RunFolder(tmp_path / "other").open_events(True, first_step=1)


def test_a_rank_other_than_0_writes_no_events(tmp_path):
    folder = RunFolder(tmp_path / "run", writable=False)
    folder.open_events(True, first_step=1)
    folder.append_metrics({"epoch": 1, "loss": 1.0})
    assert folder.events is None and not (tmp_path / "run").exists()


def test_a_resumed_run_logs_each_epoch_once(tmp_path, data_root, monkeypatch):
    real_save = ICMR.Solver.save_checkpoint

    def killed_before_saving_epoch_2(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        real_save(self)

    monkeypatch.setattr(ICMR.Solver, "save_checkpoint", killed_before_saving_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.main(args(tmp_path, data_root, "--tensorboard", "true"))
    monkeypatch.undo()
    assert [e.step for e in events(tmp_path / "run" / "tensorboard").Scalars("loss/loss")] == [1, 2]
    train.main(args(tmp_path, data_root, "--tensorboard", "true", "--resume", "true"))
    records = run_records(tmp_path / "run")
    logged = events(tmp_path / "run" / "tensorboard").Scalars("loss/loss")
    assert [e.step for e in logged] == [r["epoch"] for r in records] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in records], rel=1e-6)
