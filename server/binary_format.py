"""The binary request body `application/vnd.strategist.f32`: a small JSON header + raw float32 samples.

Parsing ~70 KiB of JSON numbers and validating them one by one is the largest part of the gateway's
own cost (benchmarks/README.md, parse_cost); the same samples as float32 are read with one
np.frombuffer per lap and checked with vectorised numpy. The checks are the JSON schema's own
(strategist.limits: `check_channel_samples`, `check_raw_index`, `check_aligned_length`), so both formats reject the same laps with the same
messages, and the decoded request goes through the same preprocess / Data Engine path.

Layout (all little-endian):

    uint32 H                  length of the JSON header in bytes
    H bytes                   UTF-8 JSON header
    float32 samples           lap after lap (car after car for a batch), no padding

Header of one car: every /predict JSON field except `laps` (car, lap_number, lap_time_s, fuel,
race_laps, ahead, behind; validated by the same schema), plus
`"laps": [{"index": "time_s" | "distance_m" | "aligned", "n": samples, "timing": {...}}, ...]` (5
entries, in the order L, L-1, L-2, L-5, L_base). `timing` is optional and is the JSON body's per-lap
timing object as it is (a few numbers, validated by the same schema), so a model that reads the
timing context is served from binary bodies too. A raw lap's block is 6 rows of n float32: the index, then the
channels in the order Speed, Throttle, Brake, RPM, nGear; an aligned lap's block is 5 rows of 100
(the channels only). A batch header is `{"cars": [<header of one car>, ...]}`.

Float32 holds a session time to ~0.5 ms at 3600 s and a distance to ~1 mm at 10 km: far finer
than the 100 alignment steps.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from server.lap_block import INDEX_KINDS, BodyError, Loc, lap_from_block
from server.schemas import BatchPredictRequest, LapTelemetry, PredictRequest, TimingRecord
from strategist import contract

CONTENT_TYPE = "application/vnd.strategist.f32"
_HEADER_LENGTH = struct.Struct("<I")
_F32 = np.dtype("<f4")


class BinaryFormatError(BodyError):
    """A binary body that cannot be decoded or fails validation (errors as BodyError's)."""


def _fail(loc: Loc, msg: str, kind: str = "value_error") -> BinaryFormatError:
    return BinaryFormatError([{"loc": loc, "msg": msg, "type": kind}])


# --- encode (client side) --------------------------------------------------------------------


def _lap_block(lap: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    channels = [lap["channels"][name] for name in contract.CHANNELS]
    if lap.get("aligned"):
        kind, rows = "aligned", channels
    else:
        kind = "time_s" if lap.get("time_s") is not None else "distance_m"
        rows = [lap[kind], *channels]
    block = np.asarray(rows, dtype=_F32)
    entry: dict[str, Any] = {"index": kind, "n": int(block.shape[1])}
    if lap.get("timing") is not None:
        entry["timing"] = dict(lap["timing"])
    return entry, block.tobytes()


def _car_header(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    header = {key: value for key, value in body.items() if key != "laps"}
    blocks = [_lap_block(lap) for lap in body["laps"]]
    header["laps"] = [entry for entry, _ in blocks]
    return header, [data for _, data in blocks]


def _pack(header: dict[str, Any], blocks: list[bytes]) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER_LENGTH.pack(len(head)) + head + b"".join(blocks)


def _as_body(request: PredictRequest | Mapping[str, Any]) -> Mapping[str, Any]:
    return request.model_dump(exclude_none=True) if isinstance(request, PredictRequest) else request


def encode(request: PredictRequest | Mapping[str, Any]) -> bytes:
    """A /predict body (the JSON-shaped dict or a PredictRequest) as `application/vnd.strategist.f32`."""
    header, blocks = _car_header(_as_body(request))
    return _pack(header, blocks)


def encode_batch(cars: Sequence[PredictRequest | Mapping[str, Any]]) -> bytes:
    """A /predict/batch body as `application/vnd.strategist.f32`."""
    headers, blocks = [], []
    for car in cars:
        header, car_blocks = _car_header(_as_body(car))
        headers.append(header)
        blocks.extend(car_blocks)
    return _pack({"cars": headers}, blocks)


# --- decode (gateway side) -------------------------------------------------------------------


def _read_header(data: bytes) -> tuple[Any, int]:
    if len(data) < _HEADER_LENGTH.size:
        raise _fail((), f"binary body is {len(data)} bytes, shorter than its 4-byte header length")
    (n_head,) = _HEADER_LENGTH.unpack_from(data)
    end = _HEADER_LENGTH.size + n_head
    if end > len(data):
        raise _fail((), f"header length says {n_head} bytes but only {len(data) - 4} follow")
    try:
        return json.loads(data[_HEADER_LENGTH.size : end]), end
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail((), f"header is not valid UTF-8 JSON: {exc}", "json_invalid") from exc
    except RecursionError:
        # A header nested ~1,000 levels deep exhausts the parser's stack: the client's fault, not a 500.
        raise _fail((), "header nests too deeply to be a request header", "json_invalid") from None


class _Reader:
    """Walks the float32 blocks after the header; errors name the lap they belong to."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def lap(self, entry: object, loc: Loc) -> LapTelemetry:
        if not isinstance(entry, dict) or entry.get("index") not in INDEX_KINDS:
            raise _fail(loc, f'lap entry must be {{"index": one of {list(INDEX_KINDS)}, "n": samples}}')
        n = entry.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _fail((*loc, "n"), f"n must be a positive whole number of samples, got {n!r}")
        kind = entry["index"]
        n_rows = len(contract.CHANNELS) + (0 if kind == "aligned" else 1)
        count = n_rows * n
        available = (len(self.data) - self.offset) // _F32.itemsize
        if count > available:
            raise _fail(loc, f"body truncated: this lap needs {count} float32 values, {available} are left")
        block = np.frombuffer(self.data, dtype=_F32, count=count, offset=self.offset).reshape(n_rows, n)
        self.offset += count * _F32.itemsize
        try:
            lap = lap_from_block(block.astype(np.float64), kind, loc)
        except BodyError as exc:
            raise BinaryFormatError(exc.errors) from None
        if entry.get("timing") is not None:
            lap.timing = _timing(entry["timing"], (*loc, "timing"))
        return lap

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise _fail((), f"{len(self.data) - self.offset} bytes left after the last lap's samples")


def _timing(value: object, loc: Loc) -> TimingRecord:
    """A lap entry's `timing`, with the JSON schema's own validation and messages."""
    try:
        return TimingRecord.model_validate(value)
    except ValidationError as exc:
        raise BinaryFormatError(
            [{"loc": (*loc, *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc


def _car(header: object, reader: _Reader, loc: Loc) -> PredictRequest:
    if not isinstance(header, dict):
        raise _fail(loc, "car header must be a JSON object")
    entries = header.get("laps")
    if not isinstance(entries, list):
        raise _fail((*loc, "laps"), "header needs `laps`: a list of {index, n}, one per lap")
    laps = [reader.lap(entry, (*loc, "laps", i)) for i, entry in enumerate(entries)]
    try:
        # Lap instances pass through as they are (pydantic does not revalidate instances); the header
        # fields, the lap count and the race-length check get the JSON schema's validation.
        return PredictRequest.model_validate({**header, "laps": laps})
    except ValidationError as exc:
        raise BinaryFormatError(
            [{"loc": (*loc, *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc


def too_many_cars(n_cars: int, max_cars: int) -> dict[str, Any]:
    """The 422 entry of a batch over the car limit (one message for both body formats)."""
    return {
        "loc": ("cars",),
        "msg": f"at most {max_cars} cars per call (STRATEGIST_MAX_BATCH_CARS), got {n_cars}",
        "type": "too_long",
    }


def decode(data: bytes) -> PredictRequest:
    """An `application/vnd.strategist.f32` /predict body -> the validated request (BinaryFormatError)."""
    header, offset = _read_header(data)
    reader = _Reader(data, offset)
    request = _car(header, reader, ())
    reader.finish()
    return request


def decode_batch(data: bytes, max_cars: int | None = None) -> BatchPredictRequest:
    """An `application/vnd.strategist.f32` /predict/batch body -> the validated batch. With max_cars,
    a header listing more cars is refused before any sample is read (server.decode.too_many_cars)."""
    header, offset = _read_header(data)
    if not isinstance(header, dict) or not isinstance(header.get("cars"), list) or not header["cars"]:
        raise _fail(("cars",), 'batch header must be {"cars": [<car header>, ...]} with at least one car')
    if max_cars is not None and len(header["cars"]) > max_cars:
        raise BinaryFormatError([too_many_cars(len(header["cars"]), max_cars)])
    reader = _Reader(data, offset)
    cars = [_car(car, reader, ("cars", i)) for i, car in enumerate(header["cars"])]
    reader.finish()
    return BatchPredictRequest.model_construct(cars=cars)
