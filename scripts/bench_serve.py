"""Load on the search server: concurrent clients send a fixed number of good and bad requests to the
real server over an index of 1M codes, on 127.0.0.1 only.

    python scripts/bench_serve.py                       # 1M 64-bit codes, 32 clients, 10,000 requests
    python scripts/bench_serve.py --items 100000 --requests 2000 --json load.json

Writes to a temporary folder an index of random codes with ids "0".."items-1", a hash checkpoint of
the default model sizes with random weights, and the record of an open_clip encoder with random
weights (--clip_model: by default the two-layer architecture file of the tests, so that a shared CPU
serves text and image queries; ViT-B-32 for the real encoder's cost), so that text and image
queries work. It starts `scripts/search.py --serve` on it in a subprocess on a free port of
127.0.0.1 and waits until it answers. Then --clients concurrent clients (asyncio, keep-alive
connections) send --warmup requests, the server's resident memory (RSS) is read, and then
--requests more, drawn with --seed: good id, text and image queries mixed with bad requests of
every kind the API refuses (KINDS). A request is timed from sending to its parsed answer. One lost
unanswered on a kept-alive connection that the server closed as idle just then is sent once more
(as browsers do) and counted as resent; any other dropped connection is an error.

It prints per kind of request the count of each status with p50 and p99 latency, the server's RSS
after the warm-up and after the run, and the checks: every good request answered 200 with k
results (never a 5xx), every bad one its 4xx, the run within --time_limit, and the RSS after the
run within --rss_tolerance (10 %) of the RSS after warm-up. --json FILE writes the same report.
The exit status is 1 when a check fails.
"""
from __future__ import annotations

import argparse
import asyncio
import io
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
from runio.atomic import atomic_write_json  # noqa: E402
from runio.logs import add_log_flags, info, setup_logging  # noqa: E402

TINY_CLIP = ROOT / "tests" / "fixtures" / "test-tiny-clip.json"   # 512-d features, as ViT-B-32's
WORDS = "a the dog cat red blue small large on in beach street snow field running sitting two people".split()
# kind -> (share of the requests, the status it must get); the first three are good queries
KINDS = {"id query": (0.45, 200), "text query": (0.2, 200), "image query": (0.1, 200),
         "unknown id": (0.05, 404), "k out of range": (0.04, 422), "empty text": (0.04, 422),
         "no query": (0.03, 400), "not an image": (0.04, 400), "foreign Host": (0.05, 400)}
GOOD = ("id query", "text query", "image query")


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000, help="codes in the index (default 1,000,000)")
    p.add_argument("--bits", type=int, default=64, help="code length (default 64)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--requests", type=int, default=10_000, help="requests measured (default 10,000)")
    p.add_argument("--warmup", type=int, default=1000, help="requests first, unmeasured (default 1,000)")
    p.add_argument("--time_limit", type=float, default=1800, help="seconds the measured requests may take "
                   "(default 1800); the ones not sent by then are counted as not sent")
    p.add_argument("--k", type=int, default=20, help="results per query (default 20)")
    p.add_argument("--rss_tolerance", type=float, default=0.10, help="RSS growth allowed (default 0.10)")
    p.add_argument("--backend", choices=("auto", "faiss", "numpy"), default="auto", help="the server's --backend")
    p.add_argument("--clip_model", default=str(TINY_CLIP), help="open_clip model name or architecture file "
                   "of the query encoder, random weights (default: the tests' two-layer one)")
    p.add_argument("--json", default="", help="also write the report to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    add_log_flags(p)
    args = p.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    if min(args.items, args.bits, args.clients, args.requests, args.k) < 1 or args.warmup < 0:
        p.error("--items, --bits, --clients, --requests and --k must be at least 1, --warmup at least 0")
    if args.time_limit <= 0 or args.rss_tolerance < 0:
        p.error("--time_limit must be above 0 and --rss_tolerance at least 0")
    return args


def random_checkpoint(path: Path, bits: int, sizes: dict | None = None) -> None:
    """A hash checkpoint as train.py writes one, of 512-d inputs (CLIP's features) and random weights;
    `sizes` overrides Config's model sizes (the tests' small model)."""
    import torch

    from config import Config, to_dict
    from model import build_model
    from runio.atomic import atomic_torch_save

    cfg = Config(**{"unimodal_epochs": 0, **(sizes or {})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg, 512, 512, bits, 1.0, branch=False)
    atomic_torch_save(path, {"fusion": model.fusion.state_dict(), "image_head": model.image_head.state_dict(),
                             "text_head": model.text_head.state_dict(), "config": to_dict(cfg), "bits": bits,
                             "epoch": 1, "iteration": 1})


def synthetic_index(folder: Path, items: int, bits: int, clip_model: str, rng, sizes: dict | None = None) -> Path:
    """An index of uniformly random codes (padding bits zero), ids "0".."items-1", a random checkpoint
    and a random-weight CLIP encoder recorded, so that every kind of query works; returns its path."""
    from runio.checkpoint import MODEL_KEYS, load_trained_model

    checkpoint = folder / "random_hash.pth"
    random_checkpoint(checkpoint, bits, sizes)
    info = load_trained_model(checkpoint, log=lambda message: None)[1]
    width, unused = packed_width(bits), 8 * packed_width(bits) - bits
    codes = {}
    for modality in ("image", "text"):
        packed = rng.integers(0, 256, (items, width), dtype=np.uint8)
        packed[:, -1] &= np.uint8((0xFF << unused) & 0xFF)
        codes[modality] = packed
    meta = {"protocol": "synthetic", "checkpoint": str(checkpoint), "image_dim": 512, "text_dim": 512,
            "model": {k: info["config"].get(k) for k in MODEL_KEYS},
            "encoder": {"clip_model": clip_model, "pretrained": "random", "weights_file": None, "weights_sha256": None}}
    path = folder / "synthetic.npz"
    save_index(path, CodeIndex(bits=bits, ids=np.arange(items).astype(str), codes=codes, meta=meta))
    return path


def jpeg_bytes(rng, size=(160, 120)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(out, "JPEG", quality=80)
    return out.getvalue()


def request_plan(count: int, items: int, k: int, max_k: int, rng) -> list:
    """`count` requests (kind, keyword arguments of httpx's request) drawn in KINDS' shares."""
    kinds = rng.choice(list(KINDS), count, p=[share for share, _ in KINDS.values()])
    pictures = [jpeg_bytes(rng) for _ in range(4)]
    plan = []
    for kind in kinds.tolist():
        item_id, modality = str(rng.integers(items)), str(rng.choice(["image", "text"]))
        text = " ".join(rng.choice(WORDS, int(rng.integers(2, 8))).tolist())
        search = {"method": "GET", "url": "/api/search"}
        request = {
            "id query": dict(search, params={"id": item_id, "modality": modality, "k": k}),
            "text query": dict(search, params={"text": text, "k": k}),
            "image query": dict(method="POST", url="/api/search", data={"k": str(k)},
                                files={"image": ("q.jpg", pictures[len(plan) % 4], "image/jpeg")}),
            "unknown id": dict(search, params={"id": f"missing-{item_id}", "k": k}),
            "k out of range": dict(search, params={"id": item_id, "k": int(rng.choice([0, max_k + 1]))}),
            "empty text": dict(search, params={"text": " ", "k": k}),
            "no query": dict(search, params={"k": k}),
            "not an image": dict(method="POST", url="/api/search", files={"image": ("q.jpg", b"plain text")}),
            "foreign Host": dict(search, params={"id": item_id, "k": k}, headers={"host": "rebound.example"}),
        }[kind]
        plan.append((kind, request))
    return plan


async def send_once(client: httpx.AsyncClient, request: dict, good: bool, k: int) -> tuple:
    """(outcome, stale): outcome the status ("200", "404", ...), "200 wrong" (a good query not
    answered with k results), "timeout", "<status> not JSON" or "connection error (<kind>)"; stale when
    the request was lost unanswered on a kept-alive connection (no new TCP connection made for it, no
    response headers read): the server closed it as idle just as the request went out, a race of
    HTTP keep-alive that clients meet whenever they are slow to reuse a connection."""
    events = set()

    async def trace(event: str, info: dict) -> None:   # httpcore's events for this request
        events.add(event)

    try:
        answer = await client.request(**request, extensions={"trace": trace})
    except httpx.TimeoutException:
        return "timeout", False
    except httpx.TransportError as err:   # a refused, reset or dropped connection
        stale = not events & {"connection.connect_tcp.started", "http11.receive_response_headers.complete"}
        return f"connection error ({type(err).__name__})", stale
    try:
        found = answer.json()
    except ValueError:   # a plain-text error page
        return f"{answer.status_code} not JSON", False
    if answer.status_code == 200 and good and len(found["results"]) != k:
        return "200 wrong", False
    return str(answer.status_code), False


async def send_all(base: str, plan: list, clients: int, k: int, time_limit: float) -> list:
    """Each request of `plan` sent by `clients` concurrent clients: a list of (kind, outcome, seconds,
    resent), outcome as send_once's or "not sent" (past time_limit). A request lost to a stale
    kept-alive connection goes once more (resent), as browsers and Go's HTTP client do."""
    outcomes = [(kind, "not sent", None, False) for kind, _ in plan]
    upcoming = iter(range(len(plan)))   # shared by the clients: each request is taken once
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def one_client():
            for i in upcoming:
                if time.monotonic() > deadline:
                    return
                kind, request = plan[i]
                begin = time.perf_counter()
                outcome, resent = await send_once(client, request, kind in GOOD, k)
                if resent:
                    outcome, _ = await send_once(client, request, kind in GOOD, k)
                outcomes[i] = (kind, outcome, time.perf_counter() - begin, resent)
        await asyncio.gather(*(one_client() for _ in range(clients)))
    return outcomes


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (Linux's /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def percentiles(seconds: list) -> dict:
    ms = np.array(seconds) * 1e3
    if not len(ms):
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def summarize(outcomes: list, seconds: float) -> dict:
    """Per kind, for the good and bad ones together, and for all: counts per outcome, p50 and p99."""
    groups = {kind: [o for o in outcomes if o[0] == kind] for kind in KINDS}
    groups["good"] = [o for o in outcomes if o[0] in GOOD]
    groups["bad"] = [o for o in outcomes if o[0] not in GOOD]
    groups["all"] = outcomes
    table = {}
    for name, rows in groups.items():
        counts = {}
        for _, outcome, _, _ in rows:
            counts[outcome] = counts.get(outcome, 0) + 1
        table[name] = {"requests": len(rows), "statuses": dict(sorted(counts.items())),
                       "resent": sum(resent for *_, resent in rows),
                       **percentiles([s for _, outcome, s, _ in rows if outcome != "not sent"])}
        if name in KINDS:
            table[name]["expected"] = KINDS[name][1]
    sent = sum(1 for o in outcomes if o[1] != "not sent")
    return {"kinds": table, "sent": sent, "seconds": round(seconds, 1), "per_second": round(sent / seconds, 1)}


def checks(report: dict, tolerance: float) -> dict:
    """Check name -> None when it holds, else what went wrong (one line)."""
    kinds, rss = report["kinds"], report["rss_mb"]
    server_errors = {o: n for o, n in kinds["good"]["statuses"].items() if o[0] == "5"}
    wrong = {name: {o: n for o, n in kinds[name]["statuses"].items() if o != str(KINDS[name][1])}
             for name in KINDS}
    wrong = {name: found for name, found in wrong.items() if found}
    growth = rss["after"] / rss["warm"] - 1
    return {"no 5xx from a good request": f"good requests got {server_errors}" if server_errors else None,
            "every request its expected status": "; ".join(f"{n}: {f}" for n, f in wrong.items()) or None,
            "every request sent within the time limit": None if report["sent"] == report["requests"] else
            f"{report['requests'] - report['sent']} not sent",
            f"RSS within {tolerance:.0%} of after warm-up": None if abs(growth) <= tolerance else
            f"{rss['warm']:.1f} MB -> {rss['after']:.1f} MB ({growth:+.1%})"}


def measure(base: str, read_rss, args) -> dict:
    """Warm up, read the RSS, run the measured requests, read the RSS again: the report."""
    rng = np.random.default_rng(args.seed)
    info = httpx.get(f"{base}/api/info").json()
    warmup = request_plan(args.warmup, info["size"], args.k, info["k"]["max"], rng)
    asyncio.run(send_all(base, warmup, args.clients, args.k, args.time_limit))
    warm = read_rss()
    plan = request_plan(args.requests, info["size"], args.k, info["k"]["max"], rng)
    began = time.perf_counter()
    outcomes = asyncio.run(send_all(base, plan, args.clients, args.k, args.time_limit))
    report = {"items": info["size"], "bits": info["bits"], "k": args.k, "clients": args.clients,
              "warmup": args.warmup, "requests": args.requests, "search": info["search"]["text"],
              **summarize(outcomes, time.perf_counter() - began)}
    after = read_rss()
    report["rss_mb"] = {"warm": round(warm, 1), "after": round(after, 1),
                        "change_pct": round(100 * (after / warm - 1), 2)}
    report["checks"] = checks(report, args.rss_tolerance)
    report["ok"] = not any(report["checks"].values())
    return report


def publish(report: dict, json_path: str = "") -> None:
    """Print the report as a table and the checks, and write it to `json_path` (when given)."""
    info(f"{report['sent']:,} of {report['requests']:,} requests (after {report['warmup']:,} to warm up) from "
         f"{report['clients']} clients in {report['seconds']} s ({report['per_second']} per s), k={report['k']}, "
         f"over {report['items']:,} {report['bits']}-bit codes ({report['search']['kind']} search, "
         f"{report['search']['backend']}), on 127.0.0.1")
    info(f"{'request':<16} {'expected':>8} {'sent':>6}  {'p50 ms':>7} {'p99 ms':>7} {'resent':>6}  statuses")
    for name, row in report["kinds"].items():
        if name == "good":
            info("-" * 80)
        shown = ", ".join(f"{o}: {n:,}" for o, n in row["statuses"].items())
        fmt = lambda v: "-" if v is None else f"{v:.1f}"   # noqa: E731
        info(f"{name:<16} {row.get('expected', ''):>8} {row['requests']:>6,}  {fmt(row['p50_ms']):>7} "
             f"{fmt(row['p99_ms']):>7} {row['resent']:>6}  {shown}")
    rss = report["rss_mb"]
    info(f"server RSS: {rss['warm']:.1f} MB after warm-up, {rss['after']:.1f} MB after the run "
         f"({rss['change_pct']:+.2f} %)")
    for name, failure in report["checks"].items():
        info(f"{'ok    ' if failure is None else 'FAILED'} {name}" + (f": {failure}" if failure else ""))
    if json_path:
        atomic_write_json(json_path, report)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(server: subprocess.Popen, url: str, log: Path, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the server exited with status {server.returncode} before answering: "
                             f"{log.read_text()[-500:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: the server did not answer {url} within {timeout:.0f} s")


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as folder:
        path = synthetic_index(Path(folder), args.items, args.bits, args.clip_model, np.random.default_rng(args.seed))
        port, log = free_port(), Path(folder) / "server.log"
        started = time.perf_counter()
        with open(log, "wb") as errors:
            server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "search.py"), "--serve",
                                       "--index", str(path), "--host", "127.0.0.1", "--port", str(port),
                                       "--backend", args.backend], stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_until_up(server, f"http://127.0.0.1:{port}/api/info", log)
            startup = time.perf_counter() - started
            report = measure(f"http://127.0.0.1:{port}", lambda: rss_mb(server.pid), args)
        finally:
            server.terminate()
            server.wait(30)
        report["startup_s"] = round(startup, 1)
        publish(report, args.json)
        if not report["ok"] and log.stat().st_size:
            info(f"the server's log ends: {log.read_text()[-2000:]}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
