"""An HAProxy in front of the gateway that refuses overload before it reaches Python.

Why: the gateway's admission control (server.admission) refuses on the same event loop that serves
the admitted requests, and under uvicorn even a bare 429 costs ~0.26 ms of that loop
(benchmarks.refusal_floor). At 4x overload three refusals come for every answer, so on a small
machine the refusals alone kept goodput at 0.71-0.76x of the saturated throughput. HAProxy refuses in C
on its own thread, for a few microseconds each, so the gateway only ever sees what it can serve.

What it enforces, from the gateway's own settings (EdgeLimits.from_settings), on the prediction
paths only (health, readiness and metrics go straight through, never queued behind predictions):

- at most `max_in_flight` prediction requests at the gateway at once (the server's maxconn);
- more wait in HAProxy's queue, in arrival order, at most `max_queued`; one more -> 429 +
  Retry-After at once;
- one still waiting after `queue_wait_s` (half the deadline, as the gateway's own queue) -> 503 +
  Retry-After;
- every request carries X-Request-Start (its arrival at the edge, microseconds since the epoch, set
  here and never taken from the client) so the gateway's deadline covers the wait at the edge too
  (GatewaySettings.trust_request_start);
- refusals are JSON like the gateway's, with the request id (the client's X-Request-Id, or one made
  here) in the body and the header.

    with EdgeProxy(EdgeLimits.from_settings(settings), listen=("127.0.0.1", 8080),
                   gateway=("127.0.0.1", 8081)).start() as edge:
        ...  # clients talk to edge.url

Needs the `haproxy` binary (Debian/Ubuntu: apt-get install haproxy; tested with 2.6).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from strategist.errors import StrategistError
from strategist.serving.triton_launcher import die_with_parent

if TYPE_CHECKING:
    from server.settings import GatewaySettings


# The gateway's in-flight bound behind the edge, unless set. Its default (8) keeps admitted answers
# in time on an event loop that also refuses the overload; behind the edge it refuses nothing, and
# 16 keep Triton's batcher fuller: under 4x overload for 30 s, 536 req/s answered (0.94x of that
# stack's saturated 572) against 474 (0.90x of 529) with 8 (docs/serving.md, ablation).
GATEWAY_IN_FLIGHT_BEHIND_EDGE = 16


def behind_edge(settings: GatewaySettings) -> GatewaySettings:
    """The gateway's settings behind the edge: its deadline runs from the edge's X-Request-Start,
    and its in-flight bound is GATEWAY_IN_FLIGHT_BEHIND_EDGE unless one was set."""
    update: dict[str, object] = {"trust_request_start": True}
    if "max_in_flight" not in settings.model_fields_set:
        update["max_in_flight"] = GATEWAY_IN_FLIGHT_BEHIND_EDGE
    return settings.model_copy(update=update)


class EdgeProxyError(StrategistError):
    """HAProxy is missing, its configuration was refused, or it did not start listening."""


@dataclass(frozen=True)
class EdgeLimits:
    max_in_flight: int = 8
    # Requests that may wait at the edge. The gateway's own max_queued by default, so closed-loop
    # clients queue rather than retry into 429s (256 such clients: 535 req/s with 256 places, 285
    # with 32). HAProxy's queue has a fixed wait bound, not the gateway's expected-wait estimate,
    # so under open-loop overload every admitted request waits about that bound (4x: p50 510 ms
    # with 256 places, 82 ms with 32, at the same goodput; docs/serving.md, ablation).
    max_queued: int = 256
    queue_wait_s: float = 1.0
    retry_after_s: int = 1
    max_connections: int = 4096  # client connections HAProxy accepts (keep-alive clients hold one each)
    # A request's headers and (on the prediction paths) its body up to a buffer must arrive within
    # this, else 408: a slow client holds a connection here, not a gateway slot.
    header_timeout_s: float = 10.0
    server_timeout_s: float = 15.0  # longest a gateway answer may take (above its longest deadline)
    # Bytes per connection buffer. A 5-lap request is ~70 kB: with HAProxy's 16 kB default each
    # body, forwarded or drained after a refusal, took 5 reads and writes, and 4x overload on
    # 2 cores kept 0.84-0.85x of the saturated throughput; with 128 kB, 0.91-0.93x (docs/serving.md).
    buffer_bytes: int = 131_072
    # Wait for the whole body (up to a buffer) before a request takes a gateway slot, so a slow
    # upload holds a connection here, not one of the gateway's slots.
    buffer_whole_body: bool = True

    @classmethod
    def from_settings(cls, settings: GatewaySettings, workers: int = 1) -> EdgeLimits:
        """The gateway's own admission limits (its in-flight bound per worker, times `workers`):
        with the edge in front the gateway never queues."""
        from server.admission import QUEUE_HORIZON, RETRY_AFTER_S

        max_in_flight = settings.max_in_flight * workers
        return cls(
            max_in_flight=max_in_flight,
            max_queued=settings.max_queued,
            queue_wait_s=QUEUE_HORIZON * settings.request_deadline_s,
            header_timeout_s=settings.body_timeout_s,
            server_timeout_s=settings.max_request_deadline_s + 5.0,
            retry_after_s=RETRY_AFTER_S,
        )


def _json_body(detail: str) -> str:
    """A refusal body as the gateway writes it, with HAProxy's request id; single-quoted for the
    configuration (no escapes inside), evaluated as a log-format string."""
    if "'" in detail:
        raise ValueError(f"a refusal text may not hold a single quote: {detail!r}")
    body = json.dumps({"detail": detail, "request_id": "REQUEST_ID"}, separators=(",", ":"))
    return "'" + body.replace('"REQUEST_ID"', '"%[var(txn.request_id)]"') + "'"


def render_config(
    limits: EdgeLimits,
    listen: tuple[str, int],
    gateway: tuple[str, int],
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> str:
    """The HAProxy configuration for `limits` (see the module docstring); with `metrics_port`,
    HAProxy's own Prometheus metrics on metrics_host:metrics_port/metrics (its refusals by status)."""
    from server.admission import REQUEST_START_HEADER
    from server.main import PREDICT_ENDPOINTS
    from server.middleware import CLIENT_REQUEST_ID

    ms = lambda seconds: f"{max(1, round(seconds * 1000))}ms"  # noqa: E731
    paths = " ".join(sorted(PREDICT_ENDPOINTS))
    queue_full = _json_body(
        f"the gateway is at capacity ({limits.max_in_flight} in flight, {limits.max_queued} waiting): "
        f"retry after {limits.retry_after_s} s"
    )
    queue_timeout = _json_body(
        f"the gateway did not take the request within {limits.queue_wait_s * 1e3:.0f} ms (its slots "
        f"stayed busy, or it is unreachable): retry after {limits.retry_after_s} s"
    )
    gateway_down = _json_body(
        f"the gateway is not reachable behind the edge proxy: retry after {limits.retry_after_s} s"
    )
    too_slow = _json_body(
        f"the request (headers and body) did not arrive within {limits.header_timeout_s:g} s"
    )
    retry = f"hdr retry-after {limits.retry_after_s} hdr x-request-id %[var(txn.request_id)]"
    metrics = (
        ""
        if metrics_port is None
        else f"""
frontend metrics
    bind {metrics_host}:{metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    http-request return status 404
"""
    )
    return f"""\
# Written by strategist.serving.edge_proxy.render_config from the gateway's settings; do not edit by hand.
global
    maxconn {limits.max_connections}
    # One thread: the edge must leave the cores to the gateway and Triton; a refusal costs microseconds.
    nbthread 1
    tune.bufsize {limits.buffer_bytes}
    log stderr format short local0 warning

defaults
    mode http
    log global
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout http-request {ms(limits.header_timeout_s)}
    timeout http-keep-alive 60s
    timeout server {ms(limits.server_timeout_s)}
    timeout queue {ms(limits.queue_wait_s)}

frontend api
    bind {listen[0]}:{listen[1]}
    http-error status 408 content-type application/json lf-string {too_slow} hdr x-request-id %[var(txn.request_id)]
    # The client's request id when it sent a usable one (as the gateway accepts them), else a new one.
    http-request set-var(txn.request_id) req.hdr(x-request-id) if {{ req.hdr(x-request-id) -m reg {CLIENT_REQUEST_ID.pattern} }}
    http-request set-var(txn.request_id) uuid() unless {{ var(txn.request_id) -m found }}
    http-request set-header x-request-id %[var(txn.request_id)]
    # Arrival time at the edge, never the client's: the gateway's deadline runs from here.
    http-request set-header {REQUEST_START_HEADER} t=%[date(0,us)]
    acl predict path {paths}
    http-request return status 503 content-type application/json lf-string {gateway_down} {retry} if predict {{ nbsrv(predict) eq 0 }}
    http-request return status 429 content-type application/json lf-string {queue_full} {retry} if predict {{ queue(predict) ge {limits.max_queued} }}
    use_backend predict if predict
    default_backend rest

backend predict
    http-reuse always
{"    option http-buffer-request" if limits.buffer_whole_body else "    no option http-buffer-request"}
    http-error status 503 content-type application/json lf-string {queue_timeout} {retry}
    http-error status 502 content-type application/json lf-string {gateway_down} {retry}
    http-error status 504 content-type application/json lf-string {gateway_down} {retry}
    # Health-checked (its liveness path, once a second): a gateway that is down is answered at once.
    option httpchk GET /healthz
    server gateway {gateway[0]}:{gateway[1]} maxconn {limits.max_in_flight} check inter 1s downinter 250ms fall 2 rise 1

backend rest
    http-reuse always
    http-error status 502 content-type application/json lf-string {gateway_down} {retry}
    http-error status 503 content-type application/json lf-string {gateway_down} {retry}
    server gateway {gateway[0]}:{gateway[1]}
{metrics}"""


def _check_free(address: tuple[str, int]) -> None:
    """Raise EdgeProxyError when another process listens on `address` (HAProxy would exit, and a
    connection test would reach the other process instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise EdgeProxyError(
                f"the edge proxy cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            ) from None


def find_haproxy() -> Path:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None
    )
    if found is None:
        raise EdgeProxyError(
            "the edge proxy needs HAProxy (tested with 2.6) and `haproxy` is not installed "
            "(Debian/Ubuntu: apt-get install haproxy)"
        )
    return Path(found)


class EdgeProxy:
    """An HAProxy process listening on `listen`, forwarding to the gateway at `gateway`."""

    def __init__(
        self,
        limits: EdgeLimits,
        listen: tuple[str, int],
        gateway: tuple[str, int],
        metrics_port: int | None = None,
    ) -> None:
        self.limits = limits
        self.listen = listen
        self.gateway = gateway
        self.metrics_port = metrics_port
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.listen[1]}"

    @property
    def metrics_url(self) -> str | None:
        """HAProxy's Prometheus metrics (loopback only), e.g. haproxy_frontend_http_responses_total."""
        return None if self.metrics_port is None else f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def config_path(self) -> Path | None:
        return self._workdir / "haproxy.cfg" if self._workdir else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> EdgeProxy:
        """Check the configuration, start HAProxy and wait until it accepts connections."""
        if self._process is not None:
            raise EdgeProxyError(f"haproxy already started (pid {self._process.pid})")
        binary = find_haproxy()
        _check_free(self.listen)
        self._workdir = Path(tempfile.mkdtemp(prefix="strategist-edge-"))
        config = self._workdir / "haproxy.cfg"
        config.write_text(render_config(self.limits, self.listen, self.gateway, self.metrics_port))
        check = subprocess.run(
            [str(binary), "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise EdgeProxyError(f"haproxy refused its configuration {config}:\n{check.stderr.strip()}")
        log = open(self._workdir / "haproxy.log", "ab")  # noqa: SIM115 - closed by the process's end
        # -db: stay in the foreground (we supervise it); own session: Ctrl-C reaches serve, not it.
        self._process = subprocess.Popen(
            [str(binary), "-db", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # a parent killed without cleanup takes HAProxy with it
            start_new_session=True,
        )
        log.close()
        atexit.register(self.close)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self._workdir / "haproxy.log").read_text(errors="replace")[-2000:]
                code = self._process.returncode
                self.close()
                raise EdgeProxyError(f"haproxy exited with code {code} at start:\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection(self.listen, timeout=0.2):
                return self
            time.sleep(0.05)
        self.close()
        raise EdgeProxyError(f"haproxy did not listen on {self.url} within {timeout_s:.0f} s")

    def restart_if_exited(self) -> int | None:
        """Start HAProxy again when it has exited (its exit code), else None; the stack's watcher
        calls it every second, so a dead edge is back within about a second."""
        if self._process is None or self._process.poll() is None:
            return None
        code = self._process.returncode
        self.close()
        self.start()
        return code

    def close(self, timeout_s: float = 5.0) -> None:
        """SIGUSR1 (finish what is in flight, accept nothing new), SIGKILL after `timeout_s`; removes
        the work folder. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        with contextlib.suppress(ValueError):
            atexit.unregister(self.close)
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> EdgeProxy:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"give HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Print the edge configuration for the gateway settings in the environment (STRATEGIST_*), as
    `strategist serve` would write it, for a deployment that runs HAProxy itself (deploy/k8s)."""
    from server.settings import GatewaySettings

    parser = argparse.ArgumentParser(prog="python -m strategist.serving.edge_proxy", description=main.__doc__)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT clients connect to")
    parser.add_argument("--gateway", type=_address, required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--metrics", type=_address, default=None, help="HOST:PORT of HAProxy's metrics")
    parser.add_argument("--workers", type=int, default=1, help="gateway workers behind it")
    args = parser.parse_args(argv)
    limits = EdgeLimits.from_settings(GatewaySettings(), args.workers)
    metrics_host, metrics_port = args.metrics if args.metrics else ("127.0.0.1", None)
    print(render_config(limits, args.listen, args.gateway, metrics_port, metrics_host), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
