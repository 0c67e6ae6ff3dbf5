"""Latency of the search server's id queries over HTTP: a synthetic index, the real server, many queries.

    python scripts/bench_serve.py                          # 1M 64-bit codes, 1,000 id queries, k=20
    python scripts/bench_serve.py --items 100000 --queries 200 --backend numpy

Writes an index of random codes and ids (no model: an id query uses the item's stored code) to a
temporary folder, starts `scripts/search.py --serve` on it in a subprocess on a free localhost port,
waits until it answers, then sends --queries GET /api/search?id=...&k=... one at a time over one
keep-alive connection (random ids and query modalities) and times each from request to parsed JSON.
Prints the server's start-up time, p50 / p99 / mean / max latency, and the same as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hashindex.index_file import CodeIndex, packed_width, save_index  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000, help="codes in the index (default 1,000,000)")
    p.add_argument("--bits", type=int, default=64, help="code length (default 64)")
    p.add_argument("--queries", type=int, default=1000, help="timed id queries (default 1,000)")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries first (default 20)")
    p.add_argument("--k", type=int, default=20, help="results per query (default 20)")
    p.add_argument("--backend", choices=("auto", "faiss", "numpy"), default="auto", help="the server's --backend")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.items, args.bits, args.queries, args.k) < 1 or args.warmup < 0:
        p.error("--items, --bits, --queries and --k must be at least 1, --warmup at least 0")
    return args


def synthetic_index(path: Path, items: int, bits: int, rng) -> np.ndarray:
    """Write an index of uniformly random codes (padding bits zero) and ids "0".."items-1"; returns the ids."""
    ids = np.arange(items).astype(str)
    width, unused = packed_width(bits), 8 * packed_width(bits) - bits
    codes = {}
    for modality in ("image", "text"):
        packed = rng.integers(0, 256, (items, width), dtype=np.uint8)
        packed[:, -1] &= np.uint8((0xFF << unused) & 0xFF)
        codes[modality] = packed
    save_index(path, CodeIndex(bits=bits, ids=ids, codes=codes, meta={"protocol": "synthetic"}))
    return ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(server: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the server exited with status {server.returncode} before answering")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: the server did not answer {url} within {timeout:.0f} s")


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "synthetic.npz"
        ids = synthetic_index(path, args.items, args.bits, rng)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "search.py"), "--serve", "--index", str(path),
                                   "--port", str(port), "--backend", args.backend], stdout=subprocess.DEVNULL)
        try:
            wait_until_up(server, f"{base}/api/info")
            startup = time.perf_counter() - started
            info = httpx.get(f"{base}/api/info").json()
            picks = rng.integers(0, args.items, args.warmup + args.queries)
            modalities = rng.choice(["image", "text"], args.warmup + args.queries)
            seconds = []
            with httpx.Client(base_url=base) as client:
                for i, (row, modality) in enumerate(zip(picks, modalities)):
                    begin = time.perf_counter()
                    answer = client.get("/api/search", params={"id": ids[row], "modality": modality, "k": args.k})
                    found = answer.json()
                    elapsed = time.perf_counter() - begin
                    if answer.status_code != 200 or len(found["results"]) != min(args.k, args.items):
                        raise SystemExit(f"error: query {i} (id {ids[row]}) answered {answer.status_code}: "
                                         f"{answer.text[:200]}")
                    if i >= args.warmup:
                        seconds.append(elapsed)
        finally:
            server.terminate()
            server.wait(30)
    ms = np.array(seconds) * 1e3
    report = {"items": args.items, "bits": args.bits, "queries": args.queries, "k": args.k,
              "search": info["search"]["text"], "startup_s": round(startup, 2),
              "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
              "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}
    print(f"{args.queries} id queries, k={args.k}, over {args.items:,} {args.bits}-bit codes "
          f"({report['search']['kind']} search, {report['search']['backend']}), server up in {startup:.1f} s")
    print(f"latency per query (HTTP on localhost, request to parsed JSON): p50 {report['p50_ms']} ms, "
          f"p99 {report['p99_ms']} ms, mean {report['mean_ms']} ms, max {report['max_ms']} ms")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
