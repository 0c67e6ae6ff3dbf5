"""Shared test setup: the repo root on sys.path, few threads, fixed seeds, the numba cache warmed once.

Under pytest-xdist (`-n auto`, the README's command) the controller process only hands tests out:
this file keeps its imports light (torch loads in the workers, in the fixtures below; open_clip only
in a process that runs a test needing it), so that the workers start sooner.
"""
import contextlib
import gc
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One worker per core: each keeps to one thread, and so do the processes its tests start (torchrun,
# scripts); two-thread workers on two cores spin against each other and took longer than one process
# (measured 150 s against 105 s for the suite). Set before numpy loads: OpenBLAS reads its count once,
# when it loads, and numpy's BLAS ran two threads in each worker while this came after the import.
XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST_WORKER:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402 (after the thread counts above)
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WIKI_DIR = ROOT.parent / "shared" / "data" / "wiki"


def project_files(root: Path, name: str) -> list:
    """The files named like `name` (a glob of the last parts: "*.py", "__init__.py") under `root`,
    without what git ignores there: a clone, a venv or a run kept in runs/ or checkpoints/ is not part
    of the project. Outside a git checkout (tests' own trees): every match."""
    if (root / ".git").exists():
        try:
            listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                    cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
            return sorted(root / p for p in listed if p and Path(p).match(name) and (root / p).is_file())
        except (OSError, subprocess.CalledProcessError):   # no git here: the plain walk below
            pass
    return sorted(root.rglob(name))

# A two-layer open_clip architecture with ViT-B-32's interface (224-px images, 77 tokens, 512-d
# features), registered under this name (by `_TinyClipOnImport` below) so CLI tests pass it as --clip_model:
# random weights build and encode in milliseconds. One test keeps the default ViT-B-32 (test_extract.py).
TINY_CLIP = "test-tiny-clip"

# The counting Hamming ranking (metrics/hamming.py) is compiled by numba on first use and cached in
# metrics/__pycache__. In a fresh clone there is no cache yet, and every process that scores (each
# worker, each torchrun rank, each script a test starts) compiled it on its own, 6 s apiece, about
# 20 s of the suite's time on 2 cores. The controller compiles it once in a process of its own while
# the workers start, and the workers wait for that process before their first test.
WARMED_FLAG = "UCMFH_TEST_NUMBA_WARMED"
WARM_UP = """import sys
try:
    import torch
    from metrics.hamming import count_ranking
    signs, labels = torch.ones(2, 8), torch.ones(2, 1, dtype=torch.bool)
    count_ranking(signs, signs, labels, labels, 2, (1,))
finally:   # done or failed, the workers go on (a failure costs each of them a compile, not a test)
    open(sys.argv[1], "w").close()
"""
_warming = None


def pytest_configure(config):
    global _warming
    if XDIST_WORKER or os.environ.get(WARMED_FLAG) or list((ROOT / "metrics" / "__pycache__").glob("hamming.*.nbi")):
        return
    flag = Path(tempfile.gettempdir()) / f"ucmfh-test-numba-warmed-{os.getpid()}"
    flag.unlink(missing_ok=True)
    _warming = subprocess.Popen([sys.executable, "-c", WARM_UP, str(flag)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ[WARMED_FLAG] = str(flag)          # the workers, started after this, inherit it


def pytest_unconfigure(config):
    if _warming is not None:
        if _warming.poll() is None:
            _warming.kill()
        Path(os.environ[WARMED_FLAG]).unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _session():
    """Once per process that runs tests: one thread per xdist worker and the numba cache (see
    WARM_UP) in place."""
    import torch

    torch.set_num_threads(1 if XDIST_WORKER else min(2, torch.get_num_threads()))
    flag = os.environ.get(WARMED_FLAG)
    if _warming is not None:                        # one process, no workers: wait here
        _warming.wait()
    elif flag:
        deadline = time.time() + 120                # in case the warm-up process was killed
        while not Path(flag).exists() and time.time() < deadline:
            time.sleep(0.1)


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)


class _ScriptFinder(importlib.abc.MetaPathFinder):
    """`import <name>_cli` loads scripts/<name>.py (a script, not a package module) under that name,
    once per process, so tests call its main(argv): `import build_index_cli`."""

    def find_spec(self, name, path=None, target=None):
        script = ROOT / "scripts" / f"{name.removesuffix('_cli')}.py"
        if path is None and name.endswith("_cli") and script.is_file():
            return importlib.util.spec_from_file_location(name, script)
        return None


sys.meta_path.append(_ScriptFinder())


class _TinyClipOnImport(importlib.abc.MetaPathFinder):
    """Registers TINY_CLIP when open_clip loads, in whichever process that is. open_clip (with
    torchvision and timm) takes 3 s to import, so a worker that runs none of its tests never loads it
    (the modules that need it skip by `OPEN_CLIP_MISSING`, not by importing it)."""

    def find_spec(self, name, path=None, target=None):
        if name != "open_clip":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module      # a loader of this spec's own: wrapping it touches no other

        def load_and_register(module):
            load(module)
            module.add_model_config(ROOT / "tests" / "fixtures" / f"{TINY_CLIP}.json")
        spec.loader.exec_module = load_and_register
        return spec


sys.meta_path.insert(0, _TinyClipOnImport())
OPEN_CLIP_MISSING = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="needs open_clip")


def small_dataset(folder):
    """<folder>/data/small: 250 training pairs, 100 queries, 500 database items; 32-d images and
    24-d texts that follow their 6 labels."""
    root = folder / "data"
    if not (root / "small" / "retrieval.pkl").is_file():
        rng = np.random.default_rng(0)
        image_map, text_map = rng.standard_normal((6, 32)), rng.standard_normal((6, 24))
        for split, rows in (("train", 250), ("query", 100), ("retrieval", 500)):
            label = (rng.random((rows, 6)) < 0.3).astype(np.float32)
            label[np.arange(rows), rng.integers(0, 6, rows)] = 1
            arrays = {"image": (label @ image_map + rng.standard_normal((rows, 32))).astype(np.float32),
                      "text": (label @ text_map + rng.standard_normal((rows, 24))).astype(np.float32), "label": label}
            (root / "small").mkdir(parents=True, exist_ok=True)
            (root / "small" / f"{split}.pkl").write_bytes(pickle.dumps(arrays, protocol=4))
    return root


@contextlib.contextmanager
def served(app, log_level="warning"):
    """`app` served by a real uvicorn server in a thread, on a localhost port the system picked:
    yields the base URL (without the trailing slash)."""
    import socket
    import threading
    import time

    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    running = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not running.started and time.time() < deadline:
        time.sleep(0.02)
    assert running.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        running.should_exit = True
        thread.join(5)


# the files of the slowest tests (torchrun, the reference side by side, grids, the shell scripts): run
# first, so that under `-n auto` no worker starts one of them when the others are nearly done
SLOW_FILES = ("test_distributed.py", "test_compare_reference.py", "test_ablation.py", "test_scripts.py",
              "test_plots.py", "test_browser.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n auto` alone hands tests out by work stealing: an idle worker takes the queued tests of a busy
    one. xdist's default hands them out in batches, and one worker was measured running alone for the
    last 26 s of a 103 s suite (95 s with stealing). An explicit --dist keeps its choice."""
    explicit = any(arg.startswith(("--dist", "-d")) for arg in config.invocation_params.args)
    if config.getvalue("dist") == "load" and not explicit:
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None


def pytest_collection_finish(session):
    """Every test module is imported now (torch, open_clip, matplotlib...): their million objects go to
    the garbage collector's permanent generation, so the full collections the tests trigger, and the
    five at pytest's exit, no longer walk them (0.3 s each)."""
    gc.freeze()


# the files whose tests load open_clip (3 s to import in a process): queued right after the slow files,
# which `-n auto` hands to the first worker, so that the other worker, which steals from the end of
# the first's queue, seldom needs open_clip at all (tests/test_browser.py and test_distributed.py load it too)
OPEN_CLIP_FILES = ("test_extract.py", "test_search.py", "test_serve.py", "test_bench_serve.py", "test_faults.py")


def pytest_collection_modifyitems(items):
    # stable: each file keeps its order
    items.sort(key=lambda item: (item.path.name not in SLOW_FILES, item.path.name not in OPEN_CLIP_FILES))


class Crash(Exception):
    """Raised by train_until_crash: a training killed after an epoch."""


def train_until_crash(argv, epoch):
    """train.main(argv) stopped by Crash right after epoch `epoch` (its checkpoint of that epoch
    written when save_every allows), as a killed run would leave it."""
    import train
    from ICMR import Solver

    def crash(solver):
        if solver.epoch == epoch:
            raise Crash

    Solver.after_epoch, original = crash, Solver.after_epoch
    try:
        with pytest.raises(Crash):
            train.main(argv)
    finally:
        Solver.after_epoch = original


def process_id(_item) -> int:
    """The id of the process that runs it (a spawned worker imports it from here: test modules may not import)."""
    return os.getpid()


def wait_for_release(folder) -> str:
    """A stand-in run for a grid's worker: marks it started with its process id, waits until the
    test writes `release`, then writes `done` (a spawned worker imports it from here)."""
    from pathlib import Path

    folder = Path(folder)
    (folder / f"started{os.getpid()}").write_text(str(os.getpid()))
    while not (folder / "release").exists():
        time.sleep(0.05)
    (folder / f"done{os.getpid()}").write_text("written after the grid was gone")
    return str(folder)


def run_records(folder):
    """The metrics.jsonl records of the run written to `folder`, by the project's one reader of the
    file (runio/metrics_log.py); the file must exist (the reader gives [] for a missing one)."""
    from runio.metrics_log import read_metrics_file

    path = folder / "metrics.jsonl"
    assert path.is_file(), f"{path}: not written"
    return read_metrics_file(path)


def checkpoint_weights(folder):
    """{part.key: tensor} of the networks in the one checkpoint under <folder>/ck."""
    import torch
    [path] = (folder / "ck").rglob("*.pth")
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {f"{part}.{key}": value for part in ("fusion", "image_head", "text_head", "unimodal_branch")
            for key, value in state[part].items()}


def fork_args(tmp_path, name, epochs, *extra):
    """train.main's argv for a fork's tests (tests/test_late_temperature.py, test_neighbour_fork.py): a tiny network
    on the small set, `epochs` paired epochs at modality dropout 0.5, 1 branch epoch, a checkpoint under <name>/ck."""
    return ["--dataset", "small", "--data_root", str(small_dataset(tmp_path.parent)), "--hash_lens", "16",
            "--epoch", str(epochs), "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32",
            "--batch_size", "64", "--modality_dropout", "0.5", "--val_queries", "100", "--device", "cpu",
            "--unimodal_epochs", "1", "--eval_every", "0", "--output_dir", str(tmp_path / name),
            "--checkpoint_dir", str(tmp_path / name / "ck"), *extra]


def assert_same_run(folder, chosen, fixed, scores):
    """A fork's kept network is its value's own: the results `chosen` (of <folder>/auto) and `fixed` (of
    <folder>/fixed) agree on every key of `scores`, and the two checkpoints hold equal weights."""
    import torch
    for key in scores:
        assert chosen[key] == fixed[key], key
    fixed_weights = checkpoint_weights(folder / "fixed")
    for key, value in checkpoint_weights(folder / "auto").items():
        assert torch.equal(value, fixed_weights[key]), key
