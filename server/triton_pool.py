"""Several Triton endpoints behind one gateway: health, load balancing and failover.

Each endpoint is one Triton gRPC host:port with its own `tritonclient.grpc.aio` client. The pool

- sends each call to the endpoint in rotation with the fewest calls in flight (ties go round-robin);
- on a connection failure (gRPC UNAVAILABLE: refused, reset, socket closed) marks the endpoint down
  and retries the call once on another endpoint, inside the same deadline (inference is idempotent,
  so a second try is safe; a timeout or a model error is never retried: the work may be running, or
  would fail the same way);
- probes every endpoint in the background (server ready + model ready) and takes a down one back
  into rotation when it answers ready again;
- with discovery "dns", re-resolves each host name (a Kubernetes headless Service gives one address
  per ready Triton pod) and adds or drops endpoints as the addresses change.

When no endpoint is up, calls still go to the least recently failed one: a Triton that has just come
back answers at once instead of waiting for the next probe, and one that is still down fails fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from server.backend import BackendUnavailable
from server.metrics import GatewayMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
Discovery = Literal["static", "dns"]

_MAX_MESSAGE_BYTES = 2**31 - 1
# The channel reconnects by itself; a back-off capped at one second lets a restarted Triton be used
# within about a second instead of after gRPC's default two minutes.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_CONNECTION_LOST = "StatusCode.UNAVAILABLE"


def is_connection_failure(exc: InferenceServerException) -> bool:
    """The endpoint is gone (refused, reset, closed), as opposed to an answer or a deadline."""
    return str(exc.status()) == _CONNECTION_LOST


@dataclass
class Endpoint:
    url: str  # host:port
    client: grpcclient.InferenceServerClient
    up: bool = False
    outstanding: int = 0
    changed_at: float = field(default_factory=time.monotonic)  # last up/down transition
    last_error: str = ""

    def state(self) -> dict[str, object]:
        return {
            "url": self.url,
            "up": self.up,
            "outstanding": self.outstanding,
            "for_s": round(time.monotonic() - self.changed_at, 3),
            **({"last_error": self.last_error} if self.last_error and not self.up else {}),
        }


class TritonPool:
    def __init__(
        self,
        targets: Sequence[str],
        model_name: str,
        model_version: str = "",
        probe_timeout_s: float = 1.0,
        probe_interval_s: float = 0.5,
        discovery: Discovery = "static",
        resolve_interval_s: float = 5.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        if not targets:
            raise ValueError("TritonPool needs at least one host:port target")
        self.targets = tuple(targets)
        self.model_name = model_name
        self.model_version = model_version
        self.probe_timeout_s = probe_timeout_s
        self.probe_interval_s = probe_interval_s
        self.discovery = discovery
        self.resolve_interval_s = resolve_interval_s
        self.metrics = metrics
        self.endpoints: dict[str, Endpoint] = {}
        self._rotation = itertools.count()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open a client per endpoint and probe them once; never fails because Triton is down."""
        await self._reconcile(self._resolve())
        await self.probe_all()
        self._task = asyncio.create_task(self._background(), name="triton-pool-probes")
        log.info("Triton pool: %s (%s), model %r", ", ".join(self.endpoints), self.discovery, self.model_name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for url in list(self.endpoints):
            await self._drop(url)

    # --- membership ----------------------------------------------------------------------------
    def _resolve(self) -> list[str]:
        if self.discovery == "static":
            return list(self.targets)
        urls: list[str] = []
        for target in self.targets:
            host, _, port = target.rpartition(":")
            try:
                infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                log.warning("Triton discovery: %s does not resolve (%s)", host, exc)
                continue
            for info in infos:
                address = str(info[4][0])
                urls.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        return list(dict.fromkeys(urls))

    async def _reconcile(self, urls: Sequence[str]) -> None:
        for url in urls:
            if url not in self.endpoints:
                client = grpcclient.InferenceServerClient(url=url, channel_args=_CHANNEL_ARGS)
                self.endpoints[url] = Endpoint(url, client)
                self._publish(self.endpoints[url])
        if not urls:
            return  # a failed lookup keeps the endpoints we know rather than emptying the pool
        for url in [u for u in self.endpoints if u not in urls]:
            log.info("Triton endpoint %s left discovery", url)
            await self._drop(url)

    async def _drop(self, url: str) -> None:
        endpoint = self.endpoints.pop(url)
        if self.metrics is not None:
            for gauge in (self.metrics.triton_up, self.metrics.triton_outstanding):
                with contextlib.suppress(KeyError):
                    gauge.remove(url)
        # Calls still in flight on it finish (or fail over) before its channel closes.
        while endpoint.outstanding:
            await asyncio.sleep(0.05)
        await endpoint.client.close()

    # --- health ---------------------------------------------------------------------------------
    async def _probe(self, endpoint: Endpoint) -> None:
        timeout = self.probe_timeout_s
        try:
            ready = await asyncio.wait_for(
                endpoint.client.is_server_ready(client_timeout=timeout), timeout + 0.5
            ) and await asyncio.wait_for(
                endpoint.client.is_model_ready(self.model_name, self.model_version, client_timeout=timeout),
                timeout + 0.5,
            )
            reason = "" if ready else f"model {self.model_name!r} not ready"
        except (InferenceServerException, asyncio.TimeoutError) as exc:
            ready, reason = False, str(exc) or type(exc).__name__
        if ready:
            self._set_up(endpoint)
        else:
            self.mark_down(endpoint, reason)

    async def probe_all(self) -> bool:
        """Probe every endpoint now; True when at least one is up."""
        await asyncio.gather(*(self._probe(e) for e in list(self.endpoints.values())))
        return any(e.up for e in self.endpoints.values())

    async def _background(self) -> None:
        next_resolve = time.monotonic() + self.resolve_interval_s
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                if self.discovery == "dns" and time.monotonic() >= next_resolve:
                    next_resolve = time.monotonic() + self.resolve_interval_s
                    urls = await asyncio.get_running_loop().run_in_executor(None, self._resolve)
                    await self._reconcile(urls)
                await self.probe_all()
            except Exception:  # the probe loop must outlive any one bad round
                log.exception("Triton pool probe round failed")

    def _set_up(self, endpoint: Endpoint) -> None:
        if not endpoint.up:
            endpoint.up, endpoint.changed_at, endpoint.last_error = True, time.monotonic(), ""
            log.info("Triton endpoint %s is up", endpoint.url)
            if self.metrics is not None:
                self.metrics.triton_transitions.labels(endpoint.url, "up").inc()
            self._publish(endpoint)

    def mark_down(self, endpoint: Endpoint, reason: str) -> None:
        endpoint.last_error = reason
        if endpoint.up:
            endpoint.up, endpoint.changed_at = False, time.monotonic()
            log.warning("Triton endpoint %s is down: %s", endpoint.url, reason)
            if self.metrics is not None:
                self.metrics.triton_transitions.labels(endpoint.url, "down").inc()
            self._publish(endpoint)

    def _publish(self, endpoint: Endpoint) -> None:
        if self.metrics is not None and endpoint.url in self.endpoints:
            self.metrics.triton_up.labels(endpoint.url).set(1.0 if endpoint.up else 0.0)
            self.metrics.triton_outstanding.labels(endpoint.url).set(endpoint.outstanding)

    def states(self) -> list[dict[str, object]]:
        return [e.state() for e in self.endpoints.values()]

    # --- calls ----------------------------------------------------------------------------------
    def pick(self, exclude: set[str]) -> Endpoint | None:
        """Least outstanding among the up endpoints not in `exclude`; when none is up, the one that
        has been down longest (most likely back). Ties rotate so equal endpoints share the load."""
        candidates = [e for e in self.endpoints.values() if e.url not in exclude]
        if not candidates:
            return None
        up = [e for e in candidates if e.up]
        if not up:
            return min(candidates, key=lambda e: e.changed_at)
        turn = next(self._rotation)
        return min(up, key=lambda e: (e.outstanding, (up.index(e) - turn) % len(up)))

    async def call(self, fn: Callable[[grpcclient.InferenceServerClient, float], Awaitable[T]],
                   timeout_s: float) -> T:  # fmt: skip
        """Run fn(client, seconds_left) on an endpoint; on a lost connection, once more on another one
        with what is left of `timeout_s`. Other errors propagate unchanged (the caller translates)."""
        deadline = time.monotonic() + timeout_s
        tried: set[str] = set()
        while True:
            endpoint = self.pick(tried)
            if endpoint is None:
                raise BackendUnavailable(f"no Triton endpoint to call (pool: {', '.join(self.targets)})")
            tried.add(endpoint.url)
            endpoint.outstanding += 1
            self._publish(endpoint)
            try:
                result = await fn(endpoint.client, max(deadline - time.monotonic(), 0.001))
            except InferenceServerException as exc:
                lost = is_connection_failure(exc)
                self._count(endpoint, "unavailable" if lost else "error")
                if not lost:
                    raise
                self.mark_down(endpoint, exc.message() or str(exc))
                retry = len(tried) < 2 and deadline - time.monotonic() > 0.01 and self.pick(tried)
                if not retry:
                    raise
                if self.metrics is not None:
                    self.metrics.triton_failovers.inc()
                log.info("Triton endpoint %s lost the call; retrying on another", endpoint.url)
                continue
            except asyncio.TimeoutError:
                self._count(endpoint, "timeout")
                raise
            finally:
                endpoint.outstanding -= 1
                self._publish(endpoint)
            self._count(endpoint, "ok")
            return result

    def _count(self, endpoint: Endpoint, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.triton_calls.labels(endpoint.url, outcome).inc()
