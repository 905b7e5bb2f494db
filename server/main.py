"""Assembles the gateway: settings -> backend -> predictor, routes, middleware and error handlers.

uvicorn --factory server.main:create_app     # settings from STRATEGIST_* environment variables
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from server.admission import RETRY_AFTER_S, AdmissionMiddleware, DeadlineExceeded
from server.backend import BackendFailed, BackendUnavailable, InferenceBackend
from server.decode import UnsupportedMediaType, cap_errors
from server.fast_path import LeanPredictPath
from server.live import app as live_app
from server.metrics import GatewayMetrics
from server.middleware import GatewayMiddleware
from server.onnx_backend import OnnxRuntimeBackend
from server.pipeline import Predictor
from server.preprocess import RequestErrors
from server.routes import health, predict
from server.settings import GatewaySettings
from server.triton_backend import TritonBackend
from strategist import __version__
from strategist.errors import DataError, StackSizeError

log = logging.getLogger("server")

PREDICT_ENDPOINTS = {"/predict", "/predict/batch"}
ENDPOINTS = {*PREDICT_ENDPOINTS, "/healthz", "/readyz", "/metrics"}


def make_backend(settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> InferenceBackend:
    """The backend the settings ask for (not started yet); `metrics` gets the per-endpoint series."""
    if settings.backend == "onnxruntime":
        return OnnxRuntimeBackend(
            settings.onnx_file(),
            settings.model_name,
            timeout_s=settings.request_timeout_s,
            threads=settings.onnx_threads,
        )
    return TritonBackend(
        settings.triton_endpoints(),
        settings.model_name,
        settings.model_version,
        timeout_s=settings.request_timeout_s,
        readiness_timeout_s=settings.readiness_timeout_s,
        discovery=settings.triton_discovery,
        probe_interval_s=settings.triton_probe_interval_s,
        resolve_interval_s=settings.triton_resolve_interval_s,
        metrics=metrics,
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Field, reason and location only: echoing the offending input back could mean 10,000 numbers.
    detail = cap_errors(
        [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
    )
    return JSONResponse({"detail": detail, "request_id": _request_id(request)}, 422)


async def _request_errors(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestErrors)
    detail = cap_errors(
        [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors]
    )
    return JSONResponse({"detail": detail, "request_id": _request_id(request)}, 422)


async def _unsupported_media_type(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc), "request_id": _request_id(request)}, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    field = getattr(exc, "field", None)
    detail = [{"loc": ["body", *([field] if field else [])], "msg": str(exc), "type": "data_error"}]
    return JSONResponse({"detail": detail, "request_id": _request_id(request)}, 422)


async def _backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The log has the full reason; the body does not: Triton's messages name its internal address.
    log.warning("request %s: backend unavailable: %s", _request_id(request), exc)
    reason = str(exc) if isinstance(exc, DeadlineExceeded) else "model backend unavailable, try again"
    return JSONResponse(
        {"detail": reason, "request_id": _request_id(request)},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _backend_failed(request: Request, exc: Exception) -> JSONResponse:
    log.error("request %s: backend error: %s", _request_id(request), exc)
    return JSONResponse(
        {"detail": "the model backend answered with an error", "request_id": _request_id(request)},
        status.HTTP_502_BAD_GATEWAY,
    )


def _add_request_schemas(app: FastAPI) -> None:
    """The predict routes read their bodies themselves (one-pass parse, binary format), so FastAPI does
    not put the request models into the OpenAPI components: add them to the generated spec."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()  # FastAPI caches it in app.openapi_schema
            spec.setdefault("components", {}).setdefault("schemas", {}).update(predict.request_schemas())
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def admission_options(settings: GatewaySettings, metrics: GatewayMetrics) -> dict[str, Any]:
    """AdmissionMiddleware's keyword arguments from the settings (the prediction paths only)."""
    return {
        "paths": PREDICT_ENDPOINTS,
        "metrics": metrics,
        "max_in_flight": settings.max_in_flight,
        "max_queued": settings.max_queued,
        "deadline_s": settings.request_deadline_s,
        "max_deadline_s": settings.max_request_deadline_s,
        "answer_margin_s": settings.deadline_answer_margin_ms / 1000.0,
        "max_loop_lag_s": float("inf")
        if settings.max_loop_lag_ms is None
        else settings.max_loop_lag_ms / 1000.0,
        "body_timeout_s": settings.body_timeout_s,
        "trust_request_start": settings.trust_request_start,
    }


def create_app(settings: GatewaySettings | None = None, backend: InferenceBackend | None = None) -> FastAPI:
    """The gateway app. `backend` overrides the one the settings describe (used by `strategist serve`)."""
    settings = settings or GatewaySettings()
    log.setLevel(settings.log_level.upper())
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = backend or make_backend(settings, metrics)
        await chosen.start()  # Triton may still be down: /readyz reports it, requests get 503
        app.state.predictor = Predictor(chosen, metrics, default_race_laps=settings.default_race_laps)
        app.state.live = live_app.open_service(settings, app.state.predictor, metrics)
        log.info("gateway ready to serve: backend %s, model %r", chosen.kind, chosen.model_name)
        try:
            yield
        finally:
            live_app.close_service(app.state.live)
            await chosen.close()

    app = FastAPI(
        title="Virtual Strategist",
        version=__version__,
        summary="Next-lap pace corridor, bad-lap risk and tire health from a car's last laps.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(health.router)
    app.include_router(predict.router)
    live_app.register(app)  # race sessions and the race view (server/live)
    _add_request_schemas(app)
    handlers: dict[type[Exception], Any] = {
        RequestValidationError: _validation_error,
        RequestErrors: _request_errors,
        UnsupportedMediaType: _unsupported_media_type,
        DataError: _data_error,
        StackSizeError: _data_error,
        BackendUnavailable: _backend_unavailable,
        BackendFailed: _backend_failed,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    if settings.lean_routes:
        app.add_middleware(LeanPredictPath)  # innermost: the hot routes, behind admission control
    # Added before GatewayMiddleware, so it runs inside it: request id set, metrics counted around it.
    app.add_middleware(AdmissionMiddleware, **admission_options(settings, metrics))
    app.add_middleware(
        GatewayMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics, endpoints=ENDPOINTS
    )
    return app
