"""Training from features larger than memory: peak resident memory and throughput of streamed
training (config stream_train) against the in-memory path.

    python scripts/bench_stream.py                       # 2,000,000 x 512-d float16 pairs (about 4 GB on disk)
    python scripts/bench_stream.py --pairs 200000 --steps 50
    python scripts/bench_stream.py --format npy          # clip-retrieval's layout: .npy shards + parquet

Writes a synthetic set to --folder (chunked HDF5, or with --format npy clip-retrieval's embedding
folder: 1,000,000-row .npy shards and parquet metadata with key and caption; reused when it is
already there), then measures
in two fresh processes, so each peak resident memory is its own:
  stream  every pair of the set, read a window of blocks at a time (--stream_train on);
  memory  the first --memory_pairs pairs held in memory as the default path does (the whole set
          would need 8 GB as float32).
Each runs --steps training steps (batch 128, 64 bits, the default model) after --warmup steps and
reports pairs per second and the process's peak RSS. Targets: peak RSS under 2 GB for the stream,
throughput within 2x of the in-memory path.
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runio.logs import LOGGER, add_log_flags, info, setup_logging  # noqa: E402

ROWS_PER_WRITE = 100_000


def write_set(folder: Path, pairs: int, dim: int, labels: int, seed: int = 0) -> None:
    """<folder>/train.h5 (pairs rows), query.h5 and retrieval.h5 (1,000 rows each): float16 features
    that follow their labels, written ROWS_PER_WRITE rows at a time."""
    import h5py

    rng = np.random.default_rng(seed)
    image_map, text_map = rng.standard_normal((labels, dim)), rng.standard_normal((labels, dim))
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("query", 1000), ("retrieval", 1000), ("train", pairs)):
        path = folder / f"{split}.h5"
        if path.is_file():
            with h5py.File(path, "r") as f:
                if f["image"].shape == (rows, dim):
                    continue
        part = path.with_suffix(".part")
        with h5py.File(part, "w") as f:
            chunks = (min(rows, 4096), dim)
            image = f.create_dataset("image", (rows, dim), np.float16, chunks=chunks)
            text = f.create_dataset("text", (rows, dim), np.float16, chunks=chunks)
            label = f.create_dataset("label", (rows, labels), np.uint8)
            for start in range(0, rows, ROWS_PER_WRITE):
                n = min(ROWS_PER_WRITE, rows - start)
                y = (rng.random((n, labels)) < 0.2).astype(np.float32)
                y[np.arange(n), rng.integers(0, labels, n)] = 1
                for dataset, mapping in ((image, image_map), (text, text_map)):
                    x = y @ mapping + rng.standard_normal((n, dim))
                    dataset[start:start + n] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
                label[start:start + n] = y.astype(np.uint8)
        part.replace(path)


SHARD_ROWS = 1_000_000   # rows per .npy shard (clip-retrieval writes about this many)


def write_embedding_folder(folder: Path, pairs: int, dim: int, labels: int, seed: int = 0) -> None:
    """<folder>/{img_emb,text_emb,metadata}/..._<i>: the same kind of features as write_set, without
    labels (clip-retrieval records none), in shards of SHARD_ROWS rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    image_map, text_map = rng.standard_normal((labels, dim)), rng.standard_normal((labels, dim))
    for kind in ("img_emb", "text_emb", "metadata"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for shard, first in enumerate(range(0, pairs, SHARD_ROWS)):
        rows = min(SHARD_ROWS, pairs - first)
        paths = [folder / "img_emb" / f"img_emb_{shard}.npy", folder / "text_emb" / f"text_emb_{shard}.npy"]
        meta = folder / "metadata" / f"metadata_{shard}.parquet"
        if meta.is_file() and all(np.load(p, mmap_mode="r").shape == (rows, dim) for p in paths):
            continue
        outputs = [np.lib.format.open_memmap(p.with_suffix(".part"), "w+", np.float16, (rows, dim)) for p in paths]
        for start in range(0, rows, ROWS_PER_WRITE):
            n = min(ROWS_PER_WRITE, rows - start)
            y = (rng.random((n, labels)) < 0.2).astype(np.float32)
            y[np.arange(n), rng.integers(0, labels, n)] = 1
            for out, mapping in zip(outputs, (image_map, text_map)):
                x = y @ mapping + rng.standard_normal((n, dim))
                out[start:start + n] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        for out, path in zip(outputs, paths):
            out.flush()
            del out
            path.with_suffix(".part").replace(path)
        ids = [f"{first + i:09d}" for i in range(rows)]
        pq.write_table(pa.table({"key": ids, "caption": [f"synthetic pair {i}" for i in ids]}), meta)


def measure(folder: Path, mode: str, steps: int, warmup: int, memory_pairs: int) -> dict:
    """In this process: steps of training in `mode`; pairs/s and peak RSS."""
    import torch

    from config import build_config
    from ICMR import Solver

    argv = ["--dataset", folder.name, "--data_root", str(folder.parent), "--epoch", "1", "--unimodal_epochs", "0",
            "--output_dir", str(folder / f"run_{mode}"), "--checkpoint_dir", str(folder / f"ck_{mode}"),
            "--device", "cpu", "--stream_train", "on" if mode == "stream" else "off",
            "--modality_dropout", "0"]   # the epoch is timed, not auto's selection (which reads its pairs whole)
    if mode == "memory":
        argv += ["--train_limit", str(memory_pairs)]
    solver = Solver(build_config(argv), bits=64, log=lambda *_: None)
    batches = solver._batches
    solver._batches = lambda: itertools.islice(batches(), warmup)
    solver.trainhash(1.0)
    solver._batches = lambda: itertools.islice(batches(), steps)
    start = time.perf_counter()
    solver.trainhash(1.0)
    seconds = time.perf_counter() - start
    return {"mode": mode, "train_pairs": solver.num_train, "steps": steps, "seconds": seconds,
            "pairs_per_s": steps * solver.cfg.batch_size / seconds, "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--pairs", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--labels", type=int, default=8)
    p.add_argument("--folder", default="", help="where the synthetic set is written "
                                                "(default: /tmp/bench_stream/pairs or /tmp/bench_stream/clip)")
    p.add_argument("--format", choices=("h5", "npy"), default="h5",
                   help="h5: chunked HDF5 splits; npy: clip-retrieval's embedding folder (no labels)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--memory_pairs", type=int, default=200_000, help="pairs the in-memory path holds")
    p.add_argument("--measure", choices=("stream", "memory"), help=argparse.SUPPRESS)   # the child processes
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    folder = Path(args.folder or f"/tmp/bench_stream/{'pairs' if args.format == 'h5' else 'clip'}")
    if args.measure:
        print(json.dumps(measure(folder, args.measure, args.steps, args.warmup, args.memory_pairs)))
        return 0
    start = time.perf_counter()
    (write_set if args.format == "h5" else write_embedding_folder)(folder, args.pairs, args.dim, args.labels)
    size = sum(f.stat().st_size for f in folder.rglob("*.*") if f.suffix in (".h5", ".npy", ".parquet")) / 2 ** 30
    info(f"{folder} ({args.format}): {args.pairs} pairs x {args.dim}-d float16, {size:.2f} GB on disk "
         f"(ready in {time.perf_counter() - start:.0f} s)")
    results = []
    for mode in ("stream", "memory"):
        done = subprocess.run([sys.executable, __file__, "--folder", str(folder), "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--memory_pairs", str(args.memory_pairs),
                               "--measure", mode], capture_output=True, text=True)
        if done.returncode:
            LOGGER.error(done.stderr[-2000:])
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        info(f"{mode:>6}: {r['train_pairs']} training pairs, {r['pairs_per_s']:.0f} pairs/s over {r['steps']} "
             f"steps, peak RSS {r['peak_rss_gb']:.2f} GB")
    ratio = results[1]["pairs_per_s"] / results[0]["pairs_per_s"]
    info(f"in-memory / streamed throughput: {ratio:.2f}x (target: at most 2x); streamed peak RSS "
         f"{results[0]['peak_rss_gb']:.2f} GB (target: under 2 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
