"""Admission control for the prediction endpoints: a deadline per request, a bound on requests in
flight, and a body that must arrive in time. Pure ASGI, so it adds no task or stream copy.

- Deadline: every prediction request gets one when it reaches the gateway, covering everything
  after (body read, preprocessing, the wait for the event loop, the backend call). The client may
  shorten or extend it up to `max_deadline_s` with `X-Request-Deadline-Ms: <ms>` or gRPC's
  `grpc-timeout: <digits><H|M|S|m|u|n>`. A request that cannot finish in time is answered 503 +
  Retry-After `answer_margin_s` before its deadline (never a hang, and never late: the margin
  covers a busy event loop's timer lag and writing the answer), and the pipeline checks it before the backend call
  (`check_deadline`), so work nobody waits for any more is not sent to Triton.
- In flight: at most `max_in_flight` prediction requests run at once. More wait, in arrival order,
  for a slot (at most `max_queued`; their deadline keeps running, their body is not read yet).
  One more, or one whose expected wait (requests ahead x mean service time / slots, plus its own
  service) is past QUEUE_HORIZON of its deadline, is answered 429 + Retry-After at once without
  reading its body. Waiting costs no CPU, so clients beyond the bound queue instead of retrying
  into a storm of 429s, and the pipeline stays busy; under overload the excess is refused at once
  instead of holding its connection until its deadline. A request waits at most QUEUE_HORIZON of
  its deadline: when the queue moves slower than estimated it is answered 429 then, not at its
  deadline, so what is admitted has half its deadline left to be answered in. A request whose wait
  leaves less time than a request takes (the running mean of admitted requests' service times) is
  answered 503 at once: work that would miss its deadline is not started.
- Event-loop lag: a timer measures how late the loop runs what is due (LoopLag, a gauge). With
  `max_loop_lag_s` set, a request waits for a slot only while that lag is under it (a loop that
  runs late is busy reading and refusing arrivals). Off by default (inf): the bounded wait covers
  open-loop overload, and closed-loop clients that ignore Retry-After keep a loop late with their
  own 429s, so with the rule none of them could queue.
- Body: the whole body must arrive within `body_timeout_s` of the request start (a client sending
  1 byte/s is cut off with 408). A client that disconnects mid-upload gets no answer and is not an
  error: it is counted in strategist_client_disconnects_total, and the request's state says so
  (`CLIENT_GONE`) for the outer metrics middleware.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import time
from typing import Final

from fastapi import HTTPException
from prometheus_client import Gauge
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.backend import BackendUnavailable
from server.metrics import GatewayMetrics

DEADLINE_HEADER: Final = "x-request-deadline-ms"
RETRY_AFTER_S: Final = 1  # Retry-After of every refusal (429, 503), here and at the edge proxy
# Set by a proxy in front (strategist.serving.edge_proxy): when the request reached it, "t=" and
# microseconds since the epoch (the convention of Heroku's router and APM agents). Trusted only when
# the settings say a proxy sets it, so the deadline covers the wait in the proxy's queue.
REQUEST_START_HEADER: Final = "x-request-start"
GRPC_TIMEOUT_HEADER: Final = "grpc-timeout"
CLIENT_GONE: Final = "client_gone"  # scope["state"] key: the client left before the answer
# A request waits for a slot only when it is expected to be answered within this share of its
# deadline, and never waits longer than it: the rest is room for the estimate's error and for the
# time a request spends before the gateway sees it (socket, HTTP parsing on a busy loop), which the
# deadline cannot cover. 0.75 let admitted answers reach overloaded clients 1.4 s after a 1 s
# deadline (chaos ablation); 0.5 kept them within it. Without the bound on the wait itself, a queue
# that moved slower than its estimate let most waiters reach their deadline: 503s after ~1 s and
# admitted p99 1.4 s (chaos ablation, overload_before_queuewait vs overload_queuewait).
QUEUE_HORIZON: Final = 0.5
# strategist_requests_shed_total
SHED_REASONS: Final = ("in_flight", "queue_wait", "deadline", "body_timeout")
_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_GRPC_UNIT_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

# The running request's deadline (time.monotonic() seconds), set by the middleware; the route and
# the pipeline run in the same task, so they see it without being handed it.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


class LoopLag:
    """How late the running event loop runs a timer that is due: a callback every `period_s`
    measures its own delay. `lag_s` follows a rise at once and a fall gradually (a fifth of the way
    per tick), so one quiet tick amid overload does not read as recovery. Started on first use, in
    the loop it measures; costs one callback per period."""

    def __init__(self, period_s: float = 0.01, gauge: Gauge | None = None) -> None:
        self.period_s = period_s
        self.gauge = gauge
        self.lag_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new loop (tests run apps in several)
            self._loop = loop
            self.lag_s = 0.0
            loop.call_later(self.period_s, self._tick, loop, loop.time() + self.period_s)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if loop is not self._loop or loop.is_closed():
            return
        now = loop.time()
        late = max(0.0, now - due)
        self.lag_s = late if late > self.lag_s else self.lag_s + 0.2 * (late - self.lag_s)
        if self.gauge is not None:
            self.gauge.set(self.lag_s)
        loop.call_later(self.period_s, self._tick, loop, now + self.period_s)


class DeadlineExceeded(BackendUnavailable):
    """The request's deadline passed before the work could be done: 503 + Retry-After."""


class QueueWaitTooLong(Exception):
    """A queued request got no slot within QUEUE_HORIZON of its deadline: 429 + Retry-After."""


class BadDeadline(ValueError):
    """A deadline header that cannot be read."""


def check_deadline(before: str) -> float | None:
    """Seconds left of the running request's deadline (None: no deadline set); raises
    DeadlineExceeded when none are left, naming what was about to happen."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"the request's deadline passed before the {before}")
    return left


def edge_wait_s(headers: Headers, now_s: float | None = None) -> float:
    """Seconds since a proxy in front saw the request arrive (X-Request-Start: t=<microseconds
    since the epoch>), 0 when the header is absent or the clocks disagree by putting it in the
    future. Raises BadDeadline naming the header and the expected form."""
    given = headers.get(REQUEST_START_HEADER)
    if given is None:
        return 0.0
    text = given.strip().removeprefix("t=")
    if not text.isdigit() or len(text) > 19:
        raise BadDeadline(
            f"{REQUEST_START_HEADER} takes t=<microseconds since the epoch>, got {given[:40]!r}"
        )
    now_s = time.time() if now_s is None else now_s
    return max(0.0, now_s - int(text) / 1e6)


def requested_budget_s(headers: Headers) -> float | None:
    """The client's own budget in seconds from X-Request-Deadline-Ms or grpc-timeout (None: neither
    given). Raises BadDeadline naming the header and the expected form."""
    given = headers.get(DEADLINE_HEADER)
    if given is not None:
        text = given.strip()
        if not text.isdigit() or not 0 < int(text) <= 86_400_000:
            raise BadDeadline(f"{DEADLINE_HEADER} takes whole milliseconds 1..86400000, got {given[:40]!r}")
        return int(text) / 1e3
    given = headers.get(GRPC_TIMEOUT_HEADER)
    if given is not None:
        match = _GRPC_TIMEOUT.match(given.strip())
        if match is None or int(match.group(1)) == 0:
            raise BadDeadline(
                f"{GRPC_TIMEOUT_HEADER} takes 1-8 digits and a unit H, M, S, m, u or n (e.g. 500m), "
                f"got {given[:40]!r}"
            )
        return int(match.group(1)) * _GRPC_UNIT_S[match.group(2)]
    return None


class AdmissionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: set[str],
        metrics: GatewayMetrics,
        max_in_flight: int,
        deadline_s: float,
        max_deadline_s: float,
        body_timeout_s: float,
        answer_margin_s: float = 0.0,
        max_queued: int = 0,
        max_loop_lag_s: float = float("inf"),
        trust_request_start: bool = False,
    ) -> None:
        self.app = app
        self.paths = paths
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.deadline_s = deadline_s
        self.max_deadline_s = max_deadline_s
        self.body_timeout_s = body_timeout_s
        self.answer_margin_s = answer_margin_s
        self.max_loop_lag_s = max_loop_lag_s
        self.trust_request_start = trust_request_start
        self.loop_lag = LoopLag(gauge=metrics.loop_lag)
        # Metric children resolved once: a labels() call costs ~8 us, and refusals are most
        # arrivals under overload.
        self._shed = {reason: metrics.shed.labels(reason=reason) for reason in SHED_REASONS}
        self.in_flight = 0
        self.queued = 0
        self._slots = asyncio.Semaphore(max_in_flight)  # FIFO: waiters get slots in arrival order
        self.service_s = 0.0  # running mean of admitted requests' service time (slot to answer)
        # Running mean of the time between two slot releases while requests wait: how fast the
        # queue moves, measured, not derived (a saturated event loop frees slots slower than
        # service_s / max_in_flight suggests).
        self.release_interval_s = 0.0
        self._last_release = 0.0
        # When a request that had to wait last missed its deadline: the queue's estimate failed
        # (a sustained overload, a loop too busy to keep its own timers), so for one deadline new
        # arrivals are refused instead of queued.
        self._queue_missed_at = -float("inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        self.loop_lag.ensure_running()
        headers = Headers(scope=scope)
        try:
            budget = requested_budget_s(headers)
            # Time the request already spent in a proxy's queue in front (0 without one).
            waited_before = edge_wait_s(headers) if self.trust_request_start else 0.0
        except BadDeadline as exc:
            await self._reject(scope, receive, send, 400, str(exc), retry_after=None)
            return
        budget = self.deadline_s if budget is None else min(budget, self.max_deadline_s)
        left = budget - waited_before
        margin = min(self.answer_margin_s, budget / 10)
        if left <= margin:  # it spent its deadline in front of the gateway: nothing can be done in time
            await self._reject_deadline(scope, receive, send, budget)
            return
        if self.in_flight >= self.max_in_flight:
            refusal = self._queue_refusal(left)
            if refusal is not None:
                self._shed["in_flight"].inc()
                await self._reject(scope, receive, send, 429, refusal, retry_after=RETRY_AFTER_S)
                return
        deadline = started + left
        token = _deadline.set(deadline)
        admitted = response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                # The answer is on its way: let it finish. Unless the deadline fired a moment ago
                # and the app is answering its cancellation (a cancelled backend call becomes a
                # 503): an expiring timeout cannot be moved, and that answer may go out as it is.
                if not timeout.expired():
                    timeout.reschedule(None)
            await send(message)

        must_wait = self.in_flight >= self.max_in_flight
        try:
            # Give up a margin before the deadline, so the 503 is written and on its way by then.
            async with asyncio.timeout(left - margin) as timeout:
                waited = await self._take_slot(max_wait_s=max(0.0, QUEUE_HORIZON * budget - waited_before))
                admitted = True
                if waited and deadline - time.monotonic() < self.service_s:
                    raise TimeoutError  # it would miss the deadline anyway: do not start the work
                slot_at = time.monotonic()
                await self.app(scope, self._timed_body(receive, started), send_tracked)
                self.service_s += 0.05 * (time.monotonic() - slot_at - self.service_s)
        except QueueWaitTooLong as exc:
            self._queue_missed_at = time.monotonic()
            self._shed["queue_wait"].inc()
            # 429 like the queue's other refusals: the same bound said no, only later.
            await self._reject(scope, receive, send, 429, str(exc), retry_after=RETRY_AFTER_S)
        except TimeoutError:
            if response_started:
                raise
            if must_wait:
                self._queue_missed_at = time.monotonic()
            await self._reject_deadline(scope, receive, send, budget)
        except ClientDisconnect:
            # Nobody to answer: not a failure of the gateway, so not a 500 and not an error.
            scope.setdefault("state", {})[CLIENT_GONE] = True
            self.metrics.client_disconnects.inc()
        finally:
            _deadline.reset(token)
            if admitted:
                self._release_slot()

    def _queue_refusal(self, budget: float) -> str | None:
        """Every slot is busy: why this request may not wait for one (None: it may). It may when
        the queue has room and its expected wait (the requests ahead of it times the measured
        interval between slot releases) plus its own service fit QUEUE_HORIZON of its budget, the
        event loop's lag is under max_loop_lag_s, and no request that waited missed its deadline
        within the last budget (then the estimate is not holding): under overload the excess is
        refused at once instead of holding a connection until its deadline."""
        lag_s = self.loop_lag.lag_s
        if lag_s > self.max_loop_lag_s:
            return (
                f"{self.in_flight} requests in flight and the gateway runs {lag_s * 1e3:.0f} ms behind "
                f"(over {self.max_loop_lag_s * 1e3:.0f} ms, STRATEGIST_MAX_LOOP_LAG_MS), so none wait for now"
            )
        missed_s = time.monotonic() - self._queue_missed_at
        if missed_s < budget:
            return (
                f"{self.in_flight} requests in flight; a request that waited missed its deadline "
                f"{missed_s * 1e3:.0f} ms ago, so none wait for now"
            )
        if self.queued >= self.max_queued:
            return (
                f"{self.in_flight} requests in flight and {self.queued} waiting, the limits are "
                f"{self.max_in_flight} (STRATEGIST_MAX_IN_FLIGHT) and {self.max_queued} (STRATEGIST_MAX_QUEUED)"
            )
        interval = self.release_interval_s or self.service_s / self.max_in_flight
        expected_s = (self.queued + 1) * interval + self.service_s
        if expected_s > QUEUE_HORIZON * budget:
            return (
                f"{self.in_flight} requests in flight and {self.queued} waiting: this one would be answered "
                f"in about {expected_s * 1e3:.0f} ms, past {QUEUE_HORIZON:.0%} of its deadline of {budget * 1e3:.0f} ms"
            )
        return None

    def _release_slot(self) -> None:
        now = time.monotonic()
        if self.queued:  # only intervals with someone waiting say how fast the queue moves
            gap = now - self._last_release
            self.release_interval_s += 0.05 * (min(gap, 1.0) - self.release_interval_s)
        self._last_release = now
        self._slots.release()
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    async def _take_slot(self, max_wait_s: float) -> bool:
        """Wait (FIFO) for an in-flight slot, at most `max_wait_s`; True when the request had to
        wait. Past `max_wait_s` (the queue moves slower than its estimate said) it leaves the queue
        without a slot: QueueWaitTooLong. Cancelled by the deadline's timeout, the same."""
        waited = self._slots.locked()
        if waited:
            self.queued += 1
            self.metrics.queued.set(self.queued)
        try:
            async with asyncio.timeout(max_wait_s if waited else None):  # a free slot: no wait to bound
                await self._slots.acquire()
        except TimeoutError:
            raise QueueWaitTooLong(
                f"no slot came free within {max_wait_s * 1e3:.0f} ms ({QUEUE_HORIZON:.0%} of the "
                "request's deadline): the gateway is overloaded"
            ) from None
        finally:
            if waited:
                self.queued -= 1
                self.metrics.queued.set(self.queued)
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        return waited

    def _timed_body(self, receive: Receive, started: float) -> Receive:
        """receive() with the body-read deadline: the whole body within body_timeout_s."""
        limit = started + self.body_timeout_s
        done = False

        async def receive_timed() -> Message:
            nonlocal done
            if done:  # after the body only http.disconnect comes: no read deadline on that wait
                return await receive()
            try:
                async with asyncio.timeout_at(_loop_time(limit)):
                    message = await receive()
            except TimeoutError:
                self._shed["body_timeout"].inc()
                # HTTPException passes through FastAPI's body reading untouched and becomes the 408.
                raise HTTPException(
                    408,
                    detail=f"the request body did not arrive within {self.body_timeout_s:g} s "
                    "(STRATEGIST_BODY_TIMEOUT_S)",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return receive_timed

    async def _reject_deadline(self, scope: Scope, receive: Receive, send: Send, budget: float) -> None:
        """503 + Retry-After for a request that cannot be answered within its deadline."""
        self._shed["deadline"].inc()
        message = f"no answer within the request's deadline of {budget * 1e3:.0f} ms"
        await self._reject(scope, receive, send, 503, message, retry_after=RETRY_AFTER_S)

    @staticmethod
    async def _reject(
        scope: Scope, receive: Receive, send: Send, status: int, message: str, *, retry_after: int | None
    ) -> None:
        # Written as two ASGI messages, without a Response object: under overload this runs for
        # most arrivals, and the loop's time is what the admitted requests need. The body is what
        # JSONResponse would write (compact JSON, UTF-8).
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(
            {"detail": message, "request_id": request_id}, ensure_ascii=False, separators=(",", ":")
        ).encode()
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _loop_time(monotonic_deadline: float) -> float:
    """A time.monotonic() instant on the running loop's clock (asyncio.timeout_at takes loop time)."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())
