"""Request bodies -> validated requests: content type, car count before parsing, then one fast decode.

    requests = decode_predict(body, content_type, decoder="fast")              # [PredictRequest]
    requests = decode_batch(body, content_type, max_cars=64, decoder="fast")   # up to 64

- Content type: `application/json` or the binary `application/vnd.strategist.f32`
  (server/binary_format.py); anything else is a 415 naming both.
- Batch size first: a batch body is scanned into one raw slice per car (msgspec.Raw: no value is
  built) and refused with the 422 of too_many_cars before any car is parsed, so `{"cars": [{}] *
  10000}` or 880 cars in 7.9 MB cost a scan, not a parse.
- Fast JSON path ("fast"): msgspec decodes each car into the typed structs below (numbers stay numbers:
  a string or a boolean where a number belongs fails here), every lap's lists become one float64
  block [6, n] and get the schema's rules with numpy (server.lap_block); the few header fields go
  through the pydantic model (Python mode, strict fields), whose validators check the lap count,
  the race length and the timing.
- Errors: when the fast path finds anything wrong, the body is validated again by pydantic
  (`model_validate_json`), and the 422 lists pydantic's errors: the messages clients and tests know
  are written in one place (server/schemas.py), and the fast path never has to word them. A body the
  fast path refuses but pydantic accepts is served from pydantic's result, so the fast path can only
  ever be stricter in speed, never in what it accepts.
- "pydantic": the former path (model_validate_json on every body), kept reachable by
  STRATEGIST_REQUEST_DECODER to measure against.

The 422 lists at most MAX_REPORTED_ERRORS entries and says how many more there were (cap_errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np
from pydantic import ValidationError

from server import binary_format
from server.lap_block import BodyError, Loc, lap_from_block
from server.schemas import BatchPredictRequest, LapTelemetry, PredictRequest, TimingRecord
from strategist import contract

JSON_CONTENT_TYPE = "application/json"
CONTENT_TYPES = (JSON_CONTENT_TYPE, binary_format.CONTENT_TYPE)
MAX_REPORTED_ERRORS = 20

Decoder = Literal["fast", "pydantic"]


class UnsupportedMediaType(Exception):
    """The body's Content-Type is neither JSON nor the binary format: the gateway answers 415."""

    def __init__(self, content_type: str) -> None:
        shown = content_type or "none"
        super().__init__(f"Content-Type {shown!r} is not accepted; send one of {list(CONTENT_TYPES)}")


class _Lap(msgspec.Struct, forbid_unknown_fields=True):
    """A lap as msgspec reads it: sample lists typed (float: a JSON number, never a string or a bool),
    `timing` left to TimingRecord's own validation."""

    channels: dict[str, list[float]]
    distance_m: list[float] | None = None
    time_s: list[float] | None = None
    aligned: bool = False
    timing: dict[str, Any] | None = None


# Every /predict field but `laps` is left to the pydantic model (few values, its own messages); the
# struct takes their names from the model, so a new request field needs no second declaration here.
HEADER_FIELDS = tuple(name for name in PredictRequest.model_fields if name != "laps")
_Car = msgspec.defstruct(
    "_Car",
    [("laps", list[_Lap]), *((name, Any, msgspec.UNSET) for name in HEADER_FIELDS)],
    forbid_unknown_fields=True,
)


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    cars: list[msgspec.Raw]


_car_decoder = msgspec.json.Decoder(_Car)
_batch_decoder = msgspec.json.Decoder(_Batch)


class _Refused(Exception):
    """The fast path found something wrong; pydantic words the 422 (see the module docstring)."""


def media_type(content_type: str) -> str:
    """'application/json; charset=utf-8' -> 'application/json' (415 for anything not accepted)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise UnsupportedMediaType(media)
    return media


def cap_errors(errors: Sequence[Mapping[str, Any]], limit: int = MAX_REPORTED_ERRORS) -> list[dict[str, Any]]:
    """At most `limit` entries, plus one that says how many were left out (a body of 10,000 bad samples
    must not be answered with 10,000 errors)."""
    shown = [dict(e) for e in errors[:limit]]
    if len(errors) > limit:
        shown.append(
            {
                "loc": ["body"],
                "msg": f"{len(errors) - limit} more error(s) not listed (at most {limit} are)",
                "type": "too_many_errors",
            }
        )
    return shown


def _at(loc: Loc, errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"loc": (*loc, *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def _fast_lap(lap: _Lap, loc: Loc) -> LapTelemetry:
    channels = lap.channels
    if len(channels) != len(contract.CHANNELS) or any(name not in channels for name in contract.CHANNELS):
        raise _Refused
    forms = (lap.distance_m is not None) + (lap.time_s is not None) + lap.aligned
    if forms != 1:
        raise _Refused
    kind = "aligned" if lap.aligned else ("distance_m" if lap.distance_m is not None else "time_s")
    rows = [channels[name] for name in contract.CHANNELS]
    if kind != "aligned":
        rows.insert(0, lap.distance_m if kind == "distance_m" else lap.time_s)  # type: ignore[arg-type]
    n = len(rows[0])
    if n == 0 or any(len(row) != n for row in rows):
        raise _Refused
    try:
        result = lap_from_block(np.array(rows, dtype=np.float64), kind, loc)  # [6, n] or [5, 100]
    except BodyError:
        raise _Refused from None
    if lap.timing is not None:
        try:
            result.timing = TimingRecord.model_validate(lap.timing)
        except ValidationError:
            raise _Refused from None
    return result


def _fast_car(car: Any) -> PredictRequest:
    laps = [_fast_lap(lap, ("laps", i)) for i, lap in enumerate(car.laps)]
    header = {name: value for name in HEADER_FIELDS if (value := getattr(car, name)) is not msgspec.UNSET}
    try:
        # Lap instances pass through as they are (pydantic does not revalidate instances).
        return PredictRequest.model_validate({**header, "laps": laps})
    except ValidationError:
        raise _Refused from None


def _fast_json_car(raw: bytes | msgspec.Raw) -> PredictRequest:
    try:
        car = _car_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise _Refused from None
    return _fast_car(car)


def _pydantic_car(raw: bytes | msgspec.Raw, loc: Loc) -> PredictRequest:
    try:
        return PredictRequest.model_validate_json(bytes(raw))
    except ValidationError as exc:
        raise BodyError(_at(loc, exc.errors(include_url=False))) from None


def _json_car(raw: bytes | msgspec.Raw, loc: Loc, decoder: Decoder) -> PredictRequest:
    if decoder == "fast":
        try:
            return _fast_json_car(raw)
        except _Refused:
            pass
    return _pydantic_car(raw, loc)


def decode_predict(body: bytes, content_type: str, *, decoder: Decoder = "fast") -> PredictRequest:
    """A /predict body -> the validated request. Raises UnsupportedMediaType or BodyError."""
    if media_type(content_type) == binary_format.CONTENT_TYPE:
        return binary_format.decode(body)
    return _json_car(body, (), decoder)


def _pydantic_batch_errors(body: bytes, cause: Exception) -> BodyError:
    """What pydantic says of a batch body the fast scan could not split (malformed, not
    {"cars": [...]}, or no car): it stops at the first structural fault."""
    try:
        BatchPredictRequest.model_validate_json(body)
    except ValidationError as exc:
        return BodyError([dict(e) for e in exc.errors(include_url=False)])
    return BodyError([{"loc": (), "msg": f"body could not be read: {cause}", "type": "json_invalid"}])


def _split_batch(body: bytes, max_cars: int) -> list[msgspec.Raw]:
    """{"cars": [...]} -> one raw slice per car, refused on the count before any car is parsed."""
    try:
        cars = _batch_decoder.decode(body).cars
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _pydantic_batch_errors(body, exc) from None
    if len(cars) > max_cars:
        raise BodyError([binary_format.too_many_cars(len(cars), max_cars)])
    if not cars:
        raise _pydantic_batch_errors(body, ValueError("no car"))
    return cars


def decode_batch(
    body: bytes, content_type: str, *, max_cars: int, decoder: Decoder = "fast"
) -> list[PredictRequest]:
    """A /predict/batch body -> the validated cars (at most max_cars). Raises UnsupportedMediaType or
    BodyError (every car's errors, located at cars.<i>)."""
    if media_type(content_type) == binary_format.CONTENT_TYPE:
        return binary_format.decode_batch(body, max_cars=max_cars).cars
    cars, errors = [], []
    for index, raw in enumerate(_split_batch(body, max_cars)):
        try:
            cars.append(_json_car(raw, ("cars", index), decoder))
        except BodyError as exc:
            errors.extend(exc.errors)
    if errors:
        raise BodyError(errors)
    return cars
