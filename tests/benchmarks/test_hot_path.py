"""The hot-path benchmark's parts: the load generator against a small local server (open loop counts
arrivals from when they were due, closed loop keeps N clients busy, failures get status 0), the
judging of targets, and one short real run of the whole command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.skips import requires_triton

from benchmarks import hot_path, http_load
from strategist.paths import PROJECT_ROOT
from strategist.serving.triton_launcher import free_port

DELAY_S = 0.02


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    """HTTP/1.1 keep-alive server: /ok answers 200 after DELAY_S, /busy 429 at once; counts requests."""
    port = free_port()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                break
            length = 0
            while (header := await reader.readline()) not in (b"\r\n", b""):
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            await reader.readexactly(length)
            path = line.split()[1]
            if path == b"/ok":
                await asyncio.sleep(DELAY_S)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            else:
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(handle, "127.0.0.1", port), loop).result(
        10
    )
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _requests(url: str) -> list[bytes]:
    return http_load.encode_requests(url, [b'{"a":1}', b'{"b":2}'], "application/json", {})


def test_open_loop_sends_the_offered_rate_and_times_from_the_due_moment(slow_server):
    url = slow_server + "/ok"
    samples, window, _ = asyncio.run(http_load.open_loop(url, _requests(url), 100.0, 1.0, 0.2))
    result = http_load.summary(samples, window)
    assert 95 <= result["sent"] <= 101 and result["statuses"] == {"200": result["sent"]}
    latencies = sorted(s[1] for s in samples)
    assert latencies[len(latencies) // 2] >= DELAY_S * 1000  # the server's delay is in every latency
    # Two connections at most: 100 arrivals/s x 20 ms each. Capped at one, the queue on this side
    # shows in the latency (coordinated omission is not hidden).
    samples_1, _, _ = asyncio.run(
        http_load.open_loop(url, _requests(url), 100.0, 1.0, 0.2, max_connections=1)
    )
    assert max(s[1] for s in samples_1) > 5 * DELAY_S * 1000


def test_closed_loop_keeps_each_client_busy(slow_server):
    url = slow_server + "/ok"
    samples, window, _ = asyncio.run(http_load.closed_loop(url, _requests(url), 4, 1.0, 0.2))
    rate = http_load.summary(samples, window)["ok_per_s"]
    assert 0.6 * 4 / DELAY_S <= rate <= 4 / DELAY_S * 1.05  # ~200/s at 4 clients x 20 ms


def test_refusals_and_dead_servers_are_counted_not_hidden(slow_server):
    busy = slow_server + "/busy"
    samples, window, _ = asyncio.run(http_load.closed_loop(busy, _requests(busy), 2, 0.3, 0.0))
    assert set(http_load.summary(samples, window)["statuses"]) == {"429"}
    dead = f"http://127.0.0.1:{free_port()}/ok"
    samples, window, _ = asyncio.run(http_load.open_loop(dead, _requests(dead), 20.0, 0.5, 0.0))
    assert http_load.summary(samples, window)["statuses"] == {"0": len(samples)} and samples


def _point(variant: str, ok_per_s: float, p99: float, **extra) -> dict:
    return {"variant": variant, "ok_per_s": ok_per_s, "latency": {"p99_ms": p99}, "statuses": {"200": 1},
            "failed": 0, "cpu_ms_per_request": {"server": 2.0}, **extra}  # fmt: skip


def test_targets_are_judged_from_the_points():
    points = {
        "open": [_point("after", 99, 12.0, offered=100.0), _point("after", 180, 80.0, offered=200.0)],
        "p99_runs": [_point("after", 100, p, offered=100.0, run=i) for i, p in enumerate([8, 9, 9.5, 11, 7])],
        "closed": [_point("after", 300, 40, clients=16), _point("after", 240, 900, clients=256)],
        "batch": [{**_point("after", 20, 300, clients=1), "rows_per_s": 2560.0, "cars_per_s": 1280.0}],
        "peer": [_point("peer", 50, 30, clients=16)],
    }
    rows = {r["target"].split(" (")[0]: r for r in hot_path.judge({"points": points, "variants": ["after"]})}
    assert rows["raw /predict >= 800 req/s held"]["measured"].startswith("100 req/s held")  # 200: p99 80 ms
    assert rows["p99 <= 10 ms at 100 req/s, 5 runs of 5"]["met"] == "no (4 of 5)"
    assert rows["gateway CPU <= 1.0 ms per request"]["met"] == "no (2.0x)"
    assert rows["/predict/batch of 64 cars >= 2,500 rows/s"]["met"] == "yes"
    assert rows[">= 5x the in-process FastAPI + PyTorch peer's best rate"]["met"] == "yes"  # 300 / 50
    assert rows["256 clients >= 90% of the best closed-loop rate"]["met"] == "no (80%)"


@requires_triton
@pytest.mark.timeout(400)
def test_a_short_run_of_the_whole_command(tmp_path: Path):
    command = [sys.executable, "-m", "benchmarks.hot_path", "--variants", "after", "--rates", "20",
               "--clients", "2", "--p99-runs", "1", "--batch-clients", "1", "--peer-clients", "1",
               "--duration", "2", "--warmup", "1", "--payloads", "4", "--name", "smoke", "--out", str(tmp_path)]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=380)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.png").stat().st_size > 10_000 and (tmp_path / "smoke.md").is_file()
    points = result["points"]
    assert points["open"][0]["ok"] > 0 and points["open"][0]["failed"] == 0
    assert points["batch"][0]["rows_per_s"] > 0 and points["peer"][0]["ok"] > 0
    assert {r["target"].split(" ")[0] for r in result["targets"]} >= {
        "raw",
        "p99",
        "gateway",
        "/predict/batch",
    }
    assert result["machine"]["nproc"] and time.monotonic() - started < 380
