"""--train_precision bf16: the training passes' matrix products in bfloat16 (torch.autocast); the weights,
the optimiser, the losses and the scoring stay float32. Every linear layer's call is recorded."""
import re

import pytest
import torch
import torch.nn.functional as F

import ICMR
import train
from config import ConfigError, build_config
from conftest import run_records
from test_train import SMALL

# one paired epoch with modality dropout (its one-side rows included) and one epoch of the unimodal branch
SETTINGS = [*SMALL, "--epoch", "1", "--hash_lens", "16", "--modality_dropout", "0.5", "--unimodal_epochs", "1",
            "--train_limit", "300", "--eval_every", "0", "--balanced_neighbours", "auto"]   # the default's fork too


def run(tmp_path, precision, monkeypatch):
    """Train on the demo set; returns the results and (grad enabled, output dtype) of every linear call
    (and ("loss", input dtype) of every call of the loss)."""
    calls, linear, loss = [], F.linear, ICMR.ucmfh_loss

    def recording(*args, **kwargs):
        out = linear(*args, **kwargs)
        calls.append((torch.is_grad_enabled(), out.dtype))
        return out
    monkeypatch.setattr(F, "linear", recording)
    monkeypatch.setattr(ICMR, "ucmfh_loss", lambda *args: calls.append(("loss", {a.dtype for a in args[:4]})) or
                        loss(*args))
    [result] = train.main(["--dataset", "demo", "--data_root", str(tmp_path / "data"), "--train_precision", precision,
                           "--output_dir", str(tmp_path / precision), "--checkpoint_dir", str(tmp_path / "ck"),
                           *SETTINGS])
    return result, calls


def test_bf16_trains_in_bfloat16_and_keeps_weights_losses_and_scores_float32(tmp_path, monkeypatch):
    result, calls = run(tmp_path, "bf16", monkeypatch)
    losses = [dtypes for kind, dtypes in calls if kind == "loss"]
    # 2 paired steps x balanced_neighbours auto's 2 candidates, then 2 branch steps
    assert len(losses) == 6 and all(dtypes == {torch.float32} for dtypes in losses)
    calls = [call for call in calls if call[0] != "loss"]
    trained = [dtype for grad, dtype in calls if grad]            # the paired and the branch's training passes
    assert len(trained) > 20 and set(trained) == {torch.bfloat16}
    assert torch.float32 in {dtype for grad, dtype in calls if not grad}   # scoring encodes in float32
    checkpoint = torch.load(tmp_path / "ck" / "hash" / "demo_hash_16.pth", weights_only=True)
    for part in ("fusion", "image_head", "unimodal_branch"):
        assert {value.dtype for value in checkpoint[part].values() if value.is_floating_point()} == {torch.float32}
    records = run_records(tmp_path / "bf16")
    assert [r["epoch"] for r in records] == [1, 2] and "distill_loss" in records[1]
    for record in records:
        assert all(torch.isfinite(torch.tensor(record[k])) for k in ("loss", "fused_loss", "hash_loss"))
    for key in ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map"):
        assert 0.0 < result[key] < 1.0
    assert "train_precision: bf16" in (tmp_path / "bf16" / "config.yaml").read_text()


def test_fp32_the_default_trains_in_float32():
    import numpy as np
    from bench_epoch_cli import synthetic_split
    from data import DatasetSplits
    from ICMR import Solver

    cfg = build_config(["--dataset", "synthetic", "--device", "cpu", *SMALL])
    assert cfg.train_precision == "fp32"
    split = synthetic_split(32, np.random.default_rng(0), dim=16)
    solver = Solver(cfg, bits=16, data=DatasetSplits("synthetic", split, split, split), log=lambda *_: None)
    with solver.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert F.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ConfigError, match="--train_precision: 'fp16' is not one of fp32, bf16"):
        build_config(["--dataset", "demo", "--train_precision", "fp16"])


def test_bench_epoch_times_the_precision_it_is_given(capsys):
    import bench_epoch_cli
    bench_epoch_cli.main(["--pairs", "16", "--batch_size", "16", "--epochs", "1", "--bits", "16",
                          "--modality_dropout", "0", "--train_precision", "bf16", "--infonce_mask_neighbours", "false",
                          "--balanced_neighbours", "both"])
    assert ("modality_dropout 0.0, train_precision bf16, infonce_mask_neighbours False, balanced_neighbours both, "
            in capsys.readouterr().out)


def test_bench_epoch_counts_the_temperature_forks_dropped_epochs(capsys):
    import bench_epoch_cli
    bench_epoch_cli.main(["--pairs", "16", "--batch_size", "16", "--epochs", "1", "--bits", "16",
                          "--modality_dropout", "0", "--late_temperature", "auto"])
    out = capsys.readouterr().out
    epoch = float(re.search(r"seconds per epoch at modality_dropout 0 \(median of 1\): ([\d.]+)", out).group(1))
    fork = re.search(r"a 100-epoch run: 2 dropped candidates x 40 epochs = at least (\d+) s", out)
    assert fork and abs(int(fork.group(1)) - 80 * epoch) <= 1   # switch at 60 of 100: epochs 61-100, twice; rounding


def test_bench_epoch_counts_the_neighbour_forks_dropped_epochs(capsys):
    import bench_epoch_cli
    bench_epoch_cli.main(["--pairs", "16", "--batch_size", "16", "--epochs", "1", "--bits", "16",
                          "--modality_dropout", "0"])   # balanced_neighbours auto: the default
    out = capsys.readouterr().out
    epoch = float(re.search(r"seconds per epoch at modality_dropout 0 \(median of 1\): ([\d.]+)", out).group(1))
    fork = re.search(r"a 100-epoch run: 1 dropped candidate x 10 epochs = about (\d+) to (\d+) s", out)
    assert fork and abs(int(fork.group(1)) - 10 * epoch) <= 1 and fork.group(1) == fork.group(2)   # one rate


def test_bench_epoch_refuses_an_unknown_precision_in_one_line(capsys):
    import bench_epoch_cli
    with pytest.raises(SystemExit) as exit_info:
        bench_epoch_cli.main(["--train_precision", "fp16"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]   # argparse's "<prog>: error: ..." line
    assert last.endswith(": error: --train_precision: 'fp16' is not one of fp32, bf16")


NO_BF16 = {"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": False}


@pytest.mark.parametrize("precision, found, task, warned", [
    ("bf16", NO_BF16, "train_hash", True),
    ("bf16", {**NO_BF16, "avx512_bf16": True}, "train_hash", False),
    ("bf16", {**NO_BF16, "amx_bf16": True}, "train_hash", False),
    ("bf16", {"architecture": "aarch64"}, "train_hash", False),
    ("bf16", NO_BF16, "test_hash", False),           # scoring runs in float32 whatever the setting
    ("fp32", NO_BF16, "train_hash", False)])
def test_bf16_on_a_cpu_that_would_emulate_it_warns_in_one_line(precision, found, task, warned, monkeypatch, capsys):
    def stop(*_):   # the warning comes before the data are read; stop there
        raise train.DataError("stopped after the warning")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: found)
    monkeypatch.setattr(train, "load_dataset", stop)
    with pytest.raises(SystemExit):
        train.main(["--dataset", "demo", "--device", "cpu", "--train_precision", precision, "--task", task])
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "error: stopped after the warning"
    warning = ("warning: --train_precision bf16: this CPU has no bfloat16 instructions (avx512_bf16 or AMX), so "
               "training runs emulated, many times slower than --train_precision fp32")
    assert lines[:-1] == ([warning] if warned else [])
