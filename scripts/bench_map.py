"""Benchmark evaluate.retrieval_metrics against the plain per-query loop of evaluate.reference_metrics.

    python scripts/bench_map.py [--queries 2100 --database 184477 --bits 64 --k 50 --labels 21
                                 --codes random --seed 0 --loop_queries N --check_queries 50]

Defaults are NUS-WIDE's size. Every item gets 1-3 of --labels labels; codes are
random (--codes random: very many items tie at each Hamming distance) or
sign(labels @ projection + noise) (--codes correlated: mAP@50 about 0.75).
Times:
  1. the loop (stable argsort per query) computing mAP@k alone, once (it is the slow one);
  2. retrieval_metrics computing mAP@k alone, median of 3 runs;
  3. retrieval_metrics computing the trainer's default scoring, mAP@k, mAP@all and P@k together,
     median of 3 runs;
and checks the values: mAP@k against the loop (tolerance 1e-9), and mAP@all and P@k against the
loop on the first --check_queries queries. Exit status 1 on a mismatch.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluate import reference_metrics, retrieval_metrics  # noqa: E402
from runio.logs import add_log_flags, info, setup_logging  # noqa: E402

TOLERANCE = 1e-9


def make_data(n_items, n_labels, n_bits, projection, codes, rng):
    """(n_items, n_bits) +-1 float codes and (n_items, n_labels) int8 multi-hot labels."""
    labels = np.zeros((n_items, n_labels), dtype=np.int8)
    n_per_item = rng.integers(1, 4, size=n_items)                   # 1..3 labels each
    for i, n in enumerate(n_per_item):
        labels[i, rng.choice(n_labels, size=n, replace=False)] = 1
    noise = rng.standard_normal((n_items, n_bits), dtype=np.float32)
    if codes == "correlated":
        noise = labels.astype(np.float32) @ projection + noise * 2.25   # mAP@50 ~0.75
    return np.where(noise >= 0, 1.0, -1.0).astype(np.float32), labels


def median_time(function, repeats=3):
    """(median seconds over `repeats` calls, the last call's value)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), value


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=2100)
    p.add_argument("--database", type=int, default=184477)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--labels", type=int, default=21)
    p.add_argument("--codes", choices=("random", "correlated"), default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loop_queries", type=int, default=None,
                   help="time the loop on the first N queries only and extrapolate (default: all queries)")
    p.add_argument("--check_queries", type=int, default=50,
                   help="queries on which mAP@all and P@k are checked against the loop")
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    for name in ("queries", "database", "bits", "k", "labels", "check_queries"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.loop_queries is not None and args.loop_queries < 1:
        p.error("--loop_queries must be >= 1")

    rng = np.random.default_rng(args.seed)
    projection = rng.standard_normal((args.labels, args.bits)).astype(np.float32)
    q, ql = make_data(args.queries, args.labels, args.bits, projection, args.codes, rng)
    d, dl = make_data(args.database, args.labels, args.bits, projection, args.codes, rng)
    n_loop = args.queries if args.loop_queries is None else min(args.loop_queries, args.queries)
    info(f"Q={args.queries} N={args.database} bits={args.bits} k={args.k} labels={args.labels} "
         f"codes={args.codes} seed={args.seed} torch threads={torch.get_num_threads()}")

    retrieval_metrics(q[:8], d[:1000], ql[:8], dl[:1000], k=args.k)    # warm-up (JIT, kernels)
    t_alone, alone = median_time(lambda: retrieval_metrics(q, d, ql, dl, k=args.k, want="map_k"))
    t_trio, trio = median_time(lambda: retrieval_metrics(q, d, ql, dl, k=args.k))
    start = time.perf_counter()
    loop = reference_metrics(q[:n_loop], d, ql[:n_loop], dl, args.k, want=("map_k",))["map_k"]
    t_loop = (time.perf_counter() - start) * args.queries / n_loop
    fast = alone["map_k"] if n_loop == args.queries else \
        retrieval_metrics(q[:n_loop], d, ql[:n_loop], dl, k=args.k, want="map_k")["map_k"]
    n_check = min(args.check_queries, args.queries)
    checked = reference_metrics(q[:n_check], d, ql[:n_check], dl, args.k)
    fast_check = retrieval_metrics(q[:n_check], d, ql[:n_check], dl, k=args.k)

    extrapolated = "" if n_loop == args.queries else f" (extrapolated from {n_loop} queries)"
    rows = [(f"loop: mAP@{args.k} alone{extrapolated}", t_loop, f"mAP@{args.k} {loop:.12f}"),
            (f"retrieval_metrics: mAP@{args.k} alone", t_alone, f"mAP@{args.k} {alone['map_k']:.12f}"),
            (f"retrieval_metrics: mAP@{args.k} + mAP@all + P@{args.k}", t_trio,
             f"mAP@all {trio['map_all']:.12f}, P@{args.k} {trio['precision_k']:.12f}")]
    info(f"\n{'what':<50}{'seconds':>10}   value   (retrieval_metrics: median of 3 runs)")
    for name, seconds, value in rows:
        info(f"{name:<50}{seconds:>10.3f}   {value}")
    info(f"\nspeed-up over the loop: mAP@{args.k} alone {t_loop / t_alone:.1f}x, "
         f"default trio {t_loop / t_trio:.1f}x (target: trio >= 10x)")
    differences = {f"mAP@{args.k} vs loop ({n_loop} queries)": abs(fast - loop),
                   f"trio mAP@{args.k} vs mAP@{args.k} alone": abs(trio["map_k"] - alone["map_k"])}
    differences.update({f"{name} vs loop ({n_check} queries)": abs(fast_check[name] - checked[name])
                        for name in ("map_k", "map_all", "precision_k")})
    ok = all(diff <= TOLERANCE for diff in differences.values())
    for name, diff in differences.items():
        info(f"|difference| {name:<40} {diff:.3e}  {'OK' if diff <= TOLERANCE else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
