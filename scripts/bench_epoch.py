"""Seconds per hash-training epoch, the setting of UCMFH's speed comparison.

    python scripts/bench_epoch.py              # 4,992 x 512-d pairs, batch 128, 64 bits, 3 epochs

Synthetic features (the timing does not depend on their values). The reference
UCMFH code took about 60 s per epoch on this project's 2-core CPU (measured
for ../shared/docs/reference-notes.md); the target is at most 1/5 of that.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import build_config  # noqa: E402
from data import DatasetSplits, FeatureSplit  # noqa: E402
from ICMR import Solver  # noqa: E402

REFERENCE_SECONDS = 60.0  # reference UCMFH code, same setting, this CPU (reference notes)


def synthetic_split(rows, rng, dim=512, labels=24):
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    label = (rng.random((rows, labels)) < 0.1).astype(np.float32)
    label[np.arange(rows), rng.integers(0, labels, rows)] = 1
    return FeatureSplit(unit(rng.standard_normal((rows, dim))), unit(rng.standard_normal((rows, dim))),
                        label, "synthetic")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4992)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modality_dropout", default=None,
                        help="share of pairs encoded one side at a time (default: the config default)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    data = DatasetSplits("synthetic", synthetic_split(args.pairs, rng), synthetic_split(8, rng),
                         synthetic_split(8, rng))
    cfg = build_config(["--dataset", "synthetic", "--batch_size", str(args.batch_size), "--epoch", "100",
                        "--device", args.device, "--output_dir", "/tmp/bench_epoch",
                        *(["--modality_dropout", args.modality_dropout] if args.modality_dropout else [])])
    solver = Solver(cfg, bits=args.bits, data=data, log=lambda *_: None)
    times = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        solver.trainhash(solver.schedule.at(epoch))
        if solver.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}: {times[-1]:.2f} s")
    median = statistics.median(times)
    print(f"\n{args.pairs} pairs x {data.image_dim}-d, batch {args.batch_size}, {args.bits} bits, "
          f"modality_dropout {cfg.modality_dropout}, "
          f"{torch.get_num_threads()} threads, {args.device}")
    print(f"seconds per epoch (median of {args.epochs}): {median:.2f}")
    print(f"reference UCMFH code (reference notes): {REFERENCE_SECONDS:.0f} s -> "
          f"{REFERENCE_SECONDS / median:.1f}x faster (target: at least 5x, i.e. <= {REFERENCE_SECONDS / 5:.0f} s)")


if __name__ == "__main__":
    main()
