"""scripts/bench_serve.py's load logic on a tiny index: its request mix from concurrent clients against
the app served by uvicorn in this process, a sound server passing the checks and a broken one not."""
import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("uvicorn")

from conftest import OPEN_CLIP_MISSING, served  # noqa: E402
from hashindex.index_file import load_index  # noqa: E402
from hashindex.query import SearchEngine  # noqa: E402
from webui.app import create_app  # noqa: E402

import bench_serve_cli as bench  # noqa: E402

pytestmark = OPEN_CLIP_MISSING
SMALL_MODEL = {"fusion_dim": 64, "fusion_ff_dim": 64, "hash_hidden": 32}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """The bench's index of 300 random 32-bit codes (tiny random CLIP, small random checkpoint),
    served by uvicorn in a thread on a port the system picked."""
    folder = tmp_path_factory.mktemp("load")
    path = bench.synthetic_index(folder, 300, 32, str(bench.TINY_CLIP), np.random.default_rng(0), SMALL_MODEL)
    with served(create_app(SearchEngine(load_index(path), path), max_k=50), log_level="critical") as url:
        yield url


def test_every_request_is_sent_once_counted_by_status_and_the_checks_pass(base_url, tmp_path, capsys):
    args = bench.parse_args(["--clients", "8", "--requests", "200", "--warmup", "16", "--k", "10"])
    rss = iter([500.0, 540.0])                       # +8 %: within the 10 % allowed
    report = bench.measure(base_url, lambda: next(rss), args)
    kinds = report["kinds"]
    assert report["ok"], report["checks"]
    assert report["sent"] == kinds["all"]["requests"] == sum(kinds[name]["requests"] for name in bench.KINDS) == 200
    for name, (_, status) in bench.KINDS.items():   # each kind sent, each answered as it must be
        assert kinds[name]["requests"] > 0 and kinds[name]["statuses"] == {str(status): kinds[name]["requests"]}
        assert 0 < kinds[name]["p50_ms"] <= kinds[name]["p99_ms"]
    assert kinds["good"]["statuses"] == {"200": sum(kinds[name]["requests"] for name in bench.GOOD)}
    assert report["rss_mb"] == {"warm": 500.0, "after": 540.0, "change_pct": 8.0}
    bench.publish(report, tmp_path / "load.json")
    table = capsys.readouterr().out
    assert "foreign Host" in table and "ok     no 5xx from a good request" in table and "FAILED" not in table
    assert json.loads((tmp_path / "load.json").read_text()) == report


def test_the_checks_fail_on_a_5xx_a_wrong_status_grown_memory_or_the_time_limit(base_url, monkeypatch):
    def broken(self, modality, features):            # text and image queries fail inside the server
        raise RuntimeError("a kernel failed")

    monkeypatch.setattr(SearchEngine, "_encode", broken)
    rss = iter([500.0, 560.0])
    report = bench.measure(base_url, lambda: next(rss), bench.parse_args(["--clients", "4", "--requests", "40",
                                                                          "--warmup", "0"]))
    checks, text = report["checks"], report["kinds"]["text query"]
    assert not report["ok"] and text["statuses"] == {"500": text["requests"]}
    assert checks["no 5xx from a good request"].startswith("good requests got {'500': ")
    assert checks["every request its expected status"].startswith("text query: {'500': ")
    assert checks["RSS within 10% of after warm-up"] == "500.0 MB -> 560.0 MB (+12.0%)"
    assert checks["every request sent within the time limit"] is None

    rss = iter([500.0, 500.0])
    report = bench.measure(base_url, lambda: next(rss), bench.parse_args(["--requests", "20", "--warmup", "0",
                                                                          "--time_limit", "1e-9"]))
    assert report["checks"]["every request sent within the time limit"] == "20 not sent"
    assert report["kinds"]["all"]["statuses"] == {"not sent": 20} and report["kinds"]["all"]["p50_ms"] is None


def closing_server(answers_per_connection: int):
    """A raw HTTP server on 127.0.0.1 that answers `answers_per_connection` requests on each connection
    with a JSON 404, then closes the connection, unanswered, when the next request comes: as uvicorn
    does when a connection's keep-alive timer fires just as a request goes out on it."""
    async def handle(reader, writer):
        try:
            for _ in range(answers_per_connection):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:   # the client closed first
            pass
        writer.close()
    return asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("answers, outcomes", [
    (1, [("404", False), ("404", True), ("404", True)]),   # each request after the first goes out twice
    (0, [("connection error (RemoteProtocolError)", False)] * 3),   # a new connection: not sent again
])
def test_a_request_lost_to_a_closing_kept_alive_connection_is_sent_once_more(answers, outcomes):
    async def scenario():
        server = await closing_server(answers)
        plan = [("unknown id", {"method": "GET", "url": "/api/search", "params": {"id": "x"}})] * 3
        async with server:
            return await bench.send_all(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", plan, 1, 5, 30)
    sent = asyncio.run(scenario())
    assert [(outcome, resent) for _, outcome, _, resent in sent] == outcomes
