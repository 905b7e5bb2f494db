"""One pure-ASGI middleware for what every request needs: request id, body-size limit, metrics.

Pure ASGI (not BaseHTTPMiddleware) so it adds no task or stream copies to the hot path. The body limit
is checked on the Content-Length header first (413 before anything is read) and again while the
body streams in (chunked uploads carry no length).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.admission import CLIENT_GONE
from server.metrics import GatewayMetrics

REQUEST_ID_HEADER = "x-request-id"
# A client-chosen request id is echoed (here and by the edge proxy) only if it is harmless.
CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

ERROR_REASONS = {
    400: "bad_request",
    401: "auth",
    404: "not_found",
    405: "method",
    408: "body_timeout",
    413: "too_large",
    415: "media_type",
    422: "validation",
    429: "overloaded",
    500: "internal",
    502: "backend_error",
    503: "unavailable",
}


def _too_large(size: int, limit: int) -> str:
    return f"request body is {size} bytes or more, the limit is {limit} bytes (STRATEGIST_MAX_BODY_BYTES)"


class GatewayMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: GatewayMetrics, endpoints: set[str]
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.endpoints = endpoints
        # The metric children of each (endpoint, status) seen: resolving labels costs ~8 us a call,
        # paid on every answer (under overload, mostly refusals). Bounded: endpoints x statuses.
        self._children: dict[tuple[str, int], tuple[Any, Any | None, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        client_id = headers.get(REQUEST_ID_HEADER, "")
        request_id = client_id if CLIENT_REQUEST_ID.match(client_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope["path"]
        endpoint = path if path in self.endpoints else "other"
        response_status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal response_status
            if message["type"] == "http.response.start":
                response_status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                response = JSONResponse(
                    {"detail": _too_large(int(declared), self.max_body_bytes), "request_id": request_id},
                    status_code=413,
                )
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        finally:
            # A client that left is counted by server/admission.py: no answer was due, so no status.
            if not scope["state"].get(CLIENT_GONE):
                self._count(endpoint, response_status, time.perf_counter() - started)

    def _count(self, endpoint: str, response_status: int, seconds: float) -> None:
        children = self._children.get((endpoint, response_status))
        if children is None:
            errors = None
            if response_status >= 400:
                reason = ERROR_REASONS.get(response_status, f"http_{response_status}")
                errors = self.metrics.errors.labels(endpoint=endpoint, reason=reason)
            children = (
                self.metrics.requests.labels(endpoint=endpoint, status=str(response_status)),
                errors,
                self.metrics.latency.labels(endpoint=endpoint),
            )
            self._children[(endpoint, response_status)] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # HTTPException passes through FastAPI's body parsing untouched and becomes a 413.
                    raise HTTPException(413, detail=_too_large(received, limit))
            return message

        return receive_limited
