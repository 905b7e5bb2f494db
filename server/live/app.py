"""The two hooks server/main.py calls: `register` (routes, error answers) when the app is built and
`open_service` / `close_service` in its lifespan (the store and the service)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from server.live import routes
from server.live.field import LapRejected
from server.live.metrics import LiveMetrics
from server.live.schemas import LivePost
from server.live.service import LiveService, SessionConflict, SessionNotFound
from server.live.store import RedisStore, SessionStore, SQLiteStore, StoreError
from server.metrics import GatewayMetrics
from server.pipeline import Predictor
from server.settings import GatewaySettings

log = logging.getLogger("server.live")


def open_store(settings: GatewaySettings) -> SessionStore:
    if settings.live_store == "redis":
        return RedisStore(settings.live_redis_url)
    return SQLiteStore(settings.live_sqlite_path)


def open_service(settings: GatewaySettings, predictor: Predictor, metrics: GatewayMetrics) -> LiveService:
    store = open_store(settings)
    log.info(
        "race sessions in %s", settings.live_redis_url if store.kind == "redis" else settings.live_sqlite_path
    )
    return LiveService(store, predictor, LiveMetrics(metrics.registry))


def close_service(service: LiveService) -> None:
    service.store.close()


def _answer(request: Request, code: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail, "request_id": getattr(request.state, "request_id", None)}, code)


async def _lap_rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LapRejected)
    code = status.HTTP_409_CONFLICT if exc.conflict else status.HTTP_422_UNPROCESSABLE_CONTENT
    entry = {"loc": ["body"], "msg": str(exc), "type": "lap_conflict" if exc.conflict else "lap_rejected"}
    return _answer(request, code, [{**entry, "car": exc.car, "lap": exc.lap}])


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _answer(request, status.HTTP_404_NOT_FOUND, str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return _answer(request, status.HTTP_409_CONFLICT, str(exc))


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("request %s: %s", getattr(request.state, "request_id", None), exc)
    return _answer(request, status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


def _add_lap_schema(app: FastAPI) -> None:
    """POST .../laps reads its body itself (errors name car and lap): put LivePost into the spec."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            _, defs = models_json_schema(
                [(LivePost, "validation")], ref_template="#/components/schemas/{model}"
            )
            schemas.update(defs.get("$defs", {}))
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def register(app: FastAPI) -> None:
    app.include_router(routes.router)
    _add_lap_schema(app)
    app.add_exception_handler(LapRejected, _lap_rejected)
    app.add_exception_handler(SessionNotFound, _not_found)
    app.add_exception_handler(SessionConflict, _conflict)
    app.add_exception_handler(StoreError, _store_error)
