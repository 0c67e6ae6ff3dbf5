"""scripts/compare_reference.py against a fake reference checkout written here (the interface of
XinyuXia97/UCMFH: ICMR.Solver(config).train() -> (mean, i2t, t2i), a load_dataset.py that opens a
hard-coded <folder>/<name>/*.pkl with the builtin open), on tiny 512-d pickles."""
import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import compare_reference_cli as compare_cli   # scripts/compare_reference.py (conftest)
import train
from config import build_config
from study.reference import compatible_argv, reference_dataset_name, summarize, welch_p

ROOT = Path(__file__).resolve().parents[1]

FAKE_LOADER = """\
import pickle

def load_dataset(dataset, batch_size):
    splits = {}
    for split in ("train", "query", "retrieval"):
        with open({data_path!r} + dataset + '/' + split + '.pkl', 'rb') as f_pkl:
            splits[split] = pickle.load(f_pkl)
    return splits
"""
# evaluate.py and ICMR.py share their names with this project's modules: the reference's must win
FAKE_EVALUATE = "MARK = 'reference evaluate'\n"
FAKE_ICMR = """\
import os
import torch
from evaluate import MARK
from load_dataset import load_dataset

class Solver:
    def __init__(self, config):
        assert (config.dataset, config.device, config.task, MARK) == ("mirflickr", "cpu", 1, "reference evaluate")
        self.config = config
        self.data = load_dataset(config.dataset, 128)

    def trainhash(self):
        return 0.0

    def train(self):
        for _ in range(self.config.epoch):
            self.trainhash()
        open(os.path.join("checkpoints", "hash", "mirflickr_hash_%d.pth" % self.config.hash_lens), "wb").close()
        {failure}
        i2t = float(self.data["query"]["image"][0, 0])
        t2i = self.config.hash_lens / 1000 + self.config.epoch / 100 + torch.rand(1).item() / 1000
        return (i2t + t2i) / 2, i2t, t2i
"""


def fake_reference(folder, failure="pass", data_path="/home/summer/data/Dataset/", loader=FAKE_LOADER):
    """A checkout whose load_dataset.py reads <data_path><name>/ (the released code's hard-coded
    folder by default; a user's checkout may already point elsewhere)."""
    folder.mkdir()
    (folder / "load_dataset.py").write_text(loader.replace("{data_path!r}", repr(data_path)))
    (folder / "evaluate.py").write_text(FAKE_EVALUATE)
    (folder / "ICMR.py").write_text(FAKE_ICMR.format(failure=failure))
    return folder


def tiny_dataset(root, name="tiny", dim=512, rows=128):
    rng = np.random.default_rng(0)
    (root / name).mkdir(parents=True)
    for split in ("train", "query", "retrieval"):
        label = np.eye(4, dtype=np.int64)[rng.integers(0, 4, rows)]
        split_data = {"image": rng.standard_normal((rows, dim)).astype(np.float32) + label @ np.ones((4, dim)),
                      "text": rng.standard_normal((rows, dim)).astype(np.float32), "label": label}
        (root / name / f"{split}.pkl").write_bytes(pickle.dumps(split_data))
    return root


def fake_train_main(argv):
    """train.main's contract without the training: results.json in --output_dir, from the parsed flags."""
    cfg = build_config(argv)
    result = {"dataset": cfg.dataset, "bits": cfg.hash_lens[0], "seed": cfg.seed, "epoch": cfg.epoch,
              "i2t_map": 0.5 + cfg.seed / 100, "t2i_map": 0.4, "train_seconds": 2.0 * cfg.epoch}
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / "results.json").write_text(json.dumps(result))
    return [result]


def run_cli(tmp_path, reference, *extra, dataset="tiny"):
    return compare_cli.main(["--reference", str(reference), "--dataset", dataset, "--data_root",
                             str(tmp_path / "data"), "--bits", "16", "--epoch", "1", "--threads", "1",
                             "--out", str(tmp_path / "out"), *extra])


def test_both_sides_run_summarise_and_resume(tmp_path, capsys, monkeypatch):
    # a checkout already pointed at another data folder is redirected as well
    reference = fake_reference(tmp_path / "ucmfh", data_path="/srv/features/ucmfh/")
    tiny_dataset(tmp_path / "data")
    rows = run_cli(tmp_path, reference, "--seeds", "0", "3")   # the compatible side trains for real
    out = tmp_path / "out"
    query = pickle.loads((tmp_path / "data" / "tiny" / "query.pkl").read_bytes())
    for seed in (0, 3):
        ref = json.loads((out / "reference" / "16bit" / f"seed{seed}" / "results.json").read_text())
        torch.manual_seed(seed)
        # the data the fake read came through the redirected path; bits, epoch and seed reached it
        assert ref["i2t_map"] == pytest.approx(float(query["image"][0, 0]))
        assert ref["t2i_map"] == pytest.approx(0.016 + 0.01 + torch.rand(1).item() / 1000)
        assert (ref["seed"], ref["epoch"], ref["bits"], len(ref["epoch_seconds"])) == (seed, 1, 16, 1)
        assert (out / "reference" / "16bit" / f"seed{seed}" / "reference.log").is_file()
        compatible = out / "compatible" / "16bit" / f"seed{seed}"
        result = json.loads((compatible / "results.json").read_text())
        assert (result["seed"], result["epoch"], result["bits"]) == (seed, 1, 16)
        assert 0 <= result["i2t_map"] <= 1 and (compatible / "train.log").is_file()
        assert not (compatible / "checkpoints").exists()
    (row,) = rows
    assert row["bits"] == 16 and row["seeds"] == [0, 3] and len(row["compatible_t2i_map"]) == 2
    assert row["delta_i2t_map"] == pytest.approx(row["compatible_i2t_map_mean"] - row["reference_i2t_map_mean"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == json.loads(json.dumps(rows)) and summary["seeds"] == [0, 3]
    markdown = (out / "summary.md").read_text()
    assert "| bits | reference I2T | compatible I2T |" in markdown and "\n| 16 | " in markdown
    printed = capsys.readouterr().out
    assert "4 to run" in printed and "reference s/epoch" in printed

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(train, "main", must_not_run)
    monkeypatch.setattr(subprocess, "run", must_not_run)
    assert run_cli(tmp_path, reference, "--seeds", "0", "3") == rows
    assert "4 already done, 0 to run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:    # the folder holds 1-epoch runs
        run_cli(tmp_path, reference, "--seeds", "0", "--epoch", "2")
    assert exit_info.value.code == 2
    assert "a run of 1 epochs, not 2" in capsys.readouterr().err


def test_missing_reference_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, tmp_path / "nowhere", "--seeds", "0", "1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a checkout of XinyuXia97/UCMFH" in err and "ICMR.py" in err


def test_a_loader_that_opens_no_pickle_is_one_line(tmp_path, capsys):
    reference = fake_reference(tmp_path / "ucmfh", loader="import numpy\nload = numpy.load\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, reference, "--seeds", "0", "1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{reference}/load_dataset.py" in err
    assert "expected it to open train.pkl, query.pkl and retrieval.pkl with the builtin open" in err


def test_dataset_the_reference_cannot_read_is_one_line(tmp_path, capsys):
    reference = fake_reference(tmp_path / "ucmfh")
    tiny_dataset(tmp_path / "data", name="narrow", dim=64)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, reference, "--seeds", "0", "1", dataset="narrow")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 512-d image and text features, these are 64-d and 64-d" in err


def test_failed_reference_run_names_its_log(tmp_path, capsys, monkeypatch):
    reference = fake_reference(tmp_path / "ucmfh", failure="raise RuntimeError('out of memory')")
    tiny_dataset(tmp_path / "data")
    monkeypatch.setattr(train, "main", fake_train_main)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, reference, "--seeds", "0", "1")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    log = tmp_path / "out" / "reference" / "16bit" / "seed0" / "reference.log"
    assert err.count("\n") == 1 and "exit status 1" in err and str(log) in err
    assert "out of memory" in log.read_text() and not (log.parent / "results.json").exists()


@pytest.mark.parametrize("dataset", ["mirflickr", "nus-wide", "mscoco", "demo"])
def test_both_sides_train_with_the_same_head_lr_schedule(tmp_path, dataset):
    """The reference picks its schedule by the dataset name it runs under (mirflickr's for a name it
    does not know); the compatible side takes the dataset's own config."""
    name = reference_dataset_name(dataset)
    compatible = build_config(compatible_argv(dataset, tmp_path, 16, 0, 1, tmp_path))
    reference = build_config(compatible_argv(name, tmp_path, 16, 0, 1, tmp_path))
    assert name in ("mirflickr", "nus-wide", "mscoco")
    assert (compatible.lr_milestones, compatible.lr_gamma) == (reference.lr_milestones, reference.lr_gamma)


def test_welch_test_and_verdict():
    a, b = [0.50, 0.52, 0.51], [0.60, 0.63, 0.61]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p([0.5], b) is None and welch_p([0.5, 0.5], [0.5, 0.5]) is None
    runs = [{"side": side, "bits": 16, "seed": seed, "epoch": 2, "i2t_map": value, "t2i_map": 0.4 + seed / 100,
             "train_seconds": 3.0 if side == "reference" else 1.0}
            for side, values in (("reference", a), ("compatible", b)) for seed, value in enumerate(values)]
    (row,) = summarize(runs, [16])
    assert row["same_i2t_map"] is False and row["same_t2i_map"] is True and row["p_t2i_map"] == pytest.approx(1.0)
    assert row["delta_i2t_map"] == pytest.approx(np.mean(b) - np.mean(a))
    assert (row["reference_seconds_per_epoch"], row["compatible_seconds_per_epoch"]) == (1.5, 0.5)


def test_bench_epoch_times_the_reference_on_the_same_pairs(tmp_path, capsys):
    """scripts/bench_epoch.py --reference: the reference (here the fake checkout) reads the bench's
    own training pairs and its epoch times are reported beside ours."""
    import bench_epoch_cli
    reference = fake_reference(tmp_path / "ucmfh")
    bench_epoch_cli.main(["--pairs", "16", "--batch_size", "16", "--epochs", "1", "--bits", "16",
                          "--reference", str(reference)])
    out = capsys.readouterr().out
    assert "seconds per unimodal-branch epoch (median of 1" in out
    for rate in ("0", "0.75"):   # auto's candidates, each timed; the selection's cost from them
        assert f"seconds per epoch at modality_dropout {rate} (median of 1)" in out
    assert "auto's selection for a 100-epoch run: 2 candidates x 18 epochs on 90% of the pairs" in out
    assert out.count("reference epoch ") == 1 and "reference UCMFH code (measured now)" in out
    assert "x faster (target: at least 6x" in out
