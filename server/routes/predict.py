"""POST /predict (one car) and POST /predict/batch (many cars, one backend call)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from server import binary_format, decode
from server.deps import ApiKeyGuard, PredictorDep, SettingsDep
from server.lap_block import BodyError
from server.pipeline import Predictor
from server.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
)
from server.settings import GatewaySettings
from strategist.paths import PROJECT_ROOT

T = TypeVar("T")

THREAD_DECODE_BYTES = 512 * 1024  # ~7 cars of raw telemetry; one car (~70 KiB) decodes inline in ~0.3 ms

EXAMPLE_REQUEST_FILE = PROJECT_ROOT / "examples" / "predict_request.json"

router = APIRouter(tags=["predict"], dependencies=[ApiKeyGuard])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {"model": ErrorResponse, "description": "Body larger than STRATEGIST_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": f"Content-Type not one of {list(decode.CONTENT_TYPES)}."},
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
    """OpenAPI requestBody: the body is read by the route itself (server/decode.py), so FastAPI does not
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


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "")


async def _decoded(body: bytes, decode: Callable[[], T]) -> T:
    """Run a decoder; bodies past THREAD_DECODE_BYTES are decoded on a thread, so one large batch does
    not hold the event loop for the tens of milliseconds its samples take."""
    try:
        if len(body) > THREAD_DECODE_BYTES:
            return await asyncio.to_thread(decode)
        return decode()
    except BodyError as exc:
        raise _body_errors(exc.errors) from None


def _json_response(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


async def predict_body(
    body: bytes, content_type: str, predictor: Predictor, settings: GatewaySettings, request_id: str
) -> bytes:
    """A /predict body -> the response JSON (what the route and the lean path, server/fast_path.py,
    both answer). Raises what the app's exception handlers turn into 415/422/502/503."""
    decoder = settings.request_decoder
    car = await _decoded(body, lambda: decode.decode_predict(body, content_type, decoder=decoder))
    result = await predictor.predict([car], request_id)
    # model_construct: every field was built and validated by the pipeline already; serialised once
    # by pydantic-core, so FastAPI neither validates nor serialises the response model again
    # (response_model stays in the decorator for the docs).
    answer = PredictResponse.model_construct(
        **dict(result.predictions[0]), request_id=request_id, model=result.model, timing=result.timing
    )
    return _json_response(answer)


async def predict_batch_body(
    body: bytes, content_type: str, predictor: Predictor, settings: GatewaySettings, request_id: str
) -> bytes:
    """A /predict/batch body -> the response JSON (see predict_body)."""
    cars = await _decoded(
        body,
        lambda: decode.decode_batch(
            body, content_type, max_cars=settings.max_batch_cars, decoder=settings.request_decoder
        ),
    )
    result = await predictor.predict(cars, request_id)
    answer = BatchPredictResponse.model_construct(
        request_id=request_id, model=result.model, timing=result.timing, predictions=result.predictions
    )
    return _json_response(answer)


BODY_HANDLERS = {"/predict": predict_body, "/predict/batch": predict_batch_body}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_request_body("PredictRequest", batch=False),
)
async def predict(request: Request, predictor: PredictorDep, settings: SettingsDep) -> Response:
    """Next-lap pace corridor, bad-lap risk and tire health for one car, with its clean-air counterfactual."""
    body = await request.body()  # the middleware's body limit applies while it is read (413)
    answer = await predict_body(body, _content_type(request), predictor, settings, _request_id(request))
    return Response(answer, media_type="application/json")


@router.post(
    "/predict/batch",
    response_model=BatchPredictResponse,
    responses=_ERRORS,
    openapi_extra=_request_body("BatchPredictRequest", batch=True),
)
async def predict_batch(request: Request, predictor: PredictorDep, settings: SettingsDep) -> Response:
    """Many cars in one call: one backend request for all of them (and their clean-air rows)."""
    body = await request.body()
    answer = await predict_batch_body(body, _content_type(request), predictor, settings, _request_id(request))
    return Response(answer, media_type="application/json")


def request_schemas() -> dict[str, Any]:
    """JSON schemas of the request bodies (and the models they use), for the OpenAPI components."""
    _, schemas = models_json_schema(
        [(PredictRequest, "validation"), (BatchPredictRequest, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = schemas["$defs"]
    return defs
