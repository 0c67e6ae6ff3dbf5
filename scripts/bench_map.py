"""Benchmark evaluate.retrieval_metrics against the per-query numpy loop oracle.

    python scripts/bench_map.py [--queries 2100 --database 184477 --bits 64
                                 --k 50 --labels 21 --seed 0 --loop_queries N]

Synthetic data: every item gets 1-3 of --labels labels; codes are
sign(labels @ projection + noise), so codes correlate with labels and the
mAP is not trivial. Times mAP@k (want map_k only) against the loop oracle in
tests/oracles.py, checks both give the same value, and times mAP@all alone
and the tie-aware mAP@all and mAP@k (one call: they share one histogram pass).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluate import retrieval_metrics  # noqa: E402
from tests.oracles import map_at_k_loop  # noqa: E402


def make_data(n_items, n_labels, n_bits, projection, rng):
    """(n_items, n_bits) +-1 float codes and (n_items, n_labels) int8 multi-hot labels."""
    labels = np.zeros((n_items, n_labels), dtype=np.int8)
    n_per_item = rng.integers(1, 4, size=n_items)                   # 1..3 labels each
    for i, n in enumerate(n_per_item):
        labels[i, rng.choice(n_labels, size=n, replace=False)] = 1
    signal = labels.astype(np.float32) @ projection                  # (n_items, n_bits)
    noise = rng.standard_normal((n_items, n_bits), dtype=np.float32) * 2.25  # mAP@50 ~0.75
    codes = np.where(signal + noise >= 0, 1.0, -1.0).astype(np.float32)
    return codes, labels


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=2100)
    p.add_argument("--database", type=int, default=184477)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--labels", type=int, default=21)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loop_queries", type=int, default=None,
                   help="time the numpy loop on the first N queries only and extrapolate "
                        "(default: all queries)")
    args = p.parse_args(argv)
    if args.loop_queries is not None and args.loop_queries < 1:
        p.error("--loop_queries must be >= 1")

    rng = np.random.default_rng(args.seed)
    projection = rng.standard_normal((args.labels, args.bits)).astype(np.float32)
    q_codes, q_labels = make_data(args.queries, args.labels, args.bits, projection, rng)
    db_codes, db_labels = make_data(args.database, args.labels, args.bits, projection, rng)
    n_loop = args.queries if args.loop_queries is None else min(args.loop_queries, args.queries)
    print(f"Q={args.queries} N={args.database} bits={args.bits} k={args.k} "
          f"labels={args.labels} seed={args.seed} torch threads={torch.get_num_threads()}")

    retrieval_metrics(q_codes[:8], db_codes[:1000], q_labels[:8], db_labels[:1000],
                      k=args.k, want="map_k")                        # warm-up (kernels)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fast = retrieval_metrics(q_codes, db_codes, q_labels, db_labels, k=args.k,
                                 want="map_k")["map_k"]
        times.append(time.perf_counter() - t0)
    print("vectorised runs:", ", ".join(f"{t:.3f} s" for t in times))
    t_fast = float(np.median(times))
    if n_loop < args.queries:            # same value on the subset the loop scores
        fast_cmp = retrieval_metrics(q_codes[:n_loop], db_codes, q_labels[:n_loop],
                                     db_labels, k=args.k, want="map_k")["map_k"]
    else:
        fast_cmp = fast

    t0 = time.perf_counter()
    loop = map_at_k_loop(q_codes[:n_loop], db_codes, q_labels[:n_loop], db_labels, args.k)
    t_loop_measured = time.perf_counter() - t0
    t_loop = t_loop_measured * args.queries / n_loop

    t0 = time.perf_counter()
    map_all = retrieval_metrics(q_codes, db_codes, q_labels, db_labels, k=args.k,
                                want="map_all")["map_all"]
    t_all = time.perf_counter() - t0

    t0 = time.perf_counter()
    tie = retrieval_metrics(q_codes, db_codes, q_labels, db_labels, k=args.k,
                            want=("map_all_tie", "map_k_tie"))
    t_tie = time.perf_counter() - t0

    rows = [
        (f"vectorised mAP@{args.k} (median of 3)", f"{t_fast:9.3f} s", f"{fast:.12f}"),
        (f"numpy loop mAP@{args.k}" + ("" if n_loop == args.queries else " (extrapolated)"),
         f"{t_loop:9.3f} s", f"{loop:.12f}"),
    ]
    print(f"\n{'what':<42}{'time':>12}   value")
    for name, t, v in rows:
        print(f"{name:<42}{t:>12}   {v}")
    print(f"{'speed-up (loop / vectorised)':<42}{t_loop / t_fast:>10.1f} x   (target >= 10 x)")
    if n_loop < args.queries:
        print(f"NOTE: loop timed on {n_loop} of {args.queries} queries "
              f"({t_loop_measured:.3f} s) and scaled by {args.queries / n_loop:.2f}; "
              f"values compared on those {n_loop} queries (vectorised: {fast_cmp:.12f}).")
    diff = abs(fast_cmp - loop)
    print(f"{'|vectorised - loop| mAP@' + str(args.k):<42}{diff:>12.3e}   "
          f"({'OK' if diff <= 1e-9 else 'MISMATCH'}: tolerance 1e-9)")
    print(f"{'vectorised mAP@all (separate call)':<42}{t_all:>10.3f} s   {map_all:.12f}")
    print(f"{'tie-aware mAP@all (+ @' + str(args.k) + ', one call)':<42}{t_tie:>10.3f} s   "
          f"{tie['map_all_tie']:.12f}  (mAP@{args.k} tie-aware {tie['map_k_tie']:.12f})")
    return 0 if diff <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
