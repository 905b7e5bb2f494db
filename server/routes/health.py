"""Liveness, readiness and Prometheus metrics (never guarded by the API key: probes must reach them)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.backend import ReportsEndpoints
from server.deps import PredictorDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is up (says nothing about the model)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Backend unreachable or model not ready."}})
async def readyz(predictor: PredictorDep, response: Response) -> dict[str, object]:
    """The backend is reachable and the model is ready to answer (with several Tritons: at least one
    is; `endpoints` gives each one's state)."""
    backend = predictor.backend
    ready = await backend.is_ready()
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    body: dict[str, object] = {"ready": ready, "backend": backend.kind, "model": backend.model_name}
    if isinstance(backend, ReportsEndpoints):
        body["endpoints"] = backend.endpoint_states()
    return body


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, errors, latency per endpoint and per pipeline stage."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
