"""Benchmark Hamming search over a synthetic code index: exact numpy, exact faiss, HNSW, IVF.

    python scripts/bench_index.py [--n 1000000 --bits 64 --queries 1000 --k 100
                                   --json FILE --hnsw_m 32 --hnsw_ef_construction 40 ...]

Synthetic codes look like learned hash codes: sign(x @ P) for x drawn from a
Gaussian mixture (--clusters centres in --dims dimensions, --spread noise) and
a random projection P, so near neighbours exist and distances tie a lot. The
queries are fresh draws from the same mixture, not database rows.

Per method: build time, stored bytes per item (packed codes + ids as stored +
the serialised faiss index for approximate kinds), latency of --queries single
searches (one query per call, k = --k) as median and 99th percentile, and for
approximate kinds recall@k against the exact top k: id overlap, and tie-aware
(a returned item counts when its distance <= the exact k-th distance, at most
k). Then save_index + load_index of the whole index, with and without a
stored HNSW index, and the file sizes.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hashindex.index_file import CodeIndex, load_index, save_index  # noqa: E402
from hashindex.hamming_search import (HammingSearcher, faiss_available, make_searcher,  # noqa: E402
                            store_approximate)
from runio.atomic import atomic_write_json  # noqa: E402
from runio.tables import format_table  # noqa: E402
from runio.logs import add_log_flags, info, progress, setup_logging  # noqa: E402

_CHUNK = 100_000      # rows generated at once: (chunk, dims) float32
METHODS = ("numpy", "faiss-flat", "faiss-hnsw", "faiss-ivf")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def mixture(bits, dims, clusters, rng):
    """The generative model: (clusters, dims) centres ~ N(0, 1), (dims, bits) projection P."""
    centres = rng.standard_normal((clusters, dims)).astype(np.float32)
    projection = rng.standard_normal((dims, bits)).astype(np.float32)
    return centres, projection


def draw_codes(n, centres, projection, spread, rng, desc) -> np.ndarray:
    """(n, ceil(bits/8)) uint8 packed sign(x @ P), x = a random centre + spread * N(0, I)."""
    parts = []
    for start in progress(range(0, n, _CHUNK), desc=desc, leave=False):
        rows = min(_CHUNK, n - start)
        x = centres[rng.integers(0, len(centres), rows)]
        x += spread * rng.standard_normal(x.shape, dtype=np.float32)
        parts.append(np.packbits(x @ projection >= 0, axis=1))
    return np.concatenate(parts)


def single_query_latencies(searcher, queries, k, desc):
    """Search one query per call; -> distances (Q, k), rows (Q, k), latencies (Q,) in ms."""
    dist, rows, ms = [], [], []
    for i in progress(range(len(queries)), desc=desc, leave=False):
        start = time.perf_counter()
        d, r = searcher.search(queries[i:i + 1], k)
        ms.append((time.perf_counter() - start) * 1e3)
        dist.append(d[0])
        rows.append(r[0])
    return np.stack(dist), np.stack(rows), np.array(ms)


def recall(rows, dist, exact_rows, exact_dist):
    """(id overlap, tie-aware) recall@k of approximate results against the exact ones."""
    k = exact_rows.shape[1]
    overlap = [len(np.intersect1d(a[a >= 0], e)) / k for a, e in zip(rows, exact_rows)]
    tie = [min(k, int(((a >= 0) & (d <= e[-1])).sum())) / k
           for a, d, e in zip(rows, dist, exact_dist)]
    return float(np.mean(overlap)), float(np.mean(tie))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="database codes")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--dims", type=int, default=128, help="dimension of the mixture")
    p.add_argument("--clusters", type=int, default=300)
    p.add_argument("--spread", type=float, default=0.7, help="noise std around a centre (centres ~ N(0, 1))")
    p.add_argument("--hnsw_m", type=int, default=32)
    p.add_argument("--hnsw_ef_construction", type=int, default=40)
    p.add_argument("--hnsw_ef_search", type=int, default=128)
    p.add_argument("--ivf_nlist", type=int, default=None, help="default ~4 sqrt(N)")
    p.add_argument("--ivf_nprobe", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                   help="which searchers (default: all); the first exact one is the recall reference. At 10M "
                        "codes: --methods faiss-flat faiss-ivf (numpy scans and an HNSW build take too long)")
    p.add_argument("--no_files", action="store_true", help="skip the save/load timing of the index file")
    p.add_argument("--json", default=None, help="also write the results here (atomically)")
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    if min(args.n, args.bits, args.queries, args.k) < 1:
        p.error("--n, --bits, --queries and --k must be >= 1")

    rng = np.random.default_rng(args.seed)
    centres, projection = mixture(args.bits, args.dims, args.clusters, rng)
    database = draw_codes(args.n, centres, projection, args.spread, rng, "database")
    queries = draw_codes(args.queries, centres, projection, args.spread, rng, "queries")
    ids = np.char.add("item", np.char.zfill(np.arange(args.n).astype(str), len(str(args.n - 1))))
    stored_bytes = database.nbytes + ids.nbytes            # codes + ids, as save_index writes them
    k = min(args.k, args.n)
    info(f"N={args.n} bits={args.bits} queries={args.queries} k={k} dims={args.dims} "
         f"clusters={args.clusters} spread={args.spread} (ids {ids.dtype}: {ids.itemsize} B each)")

    options = {"numpy": ("exact numpy", dict(kind="flat", backend="numpy")),
               "faiss-flat": ("exact faiss flat", dict(kind="flat", backend="faiss")),
               "faiss-hnsw": ("faiss hnsw", dict(kind="hnsw", hnsw_m=args.hnsw_m,
                                                 hnsw_ef_construction=args.hnsw_ef_construction,
                                                 hnsw_ef_search=args.hnsw_ef_search)),
               "faiss-ivf": ("faiss ivf", dict(kind="ivf", ivf_nlist=args.ivf_nlist, ivf_nprobe=args.ivf_nprobe,
                                               seed=args.seed))}
    if not faiss_available() and any(m.startswith("faiss") for m in args.methods):
        info("faiss is not installed (pip install faiss-cpu): exact numpy only")
        args.methods = ["numpy"]
    methods = [options[m] for m in METHODS if m in args.methods]
    results, searchers, exact = [], {}, None
    for name, options in methods:
        searcher, build_s = timed(lambda: HammingSearcher(database, args.bits, **options))
        searchers[name] = searcher
        extra = 0 if searcher.exact else searcher.serialize().nbytes
        dist, rows, ms = single_query_latencies(searcher, queries, k, name)
        row = {"method": name, **searcher.describe(), "build_s": build_s,
               "bytes_per_item": (stored_bytes + extra) / args.n,
               "latency_ms_median": float(np.median(ms)), "latency_ms_p99": float(np.percentile(ms, 99))}
        if exact is None:
            exact = (dist, rows)
        elif searcher.exact:
            same = np.array_equal(dist, exact[0]) and np.array_equal(rows, exact[1])
            row["identical_to_numpy"] = bool(same)
        else:
            row["recall_at_k"], row["recall_at_k_tie"] = recall(rows, dist, exact[1], exact[0])
        results.append(row)
        row["peak_rss_gb"] = peak_rss_gb()
        info(f"  {name}: built in {build_s:.1f} s, median {row['latency_ms_median']:.3f} ms, "
             f"peak RSS so far {row['peak_rss_gb']:.2f} GB")
    info(format_table(results, [
        ("method", "method", "{}"), ("build s", "build_s", "{:.2f}"), ("B/item", "bytes_per_item", "{:.1f}"),
        ("median ms", "latency_ms_median", "{:.3f}"), ("p99 ms", "latency_ms_p99", "{:.3f}"),
        (f"recall@{k}", "recall_at_k", "{:.4f}"), (f"tie recall@{k}", "recall_at_k_tie", "{:.4f}"),
        ("= reference", "identical_to_numpy", "{}")]))
    info(f"peak resident memory of this process: {peak_rss_gb():.2f} GB")

    if args.no_files:
        if args.json:
            atomic_write_json(args.json, {"config": vars(args), "methods": results, "files": []})
        return 0
    index = CodeIndex(bits=args.bits, ids=ids, codes={"image": database},
                      meta={"source": "scripts/bench_index.py synthetic", "seed": args.seed})
    files = []
    with tempfile.TemporaryDirectory() as folder:
        variants = [("codes + ids", None)]
        if "faiss hnsw" in searchers:
            variants.append(("+ stored hnsw", searchers["faiss hnsw"]))
        for label, approximate in variants:
            if approximate is not None:
                store_approximate(index, "image", approximate)
            path = Path(folder) / "index.npz"
            _, save_s = timed(lambda: save_index(path, index))
            loaded, load_s = timed(lambda: load_index(path))
            _, searcher_s = timed(lambda: make_searcher(loaded, "image"))
            files.append({"file": label, "bytes": path.stat().st_size, "save_s": save_s,
                          "load_s": load_s, "make_searcher_s": searcher_s})
    info()
    info(format_table([dict(f, mb=f["bytes"] / 1e6) for f in files], [
        ("file", "file", "{}"), ("MB", "mb", "{:.1f}"), ("save s", "save_s", "{:.2f}"),
        ("load s", "load_s", "{:.2f}"), ("make_searcher s", "make_searcher_s", "{:.3f}")]))
    if args.json:
        atomic_write_json(args.json, {"config": vars(args), "methods": results, "files": files})
    return 0


if __name__ == "__main__":
    sys.exit(main())
