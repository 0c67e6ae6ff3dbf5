"""torchrun with 2 gloo processes on the CPU against one process: data-parallel training, its forks
and its checkpoint, and the shared-out feature extraction."""
import importlib.util
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
# One torchrun start (about 8 s) serves every check, in the same two processes: first
# scripts/extract_features.py; then train.py with FORKS to its end; then a run that stops after epoch 2
# (after its checkpoint), as a crash would, and saves the first step's gradients once summed over the
# ranks (Adam's update hides their scale: summed, not averaged). Each main's process-group shutdown
# waits for the last.
DRIVER = """import importlib.util, os, sys
sys.path.insert(0, {root!r})
import torch
import ICMR, train
if {extract!r}:
    spec = importlib.util.spec_from_file_location("extract_cli", {root!r} + "/scripts/extract_features.py")
    extract_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract_cli)
    extract_cli.shutdown = lambda: None
    encode = extract_cli.extract_features
    def recording(*args, **kwargs):   # each rank writes down the chunks it encodes
        with open({chunks_log!r} + os.environ["RANK"], "w") as log:
            return encode(*args, on_chunk_done=lambda index: print(index, file=log), **kwargs)
    extract_cli.extract_features = recording
    extract_cli.main({extract!r})
shutdown, train.shutdown = train.shutdown, lambda: None
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


def _extraction_args(tmp_path):
    """scripts/extract_features.py's flags, but --output, for 13 generated pairs (one image broken)
    with the tiny random-weight CLIP, in 4 chunks."""
    from test_extract import tiny_dataset

    raw = tiny_dataset(tmp_path / "images", n=13, broken=(5,))
    lines = ["image,text,labels"] + [f"{item.image.name},{item.texts[0]},{'|'.join('abcd'[i] for i in item.labels)}"
                                     for item in raw.items]
    (tmp_path / "images" / "pairs.csv").write_text("\n".join(lines) + "\n")
    return ["--manifest", str(tmp_path / "images" / "pairs.csv"), "--pretrained", "random", "--clip_model",
            str(ROOT / "tests" / "fixtures" / "test-tiny-clip.json"), "--device", "cpu", "--batch_size", "2",
            "--chunk_size", "4", "--workers", "0", "--num_query", "3", "--num_train", "6", "--format", "h5"]


def _one_process(tmp_path):
    """The reference: 3 epochs and 1 of the unimodal branch in one process (in this one); its records,
    results and first step's gradients."""
    import train

    import ICMR

    summed, gradients = ICMR.sum_gradients, []

    def keep_first(params, ranks):   # one process: nothing to sum; the first step's gradients kept
        summed(params, ranks)
        gradients[:] = gradients or [None if p.grad is None else p.grad.clone() for p in params]
    ICMR.sum_gradients = keep_first
    try:
        [results] = train.main(_args(tmp_path, "one"))
    finally:
        ICMR.sum_gradients = summed
    return run_records(tmp_path / "one"), results, gradients


def test_two_processes_extract_train_and_fork_like_one_and_each_resumes_alone(tmp_path, monkeypatch):
    """One torchrun start runs extraction and two trainings in two processes; what one process does
    is computed here meanwhile. Extraction: the chunks are shared out and the merged output is the
    one-process output. Training: both forks choose and train what one process does; a run that
    crashes after epoch 2 matches one process's gradients, losses and scores, and goes on in one."""
    import train

    extract = importlib.util.find_spec("open_clip") is not None   # else the extraction half is left out
    extraction = _extraction_args(tmp_path) if extract else []
    extract_two = [*extraction, "--output", str(tmp_path / "features_two"), "--keep_work"] if extract else []
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT), gradients=str(tmp_path / "gradients.pt"), forks=FORKS,
                                    forks_output=str(tmp_path / "two_forks"), extract=extract_two,
                                    chunks_log=str(tmp_path / "chunks_of_rank")))
    log = tmp_path / "torchrun.log"
    with open(log, "w") as stdout:   # a file, not a pipe: nobody reads it while this process works
        job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                str(script), *_args(tmp_path, "two")], cwd=ROOT, stdout=stdout,
                               stderr=subprocess.STDOUT, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        try:
            reference = _one_process(tmp_path)
            if extract:
                import extract_features_cli   # one process: in this one

                extract_features_cli.main([*extraction, "--output", str(tmp_path / "features_one")])
            returncode = job.wait(timeout=300)
        finally:
            job.kill()
    printed = log.read_text()
    # torchrun exits 1 when a process fails, and names the failure: the planned crash, after the rest
    assert returncode == 1 and "exitcode  : 3" in printed, printed[-3000:]
    assert printed.count("=== small: 16-bit codes") == 2   # rank 0 alone prints, once a run
    _check_training(tmp_path, reference, train)
    if extract:
        assert printed.count("pairs kept") == 1 and "(2 processes)" in printed   # rank 0 alone prints
        # 4 chunks shared out by index modulo 2
        assert [(tmp_path / f"chunks_of_rank{rank}").read_text().split() for rank in (0, 1)] == [["0", "2"], ["1", "3"]]
        _check_extraction(tmp_path, extraction, monkeypatch)
    else:
        pytest.skip("open_clip is not installed: the extraction half did not run (the training half passed)")


def _check_training(tmp_path, one_process, train):
    reference, reference_results, reference_gradients = one_process
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


def _check_extraction(tmp_path, common, monkeypatch):
    """The 2-process output is the 1-process one. Then each rank of that job runs again on its own (in
    this process, its rank given and the barriers passed, as after a crash): the rank that lost a chunk
    redoes that chunk only, the other redoes nothing, and rank 0 writes the same output again."""
    import extract_features_cli
    import h5py

    one_folder, two_folder = tmp_path / "features_one", tmp_path / "features_two"

    for name in ("splits.json", "extraction_report.json"):
        assert (one_folder / name).read_text() == (two_folder / name).read_text(), name

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

    one = arrays(one_folder)
    same(arrays(two_folder), one)
    # chunk 1 (rank 1's, of 4 chunks shared out by index modulo 2) lost: each rank runs again alone
    work = two_folder / ".work"
    chunks = sorted(work.glob("chunk_*.npz"))
    assert len(chunks) == 4
    stamps = {c.name: c.stat().st_mtime_ns for c in chunks}
    chunks[1].unlink()
    (two_folder / "retrieval.h5").unlink()
    from parallel import Ranks

    for rank in (1, 0):                    # rank 1 first: rank 0 merges every chunk, so it needs chunk 1
        monkeypatch.setattr(extract_features_cli, "init_from_env", lambda device, rank=rank: Ranks(rank, 2, rank))
        monkeypatch.setattr(extract_features_cli, "barrier", lambda ranks: None)
        extract_features_cli.main([*common, "--output", str(two_folder), "--keep_work"])
        assert (two_folder / "retrieval.h5").is_file() == (rank == 0)   # rank 0 alone writes
    assert {c.name: c.stat().st_mtime_ns for c in work.glob("chunk_*.npz") if c.name != chunks[1].name} == \
        {name: stamp for name, stamp in stamps.items() if name != chunks[1].name}
    assert chunks[1].is_file()
    same(arrays(two_folder), one)
