"""Data-parallel training under torchrun: 2 gloo processes on the CPU against one process."""
import json
import subprocess
import sys

import pytest
import torch.distributed as dist

from conftest import ROOT, small_dataset

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

# a small model and no dropout inside the network (its masks are drawn per rank); the modality
# dropout and the balanced loss stay on: their batch-level draws and neighbours must match.
# 250 pairs in batches of 64: the last batch is short (58 rows, 29 per rank).
SETTINGS = ["--dataset", "small", "--hash_lens", "16", "--epoch", "3", "--train_limit", "250", "--batch_size", "64",
            "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--fusion_dropout", "0",
            "--hash_dropout", "0", "--modality_dropout", "0.5", "--balanced_loss", "true", "--val_queries", "100",
            "--eval_batch_size", "64", "--eval_every", "1", "--save_every", "1", "--unimodal_epochs", "1", "--device", "cpu"]
LOSSES = ("loss", "fused_loss", "hash_loss", "balanced_loss")
SCORES = ("i2t_map", "t2i_map", "unimodal_i2t_map", "unimodal_t2i_map", "val_i2t_map", "val_t2i_map")
# a train.py that stops after epoch 2 (after its checkpoint), as a crash would
CRASHING = """import sys
sys.path.insert(0, {root!r})
import ICMR, train
def crash(solver):
    if solver.epoch == 2:
        raise SystemExit(3)
ICMR.Solver.after_epoch = crash
train.main(sys.argv[1:])
"""


def _args(tmp_path, name):
    return [*SETTINGS, "--data_root", str(small_dataset(tmp_path.parent)), "--output_dir", str(tmp_path / name),
            "--checkpoint_dir", str(tmp_path / name / "ck")]


def _metrics(tmp_path, name):
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: 3 epochs and 1 of the unimodal branch in one process (in this one)."""
    import train

    tmp_path = tmp_path_factory.mktemp("one")
    [results] = train.main(_args(tmp_path, "one"))
    return _metrics(tmp_path, "one"), results


def test_two_processes_train_like_one_and_resume_in_one(tmp_path, one_process):
    import train

    reference, reference_results = one_process
    script = tmp_path / "crashing_train.py"
    script.write_text(CRASHING.format(root=str(ROOT)))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *_args(tmp_path, "two")], cwd=ROOT, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode != 0 and done.stdout.count("=== small: 16-bit codes") == 1   # rank 0 alone prints
    two = _metrics(tmp_path, "two")
    assert [r["epoch"] for r in two] == [1, 2]
    for ours, theirs in zip(two, reference):
        for key in LOSSES:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (key, ours["epoch"])
        for key in SCORES:                                 # scored by both ranks' shards, gathered
            assert abs(ours[key] - theirs[key]) <= 0.002, (key, ours["epoch"])
    # the checkpoint of 2 processes goes on in 1
    [results] = train.main([*_args(tmp_path, "two"), "--resume", "true"])
    last = _metrics(tmp_path, "two")[-1]
    assert last["epoch"] == 4 and last["loss"] == pytest.approx(reference[-1]["loss"], rel=1e-4)   # the branch's
    for key in SCORES:
        assert abs(results[key] - reference_results[key]) <= 0.002, key
