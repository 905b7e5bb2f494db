"""Admission control (server/admission.py): the request deadline (default and client headers), work
past the deadline never reaching the backend, the in-flight bound with its wait queue (FIFO, then
429 + Retry-After; a wait that outlasts the deadline is a 503 in time), the body-read
timeout (408) and a client that disconnects mid-upload (no 500, counted apart)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

import httpx
import numpy as np
import pytest
from helpers.gateway import AUTH, settings_for, simulated_request
from starlette.datastructures import Headers

from server import admission
from server.backend import ModelOutputs
from server.main import create_app, make_backend
from server.metrics import GatewayMetrics

BODY = json.dumps(simulated_request(3)).encode()
HEADERS = AUTH | {"content-type": "application/json"}


class SlowBackend:
    """The ONNX backend behind a fixed delay before each call; counts the calls it was given."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s, self.calls = inner, delay_s, 0
        self.kind, self.model_name = inner.kind, inner.model_name

    async def start(self) -> None:
        await self.inner.start()

    async def input_names(self) -> tuple[str, ...]:
        return await self.inner.input_names()

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> ModelOutputs:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return await self.inner.infer(inputs)

    async def is_ready(self) -> bool:
        return await self.inner.is_ready()

    async def model_version(self) -> str:
        return await self.inner.model_version()

    async def close(self) -> None:
        await self.inner.close()


def _app(tiny_model, delay_s: float = 0.0, **changes):
    settings = settings_for(tiny_model[1], **changes)
    backend = SlowBackend(make_backend(settings), delay_s)
    return create_app(settings, backend=backend), backend


async def _with_client(app, run):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await run(client)


def _metric(app, name: str, labels: dict[str, str] | None = None) -> float:
    value = app.state.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"X-Request-Deadline-Ms": "250"}, 0.25),
        ({"grpc-timeout": "3S"}, 3.0),
        ({"grpc-timeout": "500m"}, 0.5),
        ({"grpc-timeout": "2M"}, 120.0),
        ({}, None),
    ],
)
def test_client_deadline_headers_are_read(headers, seconds):
    assert admission.requested_budget_s(Headers(headers)) == seconds


@pytest.mark.parametrize(
    "headers", [{"X-Request-Deadline-Ms": "soon"}, {"X-Request-Deadline-Ms": "0"}, {"grpc-timeout": "5x"}]
)
def test_unreadable_deadline_header_is_400_naming_it(tiny_model, headers):
    app, backend = _app(tiny_model)

    async def run(client):
        return await client.post("/predict", content=BODY, headers=HEADERS | headers)

    response = asyncio.run(_with_client(app, run))
    assert response.status_code == 400, response.text
    assert next(iter(headers)).lower() in response.json()["detail"]
    assert backend.calls == 0


def test_slow_backend_past_the_client_deadline_is_503_in_time(tiny_model):
    app, backend = _app(tiny_model, delay_s=2.0)

    async def run(client):
        started = time.perf_counter()
        response = await client.post(
            "/predict", content=BODY, headers=HEADERS | {"X-Request-Deadline-Ms": "200"}
        )
        return response, time.perf_counter() - started

    response, seconds = asyncio.run(_with_client(app, run))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "deadline of 200 ms" in response.json()["detail"]
    assert seconds < 1.0  # answered at the deadline, not after the backend's 2 s
    assert _metric(app, "strategist_requests_shed_total", {"reason": "deadline"}) == 1


@pytest.mark.parametrize(("margin_ms", "deadline_ms"), [(40.0, 1000), (40.0, 200)])
def test_the_503_leaves_a_margin_before_the_deadline(tiny_model, margin_ms, deadline_ms):
    """The gateway gives up deadline_answer_margin_ms early (at most a tenth of the deadline), so a
    busy loop's late timer still gets the 503 to the client inside its deadline."""
    app, _ = _app(tiny_model, delay_s=5.0, deadline_answer_margin_ms=margin_ms)

    async def run(client):
        started = time.perf_counter()
        headers = HEADERS | {"X-Request-Deadline-Ms": str(deadline_ms)}
        response = await client.post("/predict", content=BODY, headers=headers)
        return response, (time.perf_counter() - started) * 1000

    response, ms = asyncio.run(_with_client(app, run))
    assert response.status_code == 503
    margin = min(margin_ms, deadline_ms / 10)
    assert deadline_ms - margin - 5 <= ms < deadline_ms - margin / 2, ms


def test_work_past_its_deadline_is_not_sent_to_the_backend(tiny_model):
    app, backend = _app(tiny_model)

    async def run(client):
        # 1 ms: gone while the 69 KiB body is parsed and aligned, before any backend call.
        return await client.post("/predict", content=BODY, headers=HEADERS | {"X-Request-Deadline-Ms": "1"})

    response = asyncio.run(_with_client(app, run))
    assert response.status_code == 503 and "deadline" in response.json()["detail"]
    assert backend.calls == 0


def test_check_deadline_outside_and_inside_a_request():
    assert admission.check_deadline("backend call") is None  # no request running: no deadline
    token = admission._deadline.set(time.monotonic() - 0.001)
    try:
        with pytest.raises(admission.DeadlineExceeded, match="before the backend call"):
            admission.check_deadline("backend call")
    finally:
        admission._deadline.reset(token)


def test_beyond_the_in_flight_limit_is_429_with_retry_after(tiny_model):
    app, backend = _app(tiny_model, delay_s=0.3, max_in_flight=2, max_queued=0)

    async def run(client):
        calls = [client.post("/predict", content=BODY, headers=HEADERS) for _ in range(6)]
        return await asyncio.gather(*calls)

    responses = asyncio.run(_with_client(app, run))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    shed = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "1" and "the limits are 2" in r.json()["detail"] for r in shed)
    assert backend.calls == 2
    assert _metric(app, "strategist_requests_in_flight") == 0
    assert _metric(app, "strategist_requests_shed_total", {"reason": "in_flight"}) == 4


def test_beyond_the_in_flight_limit_requests_wait_in_order_then_429(tiny_model):
    """2 slots, 2 waiting places: of 6 at once, 4 are answered (2 of them after a wait), 2 refused."""
    app, backend = _app(tiny_model, delay_s=0.3, max_in_flight=2, max_queued=2)
    seen_queued: list[float] = []

    async def run(client):
        calls = [
            asyncio.create_task(client.post("/predict", content=BODY, headers=HEADERS)) for _ in range(6)
        ]
        await asyncio.sleep(0.15)
        seen_queued.append(_metric(app, "strategist_requests_queued"))
        return await asyncio.gather(*calls)

    responses = asyncio.run(_with_client(app, run))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 429, 429], statuses
    assert "2 waiting" in next(r for r in responses if r.status_code == 429).json()["detail"]
    assert backend.calls == 4 and seen_queued == [2.0]
    assert (
        _metric(app, "strategist_requests_queued") == 0 and _metric(app, "strategist_requests_in_flight") == 0
    )


def test_a_request_that_could_not_be_answered_in_time_is_refused_instead_of_queued():
    gate = admission.AdmissionMiddleware(
        None, paths=set(), metrics=GatewayMetrics(), max_in_flight=4, deadline_s=1.0,
        max_deadline_s=10.0, body_timeout_s=10.0, max_queued=100,
    )  # fmt: skip
    assert admission.QUEUE_HORIZON == 0.5  # the figures below are for half the deadline
    gate.service_s = 0.1  # 4 slots of 0.1 s: one slot frees every 25 ms (before any is measured)
    gate.queued = 9  # 10th in line: answered in ~10 x 25 + 100 = 350 ms, within half of 1 s
    assert gate._queue_refusal(1.0) is None
    gate.queued = 16  # ~525 ms: past half of 1 s, refused now rather than at its deadline
    refusal = gate._queue_refusal(1.0)
    assert refusal is not None and "about 525 ms, past 50% of its deadline of 1000 ms" in refusal
    gate.release_interval_s = 0.01  # measured: the queue moves faster than the mean suggests
    assert gate._queue_refusal(1.0) is None  # 17 x 10 + 100 = 270 ms
    gate.release_interval_s = 0.0
    gate.queued = 0
    gate._queue_missed_at = time.monotonic() - 0.2  # a request that waited missed its deadline
    assert "missed its deadline" in (gate._queue_refusal(1.0) or "")  # for one deadline, none wait
    gate._queue_missed_at = time.monotonic() - 1.5
    assert gate._queue_refusal(1.0) is None
    gate._queue_missed_at = -float("inf")
    gate.queued = 16
    assert gate._queue_refusal(2.0) is None  # a client with a longer deadline may wait
    gate.queued = 100
    assert "the limits are 4" in (gate._queue_refusal(60.0) or "")


def test_loop_lag_follows_a_blocked_loop_at_once_and_recovers_gradually():
    metrics = GatewayMetrics()
    lag = admission.LoopLag(period_s=0.01, gauge=metrics.loop_lag)

    async def run() -> tuple[float, float, float]:
        lag.ensure_running()
        await asyncio.sleep(0.05)
        idle = lag.lag_s
        time.sleep(0.2)  # the loop is held: the due tick runs ~0.19 s late
        await asyncio.sleep(0.001)
        blocked = lag.lag_s
        await asyncio.sleep(0.3)  # ~30 quiet ticks: back under a few ms
        return idle, blocked, lag.lag_s

    idle, blocked, after = asyncio.run(run())
    assert idle < 0.05 and blocked > 0.15 and after < 0.02, (idle, blocked, after)
    # The loop's shutdown inside asyncio.run may run one more tick after `after` was read.
    assert metrics.registry.get_sample_value("strategist_event_loop_lag_seconds") == pytest.approx(lag.lag_s)


def test_while_the_loop_runs_late_requests_beyond_the_slots_are_refused_not_queued():
    gate = admission.AdmissionMiddleware(
        None, paths=set(), metrics=GatewayMetrics(), max_in_flight=4, deadline_s=1.0,
        max_deadline_s=10.0, body_timeout_s=10.0, max_queued=100, max_loop_lag_s=0.05,
    )  # fmt: skip
    gate.service_s = 0.1
    assert gate._queue_refusal(1.0) is None  # a quiet loop: it may wait
    gate.loop_lag.lag_s = 0.12
    refusal = gate._queue_refusal(1.0)
    assert refusal is not None and "runs 120 ms behind (over 50 ms, STRATEGIST_MAX_LOOP_LAG_MS)" in refusal
    gate.loop_lag.lag_s = 0.04
    assert gate._queue_refusal(1.0) is None


def test_an_app_answering_its_own_cancellation_at_the_deadline_is_not_a_500():
    """The deadline cancels the backend call; the pipeline turns that into its own 503 and starts
    the response while the timeout is still expiring. That answer goes out as it is (a timeout in
    that state cannot be moved: it used to raise RuntimeError, a 500)."""

    async def app(scope, receive, send):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"backend call cancelled"})

    gate = admission.AdmissionMiddleware(
        app, paths={"/predict"}, metrics=GatewayMetrics(), max_in_flight=4, deadline_s=0.1,
        max_deadline_s=10.0, body_timeout_s=10.0,
    )  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(gate({"type": "http", "path": "/predict", "headers": [], "state": {}}, receive, send))
    assert sent[0]["status"] == 503 and sent[1]["body"] == b"backend call cancelled"
    assert gate.in_flight == 0


def test_a_wait_past_half_the_deadline_is_429_then_and_never_runs(tiny_model):
    app, backend = _app(tiny_model, delay_s=1.0, max_in_flight=1, max_queued=4)

    async def run(client):
        first = asyncio.create_task(client.post("/predict", content=BODY, headers=HEADERS))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        second = await client.post(
            "/predict", content=BODY, headers=HEADERS | {"X-Request-Deadline-Ms": "300"}
        )
        seconds = time.perf_counter() - started  # before awaiting the first (1 s)
        return await first, second, seconds

    first, second, seconds = asyncio.run(_with_client(app, run))
    assert first.status_code == 200 and second.status_code == 429
    # It waited half its deadline (QUEUE_HORIZON), not the whole: the rest was room to be answered.
    assert "no slot came free within 150 ms" in second.json()["detail"] and 0.14 < seconds < 0.3
    assert second.headers["retry-after"] == "1"
    assert _metric(app, "strategist_requests_shed_total", {"reason": "queue_wait"}) == 1
    assert backend.calls == 1  # the waiting request never reached the backend
    assert (
        _metric(app, "strategist_requests_queued") == 0 and _metric(app, "strategist_requests_in_flight") == 0
    )


async def _call_asgi(app, messages: list[dict], pause_s: float) -> list[dict]:
    """Drive the app at the ASGI level: the body arrives as `messages`, then the client waits
    `pause_s` (a slow upload) before each further receive(); returns what the app sent."""
    sent: list[dict] = []
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(pause_s)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


def test_slow_body_is_cut_off_with_408(tiny_model):
    app, backend = _app(tiny_model, body_timeout_s=0.3)
    first = {"type": "http.request", "body": BODY[:100], "more_body": True}
    started = time.perf_counter()
    sent = asyncio.run(_call_asgi(app, [first], pause_s=0.1))  # 1 byte every 100 ms
    assert time.perf_counter() - started < 2.0
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408
    assert b"STRATEGIST_BODY_TIMEOUT_S" in sent[1]["body"]
    assert backend.calls == 0
    assert _metric(app, "strategist_requests_shed_total", {"reason": "body_timeout"}) == 1


def test_client_that_disconnects_mid_upload_is_no_500_and_counted_apart(tiny_model):
    app, backend = _app(tiny_model)
    messages = [{"type": "http.request", "body": BODY[:1000], "more_body": True}, {"type": "http.disconnect"}]
    sent = asyncio.run(_call_asgi(app, messages, pause_s=0.0))
    assert sent == []  # nobody to answer
    assert backend.calls == 0
    assert _metric(app, "strategist_client_disconnects_total") == 1
    assert _metric(app, "strategist_requests_total", {"endpoint": "/predict", "status": "500"}) == 0
    assert (
        _metric(app, "strategist_request_errors_total", {"endpoint": "/predict", "reason": "internal"}) == 0
    )


def test_triton_down_503_bodies_do_not_name_the_triton_address():
    """The gateway in front of a Triton that is not there: /predict and /predict/batch answer 503 +
    Retry-After, and neither the body nor the headers carry Triton's address (the gRPC error names it;
    only the log may)."""
    from fastapi.testclient import TestClient

    from server.settings import GatewaySettings
    from strategist.serving.triton_launcher import free_port

    port = free_port()  # nothing listens there
    address = f"127.0.0.1:{port}"
    settings = GatewaySettings(
        backend="triton",
        triton_url=address,
        api_key="test-key",
        request_timeout_s=1.0,
        request_deadline_s=2.0,
    )
    batch = json.dumps({"cars": [simulated_request(4), simulated_request(5)]}).encode()
    with TestClient(create_app(settings)) as client:
        for path, body in (("/predict", BODY), ("/predict/batch", batch)):
            response = client.post(path, content=body, headers=HEADERS)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            exposed = response.text + "".join(f"{k}: {v}" for k, v in response.headers.items())
            assert str(port) not in exposed and "127.0.0.1" not in exposed, exposed
            assert response.json()["detail"] == "model backend unavailable, try again"


def test_the_edge_arrival_header_is_read_and_a_future_one_counts_as_no_wait():
    now = 1_800_000_000.0
    assert admission.edge_wait_s(Headers({}), now) == 0.0
    assert admission.edge_wait_s(Headers({"x-request-start": "t=1799999999750000"}), now) == pytest.approx(
        0.25
    )
    assert admission.edge_wait_s(Headers({"x-request-start": "1799999999900000"}), now) == pytest.approx(0.1)
    assert admission.edge_wait_s(Headers({"x-request-start": "t=1800000005000000"}), now) == 0.0
    with pytest.raises(admission.BadDeadline, match="x-request-start takes t=<microseconds"):
        admission.edge_wait_s(Headers({"x-request-start": "t=yesterday"}), now)


def _edge_started(seconds_ago: float) -> dict[str, str]:
    return {"x-request-start": f"t={round((time.time() - seconds_ago) * 1e6)}"}


def test_a_trusted_edge_arrival_shortens_the_deadline_by_the_wait_in_front(tiny_model):
    """Behind the edge proxy the deadline runs from the edge's arrival: a request that already
    waited 0.97 s of its 1 s there is answered 503 at once and never reaches the backend."""
    app, backend = _app(tiny_model, trust_request_start=True, request_deadline_s=1.0)

    async def run(client):
        late = await client.post("/predict", content=BODY, headers=HEADERS | _edge_started(0.97))
        fresh = await client.post("/predict", content=BODY, headers=HEADERS | _edge_started(0.0))
        return late, fresh

    late, fresh = asyncio.run(_with_client(app, run))
    assert late.status_code == 503 and "deadline of 1000 ms" in late.json()["detail"]
    assert fresh.status_code == 200, fresh.text
    assert backend.calls == 1


def test_an_untrusted_arrival_header_changes_nothing(tiny_model):
    """Without a proxy in front (the default) a client's X-Request-Start is ignored, readable or not."""
    app, backend = _app(tiny_model, request_deadline_s=1.0)

    async def run(client):
        old = await client.post("/predict", content=BODY, headers=HEADERS | _edge_started(5.0))
        junk = await client.post("/predict", content=BODY, headers=HEADERS | {"x-request-start": "junk"})
        return old, junk

    old, junk = asyncio.run(_with_client(app, run))
    assert old.status_code == 200 and junk.status_code == 200
    assert backend.calls == 2


def test_an_unreadable_arrival_header_from_the_edge_is_400_naming_it(tiny_model):
    app, backend = _app(tiny_model, trust_request_start=True)

    async def run(client):
        return await client.post("/predict", content=BODY, headers=HEADERS | {"x-request-start": "t=soon"})

    response = asyncio.run(_with_client(app, run))
    assert response.status_code == 400 and "x-request-start" in response.json()["detail"]
    assert backend.calls == 0
