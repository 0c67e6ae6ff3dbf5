"""kill -9 at a chosen point of feature extraction, index building and streamed training, then a
rerun: the outputs are those of an unbroken run, and no half-written file is ever at an output path.

The killed run is a fork of this process (every module is already imported, so it starts in
milliseconds) that runs the command line's main with a hook in place; the hook sends the process
SIGKILL at a fixed point (a call count, a file's write), never after a delay. Both the fork and
this process run on one thread, so results are compared exactly.
"""
import builtins
import json
import os
import pickle
import signal
import time
import traceback

import h5py
import numpy as np
import pytest
import torch

import runio.atomic
from conftest import TINY_CLIP, run_records, small_dataset

import build_index_cli


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _suicide():
    os.kill(os.getpid(), signal.SIGKILL)


def run_killed(main, argv, install_hook, timeout=120.0) -> None:
    """main(argv) in a forked child that first runs install_hook(); passes only if the child dies
    of SIGKILL (sent by the hook). The child never returns into pytest: it ends with os._exit."""
    pid = os.fork()
    if pid == 0:
        try:
            torch.set_num_threads(1)          # the parent's OpenMP threads do not exist in the fork
            install_hook()
            main(argv)
            os._exit(10)                      # the hook never fired
        except BaseException:
            traceback.print_exc()
            os._exit(11)
    deadline = time.monotonic() + timeout
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the killed run of {argv[:2]} hung for {timeout} s")
        time.sleep(0.01)
    status = done[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"ended with {os.waitstatus_to_exitcode(status)} (10: the hook never fired; 11: an exception)"


def kill_on_call(owner, name: str, call: int):
    """A hook: owner.<name> kills the process when called for the `call`-th time (from 1)."""
    def install():
        original, calls = getattr(owner, name), []

        def counted(*args, **kwargs):
            calls.append(None)
            if len(calls) == call:
                _suicide()
            return original(*args, **kwargs)
        setattr(owner, name, counted)
    return install


class _HalfWrite:
    """A file handle whose write stores half the payload, flushes it to disk and kills the process."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.handle.close()

    def write(self, payload):
        self.handle.write(payload[:len(payload) // 2])
        self.handle.flush()
        os.fsync(self.handle.fileno())
        _suicide()


def kill_mid_write(file_name: str):
    """A hook: the atomic write (runio.atomic) of a file called `file_name` dies half-way through."""
    def install():
        def opener(path, mode="r", *args, **kwargs):
            handle = builtins.open(path, mode, *args, **kwargs)
            return _HalfWrite(handle) if os.path.basename(path).lstrip(".").startswith(file_name) else handle
        runio.atomic.open = opener            # a module global: shadows the builtin in runio.atomic
    return install


def leftovers(folder) -> list:
    """The temporary files of killed atomic writes (hidden, .tmp): never read, never at an output path."""
    return sorted(p.name for p in folder.rglob(".*.tmp"))


# ----- scripts/extract_features.py -----
@pytest.fixture(scope="module")
def extraction(tmp_path_factory):
    """(the options of an extraction of 10 pairs, one image broken, in chunks of 4 and batches of 2;
    the folder of its unbroken run)."""
    pytest.importorskip("open_clip")
    import extract_features_cli
    from test_extract import tiny_dataset

    root = tmp_path_factory.mktemp("extraction")
    raw = tiny_dataset(root / "images", n=10, broken=(6,))
    lines = ["image,text,labels"] + [f"{item.image.name},{item.texts[0]},{'|'.join('abcd'[i] for i in item.labels)}"
                                     for item in raw.items]
    (root / "images" / "pairs.csv").write_text("\n".join(lines) + "\n")
    options = ["--manifest", str(root / "images" / "pairs.csv"), "--pretrained", "random", "--clip_model",
               TINY_CLIP, "--device", "cpu", "--batch_size", "2", "--chunk_size", "4", "--workers", "0",
               "--num_query", "2", "--num_train", "5", "--format", "both"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    extract_features_cli.main([*options, "--output", str(root / "unbroken")])
    torch.set_num_threads(threads)
    return options, root / "unbroken"


@pytest.mark.parametrize("where", ["encoding", "writing"])
def test_extraction_killed_mid_chunk_resumes_to_the_unbroken_output(tmp_path, extraction, where):
    """Killed in chunk 1 (items 4-7), after its first batch (encoding) or half-way through writing
    its file (writing); the rerun's features, ids and splits are the unbroken run's, byte for byte."""
    import extract_features_cli
    from data.clip_encoder import ClipEncoder

    options, unbroken = extraction
    broken = tmp_path / "broken"
    hook = kill_on_call(ClipEncoder, "encode_images", 4) if where == "encoding" else \
        kill_mid_write("chunk_00001.npz")
    run_killed(extract_features_cli.main, [*options, "--output", str(broken)], hook)
    work = broken / ".work"
    assert sorted(p.name for p in work.glob("chunk_*")) == ["chunk_00000.npz"]      # chunk 1 never landed
    assert leftovers(work) == ([] if where == "encoding" else [p.name for p in work.glob(".chunk_00001.npz.*")])
    assert not list(broken.glob("*.pkl"))
    extract_features_cli.main([*options, "--output", str(broken)])
    for name in ("train.pkl", "query.pkl", "retrieval.pkl", "splits.json", "extraction_report.json", "items.json"):
        assert (broken / name).read_bytes() == (unbroken / name).read_bytes(), name
    for split in ("train", "query", "retrieval"):
        with h5py.File(broken / f"{split}.h5", "r") as ours, h5py.File(unbroken / f"{split}.h5", "r") as theirs:
            assert ours.keys() == theirs.keys()
            assert all(np.array_equal(ours[key][()], theirs[key][()]) for key in ours.keys())
    assert pickle.loads((broken / "train.pkl").read_bytes())["ids"].size == 5 and not work.exists()


# ----- scripts/build_index.py -----
@pytest.mark.parametrize("before", ["nothing", "an older index"])
def test_index_build_killed_mid_write_leaves_the_output_path_whole(tmp_path, before):
    """Killed half-way through writing the index: the output path holds nothing, or the index that
    was there before, whole; the rerun writes the unbroken run's file."""
    from config import build_config
    from hashindex.index_file import load_index
    from ICMR import Solver

    cfg = build_config(["--dataset", "small", "--data_root", str(small_dataset(tmp_path)), "--fusion_dim", "32",
                        "--fusion_ff_dim", "32", "--hash_hidden", "32", "--modality_dropout", "0",
                        "--checkpoint_dir", str(tmp_path / "ck"), "--output_dir", str(tmp_path / "run")])
    solver = Solver(cfg, bits=16, log=lambda *_: None)   # an untrained model's checkpoint encodes as well
    solver.save_checkpoint()
    build = ["--checkpoint", str(solver.checkpoint_path), "--device", "cpu"]
    build_index_cli.main([*build, "--out", str(tmp_path / "unbroken.npz")])
    out = tmp_path / "index" / "db.npz"
    if before == "an older index":
        build_index_cli.main([*build, "--protocol", "paired", "--out", str(out)])
    older = out.read_bytes() if out.exists() else None
    run_killed(build_index_cli.main, [*build, "--out", str(out)], kill_mid_write("db.npz"))
    assert (out.read_bytes() if out.exists() else None) == older
    if older is not None:
        assert load_index(out).meta["protocol"] == "paired"
    [temporary] = leftovers(out.parent)                    # the half-written file, beside it
    assert (out.parent / temporary).stat().st_size < len((tmp_path / "unbroken.npz").read_bytes())
    build_index_cli.main([*build, "--out", str(out)])
    # every array and the metadata but the time it was built (in meta and in the zip's member
    # headers: the bytes differ by those)
    with np.load(out) as rebuilt, np.load(tmp_path / "unbroken.npz") as reference:
        assert rebuilt.files == reference.files
        assert all(np.array_equal(rebuilt[key], reference[key]) for key in reference.files if key != "meta_json")
        meta = [{**json.loads(str(index["meta_json"])), "built": None} for index in (rebuilt, reference)]
        assert meta[0] == meta[1]


# ----- train.py, streaming from disk -----
def h5_copy(root, name="small", copy="smallh5"):
    """<root>/<copy>: the set <root>/<name> as .h5 splits, whose features are read from the file."""
    (root / copy).mkdir(exist_ok=True)
    for split in ("train", "query", "retrieval"):
        arrays = pickle.loads((root / name / f"{split}.pkl").read_bytes())
        with h5py.File(root / copy / f"{split}.h5", "w") as handle:
            for key, value in arrays.items():
                handle.create_dataset(key, data=value)
    return root


def test_streamed_training_killed_mid_epoch_resumes_to_the_unbroken_scores(tmp_path):
    """3 epochs on 250 pairs read from .h5 files, windows of 2 blocks of 64 rows (4 reads, 2 per
    side, an epoch, once per candidate of balanced_neighbours auto's fork); killed when epoch 2's first
    candidate reads its second window, after training on its first; the run resumed from epoch 1's
    checkpoint (the fork's states in it) scores as the unbroken one."""
    import data.streaming
    import train
    from runio.checkpoint import read_checkpoint

    args = ["--dataset", "smallh5", "--data_root", str(h5_copy(small_dataset(tmp_path))), "--hash_lens", "16",
            "--epoch", "3", "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
            "--batch_size", "32", "--unimodal_epochs", "0", "--modality_dropout", "0", "--stream_train", "on",
            "--stream_block_rows", "64", "--stream_window_blocks", "2", "--save_every", "1"]
    [unbroken] = train.main([*args, "--output_dir", str(tmp_path / "a"), "--checkpoint_dir", str(tmp_path / "cka")])
    assert 0 < unbroken["i2t_map"] <= 1
    broken = [*args, "--output_dir", str(tmp_path / "b"), "--checkpoint_dir", str(tmp_path / "ckb")]
    run_killed(train.main, broken, kill_on_call(data.streaming, "read_window", 2 * 4 + 3))
    assert [r["epoch"] for r in run_records(tmp_path / "b")] == [1]
    assert read_checkpoint(tmp_path / "ckb" / "hash" / "smallh5_hash_16.pth")["epoch"] == 1
    [resumed] = train.main([*broken, "--resume", "true"])
    scores = [key for key in unbroken if key.endswith("_map")]
    assert scores and {key: resumed[key] for key in scores} == {key: unbroken[key] for key in scores}


def test_a_metrics_line_torn_by_a_kill_is_left_out_and_any_other_bad_line_is_named(tmp_path):
    from runio.run_folder import RunFolder

    run = RunFolder(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "lo')
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]
    run.truncate_metrics(2)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "lo\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not valid JSON"):
        run.read_metrics()


def test_the_figures_read_metrics_as_a_resume_does(tmp_path):
    """study/run_files.py reads metrics.jsonl with the same reader: a run killed mid-append is drawn
    from its whole records; a bad line elsewhere is a PlotInputError naming the file and the line."""
    from study.run_files import PlotInputError, read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 2}\n{"epoch": 1}\n{"epoch": 3, "lo')
    assert read_metrics(tmp_path) == [{"epoch": 1}, {"epoch": 2}]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "lo\n{"epoch": 3}\n')
    with pytest.raises(PlotInputError, match=r"metrics.jsonl: line 2 is not valid JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"loss": 2}\n')
    with pytest.raises(PlotInputError, match=r"metrics.jsonl: record 2 has no numeric 'epoch'"):
        read_metrics(tmp_path)
