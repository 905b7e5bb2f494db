"""POST /predict (one car) and POST /predict/batch (many cars, one backend call)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError

from server.deps import ApiKeyGuard, PredictorDep, SettingsDep
from server.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
)
from strategist.paths import PROJECT_ROOT

EXAMPLE_REQUEST_FILE = PROJECT_ROOT / "examples" / "predict_request.json"

router = APIRouter(tags=["predict"], dependencies=[ApiKeyGuard])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {"model": ErrorResponse, "description": "Body larger than STRATEGIST_MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Invalid stack: the message names the field and reason."},
    502: {"model": ErrorResponse, "description": "The model server answered with an error."},
    503: {"model": ErrorResponse, "description": "Model server down, not ready or past the deadline."},
}


@lru_cache(maxsize=1)
def example_request() -> dict[str, Any] | None:
    """The committed example (a car of a simulated race), shown in the OpenAPI docs."""
    if not EXAMPLE_REQUEST_FILE.exists():
        return None
    loaded: dict[str, Any] = json.loads(EXAMPLE_REQUEST_FILE.read_text())
    return loaded


def _examples(batch: bool) -> dict[str, Any]:
    example = example_request()
    if example is None:
        return {}
    value = {"cars": [example]} if batch else example
    summary = "A car of a simulated race, raw telemetry by time (examples/predict_request.json)"
    return {"simulated_race": {"summary": summary, "value": value}}


def _request_id(request: Request) -> str:
    return str(request.state.request_id)


@router.post("/predict", response_model=PredictResponse, responses=_ERRORS)
async def predict(
    body: Annotated[PredictRequest, Body(openapi_examples=_examples(batch=False))],
    predictor: PredictorDep,
    request: Request,
) -> PredictResponse:
    """Next-lap pace corridor, bad-lap risk and tire health for one car, with its clean-air counterfactual."""
    request_id = _request_id(request)
    result = await predictor.predict([body], request_id)
    return PredictResponse(
        **result.predictions[0].model_dump(), request_id=request_id, model=result.model, timing=result.timing
    )


@router.post("/predict/batch", response_model=BatchPredictResponse, responses=_ERRORS)
async def predict_batch(
    body: Annotated[BatchPredictRequest, Body(openapi_examples=_examples(batch=True))],
    predictor: PredictorDep,
    settings: SettingsDep,
    request: Request,
) -> BatchPredictResponse:
    """Many cars in one call: one backend request for all of them (and their clean-air rows)."""
    if len(body.cars) > settings.max_batch_cars:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "cars"),
                    "msg": f"at most {settings.max_batch_cars} cars per call (STRATEGIST_MAX_BATCH_CARS), "
                    f"got {len(body.cars)}",
                    "type": "too_long",
                }
            ]
        )
    request_id = _request_id(request)
    result = await predictor.predict(body.cars, request_id)
    return BatchPredictResponse(
        request_id=request_id, model=result.model, timing=result.timing, predictions=result.predictions
    )
