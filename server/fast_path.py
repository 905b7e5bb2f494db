"""POST /predict and /predict/batch without FastAPI's routing: the lean request path.

A pure-ASGI layer inside GatewayMiddleware (request id, body limit and metrics still apply). For the
two prediction paths it reads the body, checks the API key, and answers with the very functions the
FastAPI routes call (server.routes.predict.predict_body / predict_batch_body), so the JSON, the
status codes and the headers are the routes' own. What it skips is the per-request framework work:
route matching over every route, dependency resolution, the Request object, the Response class.
In the gateway CPU profile (benchmarks/README.md, gateway_cpu) that was the largest cost after
decoding and alignment.

Errors go through the app's own exception handlers (415, 422, 502, 503: the same bodies as the
routes). A request the lean path does not open (another method, a wrong or missing API key) goes to
the FastAPI app untouched, which answers it as before (405, 401 with WWW-Authenticate).
STRATEGIST_LEAN_ROUTES=false turns the layer off (kept to measure against).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.deps import api_key_matches
from server.routes.predict import BODY_HANDLERS

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class LeanPredictPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = BODY_HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        fastapi_app = scope.get("app")
        if handler is None or scope["method"] != "POST" or fastapi_app is None:
            await self.app(scope, receive, send)
            return
        state = fastapi_app.state
        settings = state.settings
        if settings.api_key is not None:
            scheme, _, token = _header(scope, b"authorization").partition(" ")
            if not api_key_matches(settings, scheme, token):
                await self.app(scope, receive, send)  # the route's guard answers 401
                return
        try:
            body = await _read_body(receive)
            answer = await handler(
                body,
                _header(scope, b"content-type"),
                state.predictor,
                settings,
                scope["state"]["request_id"],
            )
        except Exception as exc:  # only what the app has a handler for is answered here
            handler_for = _exception_handler(fastapi_app, exc)
            if handler_for is None:
                raise
            response = await handler_for(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect  # as Request.body() does on the FastAPI route
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _exception_handler(app: Any, exc: Exception) -> Any:
    """The handler the app registered for this exception's type (or a base of it), as Starlette's
    ExceptionMiddleware would choose it."""
    handlers = app.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None
