"""POST /predict (one car) and POST /predict/batch (many cars, one backend call)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from server import binary_format
from server.deps import ApiKeyGuard, PredictorDep, SettingsDep
from server.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
)
from strategist.paths import PROJECT_ROOT

Body = TypeVar("Body", PredictRequest, BatchPredictRequest)

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


def _request_body(schema: str, batch: bool) -> dict[str, Any]:
    """OpenAPI requestBody: the body is read by the route itself (see _parse), so FastAPI does not
    derive it from a parameter; the schema is added to the components in server/main.py."""
    binary_doc = (
        "Small JSON header + raw little-endian float32 samples (docs/serving.md, server/binary_format.py)."
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "examples": _examples(batch),
                },
                binary_format.CONTENT_TYPE: {
                    "schema": {"type": "string", "format": "binary", "description": binary_doc}
                },
            },
        }
    }


def _body_errors(errors: Sequence[Mapping[str, Any]]) -> RequestValidationError:
    # Same shape as FastAPI's own body errors: loc starts with "body", message names field + reason.
    return RequestValidationError(
        [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    )


async def _parse(request: Request, json_model: type[Body], decode_binary: Callable[[bytes], Body]) -> Body:
    """Read the body once and parse + validate it in one pass: pydantic-core straight from the JSON
    bytes (no intermediate dict; ~0.5 ms less than FastAPI's json.loads + validate on a 69 KiB body,
    benchmarks/README.md parse_cost), or the binary float32 format. The middleware's body limit
    applies while the body is read (413)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if content_type == binary_format.CONTENT_TYPE:
            return decode_binary(body)
        return json_model.model_validate_json(body)
    except ValidationError as exc:
        raise _body_errors(exc.errors(include_url=False)) from None
    except binary_format.BinaryFormatError as exc:
        raise _body_errors(exc.errors) from None


def _json_response(model: BaseModel) -> Response:
    # Serialised once by pydantic-core; returning a Response makes FastAPI skip validating and
    # serialising the response model again (response_model stays in the decorator for the docs).
    return Response(model.model_dump_json(), media_type="application/json")


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_request_body("PredictRequest", batch=False),
)
async def predict(request: Request, predictor: PredictorDep) -> Response:
    """Next-lap pace corridor, bad-lap risk and tire health for one car, with its clean-air counterfactual."""
    body = await _parse(request, PredictRequest, binary_format.decode)
    request_id = _request_id(request)
    result = await predictor.predict([body], request_id)
    # model_construct: every field was built and validated by the pipeline already.
    answer = PredictResponse.model_construct(
        **dict(result.predictions[0]), request_id=request_id, model=result.model, timing=result.timing
    )
    return _json_response(answer)


@router.post(
    "/predict/batch",
    response_model=BatchPredictResponse,
    responses=_ERRORS,
    openapi_extra=_request_body("BatchPredictRequest", batch=True),
)
async def predict_batch(request: Request, predictor: PredictorDep, settings: SettingsDep) -> Response:
    """Many cars in one call: one backend request for all of them (and their clean-air rows)."""
    body = await _parse(request, BatchPredictRequest, binary_format.decode_batch)
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
    answer = BatchPredictResponse.model_construct(
        request_id=request_id, model=result.model, timing=result.timing, predictions=result.predictions
    )
    return _json_response(answer)


def request_schemas() -> dict[str, Any]:
    """JSON schemas of the request bodies (and the models they use), for the OpenAPI components."""
    _, schemas = models_json_schema(
        [(PredictRequest, "validation"), (BatchPredictRequest, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = schemas["$defs"]
    return defs
