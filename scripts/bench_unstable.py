"""Peak memory and time of UCMFH's unstable ranking (metrics.unstable; config tie_order unstable).

    python scripts/bench_unstable.py [--queries 2000 --database 190000 --bits 64 --labels 21 --k 50 --seed 0]

Defaults are about NUS-WIDE's size. Codes are random +-1 (very many items tie at each Hamming
distance), every item has each label with probability 2 / --labels. Peak memory is what numpy
allocates during the call (tracemalloc; the inputs, made before, are not counted), printed next to
the size of one (Q, N) float32 matrix, which the metric once built whole.
"""
import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metrics.unstable import unstable_ranking_metrics  # noqa: E402
from runio.logs import add_log_flags, info, setup_logging  # noqa: E402

MB = 2 ** 20


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    for name, default in (("queries", 2000), ("database", 190000), ("bits", 64), ("labels", 21), ("k", 50)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--seed", type=int, default=0)
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    for name in ("queries", "database", "bits", "labels", "k"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    rng = np.random.default_rng(args.seed)
    query, database = (np.where(rng.random((rows, args.bits)) < 0.5, 1.0, -1.0).astype(np.float32)
                       for rows in (args.queries, args.database))
    query_labels, database_labels = (rng.random((rows, args.labels)) < 2 / args.labels
                                     for rows in (args.queries, args.database))
    top = min(args.k, args.database)
    info(f"Q={args.queries} N={args.database} bits={args.bits} labels={args.labels} k={args.k} seed={args.seed}")

    tracemalloc.start()
    start = time.perf_counter()
    found = unstable_ranking_metrics(query, database, query_labels, database_labels, top)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    info(f"one (Q, N) float32 matrix:        {args.queries * args.database * 4 / MB:10.1f} MB")
    info(f"peak memory allocated in the call: {peak / MB:10.1f} MB")
    info(f"seconds:                           {seconds:10.2f}")
    info(f"mAP@{args.k} {found['ap_k'].mean():.12f}, mAP@all {found['ap_all'].mean():.12f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
