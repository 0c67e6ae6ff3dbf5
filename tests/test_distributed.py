"""Data-parallel training under torchrun: 2 gloo processes on the CPU against one process."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import ROOT, run_records, small_dataset

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
# both forks of a run: modality_dropout auto's (epoch 1), then late_temperature auto's (epoch 2)
FORKS = ["--epoch", "2", "--modality_dropout", "auto", "--select_fork", "0.5", "--late_temperature", "auto",
         "--eval_every", "0", "--save_every", "0", "--unimodal_epochs", "0"]
# train.py twice in the same two processes (one torchrun start, about 8 s, serves both checks): first
# a run with FORKS to its end; then one that stops after epoch 2 (after its checkpoint), as a crash
# would, and saves the first step's gradients once summed over the ranks (Adam's update hides their
# scale: summed, not averaged)
CRASHING = """import sys
sys.path.insert(0, {root!r})
import torch
import ICMR, train
shutdown, train.shutdown = train.shutdown, lambda: None     # the process group serves both runs
train.main([*sys.argv[1:], "--output_dir", {forks_output!r}, "--checkpoint_dir", {forks_output!r} + "/ck", *{forks!r}])
train.shutdown = shutdown
def crash(solver):
    if solver.epoch == 2:
        raise SystemExit(3)
ICMR.Solver.after_epoch = crash
summed = ICMR.sum_gradients
def keep_first(params, ranks, kept=[]):
    summed(params, ranks)
    if ranks.main and not kept:
        kept.append(True)
        torch.save([p.grad for p in params], {gradients!r})
ICMR.sum_gradients = keep_first
train.main(sys.argv[1:])
"""


def _args(tmp_path, name):
    return [*SETTINGS, "--data_root", str(small_dataset(tmp_path.parent)), "--output_dir", str(tmp_path / name),
            "--checkpoint_dir", str(tmp_path / name / "ck")]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: 3 epochs and 1 of the unimodal branch in one process (in this one)."""
    import train

    import ICMR

    tmp_path, summed, gradients = tmp_path_factory.mktemp("one"), ICMR.sum_gradients, []

    def keep_first(params, ranks):   # one process: nothing to sum; the first step's gradients kept
        summed(params, ranks)
        gradients[:] = gradients or [None if p.grad is None else p.grad.clone() for p in params]
    ICMR.sum_gradients = keep_first
    try:
        [results] = train.main(_args(tmp_path, "one"))
    finally:
        ICMR.sum_gradients = summed
    return run_records(tmp_path / "one"), results, gradients


def test_two_processes_train_and_fork_like_one_and_resume_in_one(tmp_path, one_process):
    """One torchrun start, two runs: both forks choose and train what one process does; then a run
    that crashes after epoch 2 matches one process's gradients, losses and scores, and goes on in one."""
    import train

    reference, reference_results, reference_gradients = one_process
    script = tmp_path / "crashing_train.py"
    script.write_text(CRASHING.format(root=str(ROOT), gradients=str(tmp_path / "gradients.pt"),
                                      forks_output=str(tmp_path / "two_forks"), forks=FORKS))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *_args(tmp_path, "two")], cwd=ROOT, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode != 0 and done.stdout.count("=== small: 16-bit codes") == 2   # rank 0 alone prints, once a run
    gradients = torch.load(tmp_path / "gradients.pt", weights_only=True)
    assert [g is None for g in gradients] == [g is None for g in reference_gradients]
    for ours, theirs in zip(gradients, reference_gradients):
        if theirs is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))
    two = run_records(tmp_path / "two")
    assert [r["epoch"] for r in two] == [1, 2]
    for ours, theirs in zip(two, reference):
        for key in LOSSES:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (key, ours["epoch"])
        for key in SCORES:                                 # scored by both ranks' shards, gathered
            assert abs(ours[key] - theirs[key]) <= 0.002, (key, ours["epoch"])
    # both forks choose, and train, what one process does
    [one_forks] = train.main([*_args(tmp_path, "one_forks"), *FORKS])
    two_forks = json.loads((tmp_path / "two_forks" / "results.json").read_text())
    for setting in ("selection", "temperature_selection"):
        assert two_forks[setting]["chosen"] == one_forks[setting]["chosen"], setting
        assert two_forks[setting]["fork"]
        assert two_forks[setting]["values"] == pytest.approx(one_forks[setting]["values"], abs=0.01)
    ours, theirs = run_records(tmp_path / "two_forks"), run_records(tmp_path / "one_forks")
    for key in ("loss", "md0_loss", "md0.75_loss"):
        assert ours[0][key] == pytest.approx(theirs[0][key], rel=1e-4), key
    assert ours[1]["loss"] == pytest.approx(theirs[1]["loss"], rel=1e-4) and "t1_loss" in ours[1]
    for key in SCORES:
        assert abs(two_forks[key] - one_forks[key]) <= 0.002, key
    # the checkpoint of 2 processes goes on in 1
    [results] = train.main([*_args(tmp_path, "two"), "--resume", "true"])
    last = run_records(tmp_path / "two")[-1]
    assert last["epoch"] == 4 and last["loss"] == pytest.approx(reference[-1]["loss"], rel=1e-4)   # the branch's
    for key in SCORES:
        assert abs(results[key] - reference_results[key]) <= 0.002, key


def test_two_processes_extract_what_one_does_and_each_resumes_alone(tmp_path, monkeypatch):
    """torchrun scripts/extract_features.py: the chunks are shared out and the merged output is the
    one-process output. Then each rank of that job runs again on its own (in this process, its rank
    given and the barriers passed, as after a crash): the rank that lost a chunk redoes that chunk
    only, the other redoes nothing, and rank 0 writes the same output again."""
    pytest.importorskip("open_clip")
    from test_extract import tiny_dataset

    raw = tiny_dataset(tmp_path / "images", n=13, broken=(5,))
    lines = ["image,text,labels"] + [f"{item.image.name},{item.texts[0]},{'|'.join('abcd'[i] for i in item.labels)}"
                                     for item in raw.items]
    (tmp_path / "images" / "pairs.csv").write_text("\n".join(lines) + "\n")
    common = ["--manifest", str(tmp_path / "images" / "pairs.csv"), "--pretrained", "random", "--clip_model",
              str(ROOT / "tests" / "fixtures" / "test-tiny-clip.json"), "--device", "cpu", "--batch_size", "2",
              "--chunk_size", "4", "--workers", "0", "--num_query", "3", "--num_train", "6", "--format", "h5"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*torchrun, str(ROOT / "scripts" / "extract_features.py"), *common, "--output",
                           str(tmp_path / "two"), "--keep_work"], cwd=ROOT, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("pairs kept") == 1 and "(2 processes)" in done.stdout   # rank 0 alone prints

    import extract_features_cli   # one process: in this one

    extract_features_cli.main([*common, "--output", str(tmp_path / "one")])
    for name in ("splits.json", "extraction_report.json"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text(), name
    import h5py

    def arrays(folder):
        with h5py.File(folder / "retrieval.h5", "r") as f:
            return {key: f[key][()] for key in f.keys()}

    def same(ours, theirs):
        assert ours.keys() == theirs.keys()
        for key in ours:   # features to float tolerance (two processes, one thread each), ids and labels exactly
            if ours[key].dtype.kind == "f":
                np.testing.assert_allclose(ours[key], theirs[key], rtol=0, atol=1e-6, err_msg=key)
            else:
                assert np.array_equal(ours[key], theirs[key]), key

    one = arrays(tmp_path / "one")
    same(arrays(tmp_path / "two"), one)
    # chunk 1 (rank 1's, of 4 chunks shared out by index modulo 2) lost: each rank runs again alone
    work = tmp_path / "two" / ".work"
    chunks = sorted(work.glob("chunk_*.npz"))
    assert len(chunks) == 4
    stamps = {c.name: c.stat().st_mtime_ns for c in chunks}
    chunks[1].unlink()
    (tmp_path / "two" / "retrieval.h5").unlink()
    from parallel import Ranks

    for rank in (1, 0):                    # rank 1 first: rank 0 merges every chunk, so it needs chunk 1
        monkeypatch.setattr(extract_features_cli, "init_from_env", lambda device, rank=rank: Ranks(rank, 2, rank))
        monkeypatch.setattr(extract_features_cli, "barrier", lambda ranks: None)
        extract_features_cli.main([*common, "--output", str(tmp_path / "two"), "--keep_work"])
        assert (tmp_path / "two" / "retrieval.h5").is_file() == (rank == 0)   # rank 0 alone writes
    assert {c.name: c.stat().st_mtime_ns for c in work.glob("chunk_*.npz") if c.name != chunks[1].name} == \
        {name: stamp for name, stamp in stamps.items() if name != chunks[1].name}
    assert chunks[1].is_file()
    same(arrays(tmp_path / "two"), one)
