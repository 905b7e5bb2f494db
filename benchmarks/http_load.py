"""A lean HTTP/1.1 load generator that runs in a process of its own.

    python -m benchmarks.http_load --url http://127.0.0.1:8000/predict --body a.json --body b.json \\
        --rate 200 --duration 10 --warmup 2 --out result.json        # open loop, 200 arrivals/s
    python -m benchmarks.http_load ... --clients 64 ...                # closed loop, 64 clients

Why its own: a load generator in the server's process (or event loop) steals the very CPU and loop
turns it measures; on a 2-core machine that hides where the time goes. Run as a subprocess, its cost
shows up separately (`cpu_s` in its output).

- Open loop (--rate R): request i is due at t0 + i / R, evenly spread; it takes an idle keep-alive
  connection or opens one (at most --max-connections). Its latency counts from when it was *due*,
  so waiting for a connection on this side is part of the latency, never hidden from it (no
  coordinated omission).
- Closed loop (--clients N): N connections, each sends its next request as soon as its previous
  answer is in; throughput is what the server sustains at that concurrency.
- Requests are encoded once (headers + body bytes); answers are read by Content-Length. A request
  that gets no answer in --timeout seconds, or whose connection fails, has status 0.
- Only requests sent in the measured window (after the warm-up) count for latency and statuses;
  the answered rate counts the 200s that completed in it. Output (JSON): per-request [sent_s,
  latency_ms, status], status counts, the answered rate and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from time import perf_counter as now  # loop.time() of uvloop ticks in whole milliseconds
from typing import Any

Sample = tuple[float, float, int]  # sent (s after t0), latency ms, HTTP status (0: no answer)
Window = tuple[float, float]  # the measured part of a run: [start, end) s after t0


def install_uvloop() -> None:
    """Run the load on uvloop where it is installed: the cheaper loop leaves more of a shared machine
    to what it measures. Plain asyncio works too, at more CPU per request."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


class _Connection:
    """One keep-alive connection; `call` sends a pre-encoded request and reads one answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> tuple[int, bool]:
        """-> (status, whether the server closes the connection)."""
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed before an answer")
        status = int(status_line.split(b" ", 2)[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ConnectionError("chunked answers are not read by this generator")
        if length:
            await self.reader.readexactly(length)
        return status, close

    def close(self) -> None:
        self.writer.close()


def encode_requests(url: str, bodies: list[bytes], content_type: str, headers: dict[str, str]) -> list[bytes]:
    """Each body as a complete HTTP/1.1 POST to `url` (headers + body), ready to write."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode()
        + body
        for body in bodies
    ]


class Pool:
    """Keep-alive connections to one server, at most `max_connections` at once.

    A reused connection that fails before any answer is a stale one (the server closes idle
    keep-alive connections: uvicorn after 5 s): the request goes once more on a new connection,
    as HTTP clients do, and is counted in `stale_retries`. Every other failure is status 0, its
    exception type counted in `errors`.
    """

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.errors: Counter[str] = Counter()
        self.stale_retries = 0

    async def call(
        self, request: bytes, timeout_s: float, on_connection: Callable[[], None] | None = None
    ) -> int:
        """Send `request`, return the answer's status (0: none). `on_connection` is called once a
        connection is free for it (what came before is this side's queue)."""
        async with self.slots:
            if on_connection is not None:
                on_connection()
            if self.idle:
                conn = self.idle.pop()
                try:
                    return await self._send(conn, request, timeout_s)
                except (ConnectionError, asyncio.IncompleteReadError):
                    conn.close()
                    self.stale_retries += 1
                except _FAILURES as exc:
                    conn.close()
                    self.errors[type(exc).__name__] += 1
                    return 0
            try:
                conn = _Connection(*await asyncio.open_connection(self.host, self.port))
            except _FAILURES as exc:
                self.errors[type(exc).__name__] += 1
                return 0
            try:
                return await self._send(conn, request, timeout_s)
            except _FAILURES as exc:
                conn.close()
                self.errors[type(exc).__name__] += 1
                return 0

    async def _send(self, conn: _Connection, request: bytes, timeout_s: float) -> int:
        status, close = await asyncio.wait_for(conn.call(request), timeout_s)
        if close:
            conn.close()
        else:
            self.idle.append(conn)
        return status


_FAILURES = (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError)


async def open_loop(
    url: str, requests: list[bytes], rate: float, duration_s: float, warmup_s: float, *,
    max_connections: int = 256, timeout_s: float = 10.0,
) -> tuple[list[Sample], Window, dict[str, int]]:  # fmt: skip
    """Arrivals every 1/rate s for warmup + duration; returns (every sample, the measured window,
    failure counts: exception types and stale_retries)."""
    parts = urllib.parse.urlsplit(url)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80, max_connections)
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    t0 = now() + 0.05

    async def one(i: int, due: float) -> None:
        status = await pool.call(requests[i % len(requests)], timeout_s)
        samples.append((due - t0, (now() - due) * 1000.0, status))

    total = int((warmup_s + duration_s) * rate)
    for i in range(total):
        due = t0 + i / rate
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for conn in pool.idle:
        conn.close()
    return samples, (warmup_s, warmup_s + duration_s), failure_counts([pool])


def failure_counts(pools: list[Pool]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for pool in pools:
        counts.update(pool.errors)
        counts["stale_retries"] += pool.stale_retries
    return dict(counts)


async def closed_loop(
    url: str,
    requests: list[bytes],
    clients: int,
    duration_s: float,
    warmup_s: float,
    *,
    timeout_s: float = 10.0,
) -> tuple[list[Sample], Window, dict[str, int]]:
    """`clients` connections back to back for warmup + duration; returns (every sample, the
    measured window, failure counts as open_loop)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    samples: list[Sample] = []
    t0 = now()
    end = t0 + warmup_s + duration_s

    pools = [Pool(host, port, 1) for _ in range(clients)]

    async def client(k: int) -> None:
        pool = pools[k]
        i = k
        while now() < end:
            start = now()
            status = await pool.call(requests[i % len(requests)], timeout_s)
            samples.append((start - t0, (now() - start) * 1000.0, status))
            i += clients
            if status == 0:
                await asyncio.sleep(0.01)  # a refused connection must not spin
        for conn in pool.idle:
            conn.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return samples, (warmup_s, warmup_s + duration_s), failure_counts(pools)


def in_window(samples: list[Sample], window: Window) -> list[Sample]:
    """The requests sent in the measured window (after the warm-up)."""
    return [s for s in samples if window[0] <= s[0] < window[1]]


def summary(samples: list[Sample], window: Window) -> dict[str, Any]:
    """Statuses of the requests sent in the window, and the answered rate: 200s that *completed*
    in it per second (a rate by sending time would count, under overload, answers that came
    seconds after the window)."""
    sent = in_window(samples, window)
    statuses = Counter(str(s[2]) for s in sent)
    seconds = window[1] - window[0]
    done = sum(1 for s in samples if s[2] == 200 and window[0] <= s[0] + s[1] / 1000.0 < window[1])
    return {
        "sent": len(sent),
        "ok": statuses.get("200", 0),
        "statuses": dict(statuses),
        "window_s": seconds,
        "ok_per_s": done / seconds if seconds > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument(
        "--body", action="append", required=True, help="a request body file (repeat: sent in turn)"
    )
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, added to every request")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="open loop: arrivals per second")
    mode.add_argument("--clients", type=int, help="closed loop: concurrent clients")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent before, not recorded")
    parser.add_argument("--max-connections", type=int, default=256, help="open loop: connection cap")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds before a request counts as unanswered"
    )
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)

    headers = dict(h.split(":", 1) for h in args.header)
    bodies = [Path(b).read_bytes() for b in args.body]
    requests = encode_requests(
        args.url, bodies, args.content_type, {k.strip(): v.strip() for k, v in headers.items()}
    )
    install_uvloop()
    started = time.monotonic()
    if args.rate is not None:
        if args.rate <= 0:
            parser.error("--rate must be positive")
        samples, window, failures = asyncio.run(
            open_loop(args.url, requests, args.rate, args.duration, args.warmup,
                      max_connections=args.max_connections, timeout_s=args.timeout)
        )  # fmt: skip
    else:
        if args.clients < 1:
            parser.error("--clients must be at least 1")
        samples, window, failures = asyncio.run(
            closed_loop(args.url, requests, args.clients, args.duration, args.warmup, timeout_s=args.timeout)
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        **summary(samples, window),
        "failures": failures,
        "mode": "open" if args.rate is not None else "closed",
        "rate": args.rate,
        "clients": args.clients,
        "wall_s": time.monotonic() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "samples": [[round(s[0], 4), round(s[1], 3), s[2]] for s in in_window(samples, window)],
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
