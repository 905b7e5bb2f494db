"""Locust user for a fixed arrival rate on POST /predict, with exact per-request latencies.

Driven by benchmarks/load.py, which sets (environment):
    BENCH_PAYLOADS   JSON-lines file, one /predict body per line (sent round-robin, pre-encoded)
    BENCH_RATE       total requests/s; each of the BENCH_USERS users sends rate / users requests/s
    BENCH_WARMUP_S   requests that start earlier than this after the test start are not recorded
    BENCH_OUT        where the recorded samples are written (JSON) when locust quits
    BENCH_P99_BUDGET_MS  optional: exit code 1 when the recorded p99 is above it

Locust's own statistics round response times to whole milliseconds (locust/stats.py); the
`request` event hook below keeps the float milliseconds locust measured for every request, and
also the gateway's own stage timings from the response body when it has them.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

BODIES = [line.encode() for line in Path(os.environ["BENCH_PAYLOADS"]).read_text().splitlines() if line]
RATE = float(os.environ["BENCH_RATE"])
USERS = int(os.environ["BENCH_USERS"])  # the same number load.py passes to locust as -u
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "5"))
OUT = Path(os.environ["BENCH_OUT"])
BUDGET = os.environ.get("BENCH_P99_BUDGET_MS")
HEADERS = {"Content-Type": "application/json"}


class Recorder:
    """Samples of requests that started after the warm-up, kept in memory until quit."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.latency_ms: list[float] = []
        self.start_s: list[float] = []  # send times relative to t0: checks that arrivals were spread
        self.server_ms: list[list[float]] = []  # [preprocess, predict, postprocess] per request
        self.failures: list[str] = []
        self.first_start: float | None = None
        self.last_start: float | None = None

    def add(self, start: float, response_time: float, response: Any, exception: Exception | None) -> None:
        if start - self.t0 < WARMUP_S:
            return
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_start = start if self.last_start is None else max(self.last_start, start)
        if exception is not None:
            self.failures.append(f"{type(exception).__name__}: {exception}"[:300])
            return
        self.latency_ms.append(float(response_time))
        self.start_s.append(round(start - self.t0, 6))
        try:
            timing = json.loads(response.content)["timing"]
            self.server_ms.append([timing["preprocess_ms"], timing["predict_ms"], timing["postprocess_ms"]])
        except (KeyError, TypeError, ValueError):
            pass  # the peer does not report stage timings


RECORDER = Recorder()


@events.test_start.add_listener
def _on_start(environment: Environment, **_: Any) -> None:
    RECORDER.t0 = time.time()


@events.request.add_listener
def _on_request(response_time: float, response: Any, exception: Exception | None, start_time: float,
                **_: Any) -> None:  # fmt: skip
    RECORDER.add(start_time, response_time, response, exception)


@events.quitting.add_listener
def _on_quit(environment: Environment, **_: Any) -> None:
    run_s = time.time() - RECORDER.t0
    OUT.write_text(
        json.dumps(
            {
                "latency_ms": RECORDER.latency_ms,
                "server_ms": RECORDER.server_ms,
                "start_s": RECORDER.start_s,
                "failures": RECORDER.failures,
                "measured_s": max(0.0, run_s - WARMUP_S),
                "first_start": RECORDER.first_start,
                "last_start": RECORDER.last_start,
                "users": environment.runner.user_count if environment.runner else None,
            }
        )
    )
    if RECORDER.failures:
        environment.process_exit_code = 1
    if BUDGET is not None and RECORDER.latency_ms:
        if float(np.percentile(RECORDER.latency_ms, 99)) > float(BUDGET):
            environment.process_exit_code = 1


class PitWallClient(FastHttpUser):
    # Each user paces itself to rate/users requests/s; with enough users (load.py gives each a
    # period several times the expected latency) the total is a fixed arrival rate.
    _bodies = itertools.cycle(BODIES)
    _period_s = USERS / RATE
    _next_due = 0.0

    def on_start(self) -> None:
        # Users spawn together: each starts at a random phase within one period, so that the
        # arrivals are spread over the period instead of coming as bursts of USERS requests.
        gevent.sleep(random.uniform(0.0, self._period_s))
        self._next_due = time.perf_counter()

    def wait_time(self) -> float:
        # Like locust's constant_throughput, but on a fixed schedule (phase + k * period): that one
        # measures its period from the user's creation, which undoes the random phase above.
        self._next_due += self._period_s
        return max(0.0, self._next_due - time.perf_counter())

    @task
    def predict(self) -> None:
        # Bytes go out as they are (geventhttpclient sends headers and a bytes body in one write);
        # the stubs only admit str, hence the ignore.
        self.client.post("/predict", data=next(self._bodies), headers=HEADERS, name="/predict")  # type: ignore[arg-type]
