"""The edge proxy (strategist.serving.edge_proxy): a real HAProxy in front of a small slow app holds
the in-flight bound and its queue, refuses beyond them with JSON + Retry-After before the app sees
the request, never queues health checks behind predictions, stamps the arrival time the gateway's
deadline runs from, and comes back when it dies."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx
import pytest
import uvicorn
from helpers.skips import requires_haproxy

from server.settings import GatewaySettings
from strategist.paths import PROJECT_ROOT
from strategist.serving.edge_proxy import EdgeLimits, EdgeProxy, EdgeProxyError, render_config
from strategist.serving.triton_launcher import free_port


class SlowApp:
    """ASGI app: /predict and /predict/batch answer `delay_s` after `gate` is open, echoing the
    headers the edge set; every other path answers at once. Counts the prediction requests it saw and
    the most at once. A test that closes the gate holds every admitted request at the app until it
    has seen the edge's refusals, so no answer depends on how fast the client threads start."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.seen, self.running, self.most_at_once = delay_s, 0, 0, 0
        self.gate = threading.Event()
        self.gate.set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if scope["path"].startswith("/predict"):
            self.seen += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(self.delay_s)
            self.running -= 1
        body = f"{headers.get('x-request-start', '')} {headers.get('x-request-id', '')}".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def slow_app() -> Iterator[tuple[SlowApp, int]]:
    app = SlowApp(delay_s=0.4)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


def _edge(port: int, **limits) -> EdgeProxy:
    return EdgeProxy(
        EdgeLimits(**limits),
        listen=("127.0.0.1", free_port()),
        gateway=("127.0.0.1", port),
        metrics_port=free_port(),
    )


def _post(url: str, i: int) -> httpx.Response:
    return httpx.post(f"{url}/predict", content=b"{}", headers={"x-request-id": f"car-{i}"}, timeout=10)


def _posts(url: str, count: int) -> list[httpx.Response]:
    """`count` predictions at once, each on its own connection."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: _post(url, i), range(count)))


def _posts_held(app: SlowApp, url: str, count: int, refused: int) -> list[httpx.Response]:
    """`count` predictions at once while the app holds every one it admits; the app lets them go
    once `refused` answers have come back from the edge (those are the only ones that can)."""
    app.gate.clear()
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(_post, url, i) for i in range(count)]
        try:
            early = []
            for future in as_completed(futures, timeout=10):
                early.append(future.result())
                if len(early) == refused:
                    break
        finally:
            app.gate.set()
        return [future.result() for future in futures]


def test_limits_come_from_the_gateway_settings_per_worker():
    settings = GatewaySettings(max_in_flight=6, max_queued=40, request_deadline_s=1.5, body_timeout_s=7)
    limits = EdgeLimits.from_settings(settings, workers=2)
    assert (limits.max_in_flight, limits.max_queued) == (12, 40)
    assert limits.queue_wait_s == pytest.approx(0.75)  # half the deadline, as the gateway's own queue
    assert limits.header_timeout_s == 7
    config = render_config(limits, ("0.0.0.0", 8080), ("127.0.0.1", 9001))
    assert "bind 0.0.0.0:8080" in config and "server gateway 127.0.0.1:9001 maxconn 12" in config
    assert "timeout queue 750ms" in config and "queue(predict) ge 40" in config
    assert "acl predict path /predict /predict/batch" in config


def _edge_metric(edge: EdgeProxy, name: str) -> int:
    """One of the edge's own metrics for its prediction backend (`name` as HAProxy spells it)."""
    assert edge.metrics_url is not None
    for line in httpx.get(edge.metrics_url, timeout=5).text.splitlines():
        if line.startswith(f'{name}{{proxy="predict"}}'):
            return int(float(line.split()[-1]))
    raise AssertionError(f"the edge's metrics have no {name} for its prediction backend")


def _edge_queue(edge: EdgeProxy) -> int:
    """Requests waiting in the edge's prediction queue."""
    return _edge_metric(edge, "haproxy_backend_current_queue")


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@requires_haproxy
def test_beyond_the_bound_and_its_queue_is_429_with_retry_after_before_the_app(slow_app):
    app, port = slow_app
    # The requests arrive one after another, each settled (at the app, or in the edge's queue)
    # before the next: the edge reads its queue length as each request's headers arrive, so
    # requests parsed in the same instant may all find the same free place.
    with _edge(port, max_in_flight=2, max_queued=2, queue_wait_s=5.0).start() as edge:
        app.gate.clear()
        with ThreadPoolExecutor(6) as pool:
            try:
                futures = []
                for i in range(6):
                    futures.append(pool.submit(_post, edge.url, i))
                    if i < 2:
                        _until(lambda at_app=i + 1: app.running == at_app, f"request {i} is at the app")
                    elif i < 4:
                        _until(
                            lambda queued=i - 1: _edge_queue(edge) == queued, f"request {i} waits at the edge"
                        )
                    else:
                        assert futures[i].result(timeout=5).status_code == 429
            finally:
                app.gate.set()
            responses = [future.result() for future in futures]
        assert edge.metrics_url is not None
        metrics = httpx.get(edge.metrics_url, timeout=5).text
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429, 429]
    assert app.seen == 4 and app.most_at_once == 2
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert "at capacity (2 in flight, 2 waiting)" in body["detail"]
    assert body["request_id"] == refused.headers["x-request-id"] and body["request_id"].startswith("car-")
    # The edge's own metrics count its refusals.
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith('haproxy_frontend_http_responses_total{proxy="api",code="4xx"}')
    ]
    assert counted and float(counted[0].split()[-1]) >= 2, counted


@requires_haproxy
def test_a_request_still_queued_after_the_queue_wait_is_503_with_retry_after(slow_app):
    app, port = slow_app
    with _edge(port, max_in_flight=1, max_queued=8, queue_wait_s=0.15).start() as edge:
        started = time.monotonic()
        responses = _posts_held(app, edge.url, 3, refused=2)
        seconds = time.monotonic() - started
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503, 503], statuses
    late = next(r for r in responses if r.status_code == 503)
    assert late.headers["retry-after"] == "1" and "within 150 ms" in late.json()["detail"]
    assert app.seen == 1 and seconds < 1.5


@requires_haproxy
def test_health_checks_are_never_queued_behind_predictions(slow_app):
    app, port = slow_app
    with _edge(port, max_in_flight=1, max_queued=4, queue_wait_s=5.0).start() as edge:
        app.gate.clear()  # the only slot stays taken until the health check has its answer
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(_posts, edge.url, 3)
            try:
                _until(lambda: app.running == 1 and _edge_queue(edge) == 2, "one runs and two wait")
                health = httpx.get(f"{edge.url}/healthz", timeout=5)
                running_at_answer = app.running
            finally:
                app.gate.set()
            assert [r.status_code for r in busy.result()] == [200, 200, 200]
    # Answered while the only slot was still held: it did not wait behind the predictions.
    assert health.status_code == 200 and running_at_answer == 1


@requires_haproxy
def test_the_edge_stamps_the_arrival_and_replaces_a_client_stamp(slow_app):
    _, port = slow_app
    with _edge(port).start() as edge:
        before = time.time()
        answer = httpx.post(
            f"{edge.url}/predict", content=b"{}", headers={"x-request-start": "t=1"}, timeout=5
        )
        stamp, request_id = answer.text.split()
    assert stamp.startswith("t=") and before - 1 <= int(stamp[2:]) / 1e6 <= time.time()
    assert len(request_id) >= 32  # none sent: the edge made one


@requires_haproxy
def test_a_gateway_that_is_not_there_is_a_json_503_and_a_dead_edge_comes_back():
    edge = _edge(free_port())  # nothing listens there
    with edge.start():
        answer = httpx.post(f"{edge.url}/predict", content=b"{}", timeout=5)
        assert answer.status_code == 503 and "reachable" in answer.json()["detail"]
        # Two failed health checks: marked down, then answered without trying to connect.
        _until(lambda: _edge_metric(edge, "haproxy_backend_active_servers") == 0, "marked down", 10)
        answer = httpx.post(f"{edge.url}/predict", content=b"{}", timeout=5)
        assert answer.status_code == 503 and "not reachable" in answer.json()["detail"]
        assert answer.headers["retry-after"] == "1"
        assert edge.restart_if_exited() is None  # running: nothing to do
        pid = edge.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        assert edge.restart_if_exited() == -signal.SIGKILL
        assert edge.pid != pid and httpx.get(f"{edge.url}/healthz", timeout=5).status_code in (502, 503)
        workdir = edge.config_path.parent if edge.config_path else None
    assert not edge.is_running() and workdir is not None and not workdir.exists()


@requires_haproxy
def test_a_port_another_process_listens_on_is_refused_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        edge = EdgeProxy(EdgeLimits(), listen=("127.0.0.1", port), gateway=("127.0.0.1", free_port()))
        with pytest.raises(EdgeProxyError, match=f"cannot listen on 127.0.0.1:{port}"):
            edge.start()
    assert not edge.is_running()


@requires_haproxy
def test_haproxy_dies_with_a_parent_killed_without_cleanup():
    script = (
        "import sys, time\n"
        "from strategist.serving.edge_proxy import EdgeLimits, EdgeProxy\n"
        "from strategist.serving.triton_launcher import free_port\n"
        "edge = EdgeProxy(EdgeLimits(), ('127.0.0.1', free_port()), ('127.0.0.1', free_port())).start()\n"
        "print(edge.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
    finally:
        parent.kill()
        parent.wait(timeout=10)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "HAProxy outlived its killed parent"


def test_behind_the_edge_the_gateway_trusts_its_stamp_and_fills_more_slots_unless_told():
    from strategist.serving.edge_proxy import GATEWAY_IN_FLIGHT_BEHIND_EDGE, behind_edge

    plain = behind_edge(GatewaySettings())
    assert plain.trust_request_start and plain.max_in_flight == GATEWAY_IN_FLIGHT_BEHIND_EDGE
    chosen = behind_edge(GatewaySettings(max_in_flight=5))
    assert chosen.trust_request_start and chosen.max_in_flight == 5
    # What a worker process rebuilds from the environment is the same.
    assert {"trust_request_start", "max_in_flight"} <= plain.model_fields_set


@requires_haproxy
def test_a_slow_upload_holds_no_gateway_slot_and_gets_a_json_408(slow_app):
    app, port = slow_app
    with _edge(port, max_in_flight=1, header_timeout_s=3.0).start() as edge:
        with socket.create_connection(edge.listen, timeout=10) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)
            fast = httpx.post(f"{edge.url}/predict", content=b"{}", timeout=10)
            # The fast one was answered while the slow upload was still pending (no 408 yet): the
            # only slot was free for it, not held until the slow one timed out.
            slow_still_pending = not select.select([slow], [], [], 0)[0]
            answer = b""
            while b"}" not in answer:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
    assert fast.status_code == 200 and slow_still_pending
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 3 s" in answer
    assert app.seen == 1  # the slow one never reached the app


def test_the_config_command_prints_what_serve_would_write_and_names_a_bad_address(capsys, monkeypatch):
    from strategist.serving import edge_proxy

    monkeypatch.setenv("STRATEGIST_MAX_IN_FLIGHT", "12")
    assert (
        edge_proxy.main(
            ["--listen", "0.0.0.0:8000", "--gateway", "127.0.0.1:8080", "--metrics", "0.0.0.0:8405"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed == render_config(
        EdgeLimits.from_settings(GatewaySettings()), ("0.0.0.0", 8000), ("127.0.0.1", 8080), 8405, "0.0.0.0"
    )
    assert "maxconn 12 check" in printed and "bind 0.0.0.0:8405" in printed
    with pytest.raises(SystemExit):
        edge_proxy.main(["--listen", "8000", "--gateway", "127.0.0.1:8080"])
    assert "give HOST:PORT, got '8000'" in capsys.readouterr().err
