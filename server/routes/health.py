"""Liveness, readiness and Prometheus metrics (never guarded by the API key: probes must reach them)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.backend import ReportsEndpoints
from server.deps import PredictorDep, SettingsDep, api_key_matches

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is up (says nothing about the model)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Backend unreachable or model not ready."}})
async def readyz(
    request: Request, predictor: PredictorDep, settings: SettingsDep, response: Response
) -> dict[str, object]:
    """The backend is reachable and the model is ready to answer (with several Tritons: at least one
    is; `endpoints` gives each one's state). Probes carry no key, and this endpoint is open to them:
    the Tritons' addresses and errors are shown only to a caller with the API key (or when none is
    set); others see each endpoint by its index."""
    backend = predictor.backend
    ready = await backend.is_ready()
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    body: dict[str, object] = {"ready": ready, "backend": backend.kind, "model": backend.model_name}
    if isinstance(backend, ReportsEndpoints):
        states = backend.endpoint_states()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not api_key_matches(settings, scheme, token.strip()):
            hidden = ("url", "last_error")
            states = [
                {"endpoint": i, **{k: v for k, v in st.items() if k not in hidden}}
                for i, st in enumerate(states)
            ]
        body["endpoints"] = states
    return body


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, errors, latency per endpoint and per pipeline stage."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
