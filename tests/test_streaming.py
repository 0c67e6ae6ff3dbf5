"""Training that reads its pairs a window of blocks at a time (config stream_train)."""
import numpy as np
import pytest

from conftest import small_dataset
from config import build_config
from data import load_dataset
from data.streaming import streams
from ICMR import Solver


def _cfg(tmp_path, *extra):
    return build_config(["--dataset", "small", "--data_root", str(small_dataset(tmp_path)), "--epoch", "2",
                         "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--batch_size", "32",
                         "--unimodal_epochs", "0", "--modality_dropout", "0", "--output_dir", str(tmp_path / "run"),
                         "--checkpoint_dir", str(tmp_path / "ck"), *extra])


def test_a_streamed_epoch_visits_every_pair_once_a_window_at_a_time(tmp_path):
    cfg = _cfg(tmp_path, "--stream_train", "on", "--stream_block_rows", "40", "--stream_window_blocks", "2")
    solver = Solver(cfg, bits=16, log=lambda *_: None)
    assert solver.streamed and solver.train_image is None            # nothing held before the epoch
    seen, windows = [], []                                           # the window tensors, each once
    for idx in solver._batches():
        if not windows or solver.train_image is not windows[-1]:
            windows.append(solver.train_image)
        # one window: 2 blocks of 40 rows, after the < 32 rows of the last window in no batch yet
        assert len(solver.train_image) <= 80 + 31
        seen.append(solver.train_image[idx].numpy())
    rows = np.concatenate(seen)
    expected = np.asarray(solver.data.train.image)
    assert len(rows) == len(expected) == 250                          # every pair once: 7 blocks, 4 windows
    assert sorted(map(bytes, rows)) == sorted(map(bytes, expected))
    assert [len(batch) for batch in seen] == [32] * 7 + [26]          # full batches across window edges
    # 7 blocks (six of 40 rows, one of 10) in 4 windows of up to 2 blocks; none left in memory after
    assert len(windows) == 4 and solver.train_image is None


def _batch_sizes(solver) -> list:
    return [len(idx) for idx in solver._batches()]


@pytest.mark.parametrize("drop_last", ["false", "true"])
def test_streamed_batches_are_full_across_window_edges_as_in_memory(tmp_path, drop_last):
    """250 pairs in windows of 2 blocks of 50 rows: a window's leftover rows start the next
    window's batches, so only the epoch's last batch is short, as when the pairs are in memory."""
    shape = ["--batch_size", "64", "--train_drop_last", drop_last]
    in_memory = Solver(_cfg(tmp_path, *shape), bits=16, log=lambda *_: None)
    streamed = Solver(_cfg(tmp_path, *shape, "--stream_train", "on", "--stream_block_rows", "50",
                           "--stream_window_blocks", "2"), bits=16, log=lambda *_: None)
    expected = [64, 64, 64] + ([] if drop_last == "true" else [58])
    assert _batch_sizes(in_memory) == _batch_sizes(streamed) == expected
    assert streamed.train_image is None                               # no window kept after the epoch


@pytest.mark.parametrize("drop_last", ["false", "true"])
def test_a_streamed_epoch_runs_the_steps_its_scale_schedule_planned(tmp_path, drop_last):
    """HashNet's per-step scale is fitted to the planned steps: the last step run is at the
    test-time scale, and the next epoch's steps go on from the planned count."""
    cfg = _cfg(tmp_path, "--batch_size", "64", "--train_drop_last", drop_last, "--epoch", "1",
               "--scale_schedule", "hashnet", "--stream_train", "on", "--stream_block_rows", "50",
               "--stream_window_blocks", "2")
    solver = Solver(cfg, bits=16, log=lambda *_: None)
    scales = []
    solver.trainhash(lambda it: scales.append(solver.schedule.at(0, it)) or scales[-1])
    planned = solver.schedule.iters_per_epoch
    assert planned == (3 if drop_last == "true" else 4)
    assert solver.iteration == len(scales) == planned
    assert scales[-1] == solver.schedule.eval_scale


def test_auto_streams_lazily_stored_sets_over_the_threshold_only(tmp_path):
    data = load_dataset("small", small_dataset(tmp_path))
    in_memory = data.train                                            # numpy arrays: never streamed on auto
    assert not streams(_cfg(tmp_path, "--stream_min_gb", "0"), in_memory, 250)

    class Lazy:                                                       # stands in for data.lazy.LazyRows
        def __init__(self, array):
            self.array, self.shape = array, array.shape

        def __getitem__(self, rows):
            return self.array[rows]

    lazy = type(in_memory)(Lazy(in_memory.image), Lazy(in_memory.text), in_memory.label, "lazy")
    assert streams(_cfg(tmp_path, "--stream_min_gb", "0"), lazy, 250)
    assert not streams(_cfg(tmp_path), lazy, 250)                     # 250 x 56 floats: far below 2 GB
    assert streams(_cfg(tmp_path, "--stream_train", "on"), in_memory, 250)
    assert not streams(_cfg(tmp_path, "--stream_train", "off", "--stream_min_gb", "0"), lazy, 250)
