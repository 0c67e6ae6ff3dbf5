"""Shared test setup: the repo root on sys.path, few threads, fixed seeds."""
import contextlib
import os
import pickle
import sys

# Under pytest-xdist (`-n auto`, the README's command) one worker per core: each keeps to one thread, and so
# do the processes its tests start (torchrun, scripts); two-thread workers on two cores spin against each
# other and took longer than one process (measured 150 s against 105 s for the suite).
XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST_WORKER:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WIKI_DIR = ROOT.parent / "shared" / "data" / "wiki"

torch.set_num_threads(1 if XDIST_WORKER else min(2, torch.get_num_threads()))

# A two-layer open_clip architecture with ViT-B-32's interface (224-px images, 77 tokens, 512-d
# features), registered under this name so CLI tests pass it as --clip_model: random weights
# build and encode in milliseconds. One test keeps the default ViT-B-32 (test_extract.py).
TINY_CLIP = "test-tiny-clip"
try:
    import open_clip

    open_clip.add_model_config(ROOT / "tests" / "fixtures" / f"{TINY_CLIP}.json")
except ImportError:   # the tests that need open_clip skip themselves
    pass


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _import_script(module_name, path):
    """Make a script in scripts/ importable under a module name, so tests call its main(argv)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


_import_script("extract_features_cli", ROOT / "scripts" / "extract_features.py")
_import_script("ablation_cli", ROOT / "scripts" / "ablation.py")
_import_script("search_cli", ROOT / "scripts" / "search.py")


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


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in SLOW_FILES)   # stable: each file keeps its order
