"""Fuzzing the gateway's HTTP surface: no generated request gets a 5xx.

Over /predict and /predict/batch, JSON and the binary float32 format (application/vnd.strategist.f32,
layout in server/binary_format.py's docstring), hypothesis generates:

- bodies from the gateway's own OpenAPI request schemas (hypothesis-jsonschema);
- valid requests with one to three changes anywhere in them (a key dropped, a value replaced by any
  JSON value, NaN / Infinity / huge numbers, arrays cut short or stretched);
- binary bodies built here from the documented layout, then changed: header fields, samples set to
  NaN / inf / huge float32 values, the length prefix, truncation, flipped bytes;
- arbitrary bytes, under the right and wrong content types.

Every answer must be < 500. The app runs in process (TestClient) on a tiny model and the in-process
ONNX Runtime backend, requests one at a time, with a long deadline: admission control's deliberate
503 is never reached, so a 503 here is a failure too. The requests go through HTTP only (no decoder
internals are called), and the encoder of the binary format is written out here from its documented
layout. Derandomized and bounded: the same 5,075 cases on every run.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, settings_for, simulated_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from server.main import create_app
from strategist import contract

BINARY = "application/vnd.strategist.f32"
CASES_PER_TEST = 1250  # 4 tests, + 75 from the OpenAPI schema: 5,075 requests in all
FUZZ = settings(
    max_examples=CASES_PER_TEST,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 3.4e38, -0.0, 1e-320, 2.0**63]
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    st.text(max_size=12),
)
ANY_JSON = st.recursive(
    LEAF,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10,
)
CONTENT_TYPES = {
    "json": ["application/json", "application/json; charset=utf-8", None, "text/plain"],
    "binary": [BINARY, "Application/Vnd.Strategist.F32; v=1", "application/octet-stream"],
}


@pytest.fixture(scope="module")
def fuzz_client(tiny_model):
    # A long deadline: nothing here may be shed, so any 5xx is a gateway fault.
    settings_ = settings_for(
        tiny_model[1], max_batch_cars=4, request_deadline_s=60.0, max_request_deadline_s=60.0
    )
    with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def seeds() -> list[dict[str, Any]]:
    """Valid requests: raw laps (distance-indexed) and aligned ones, with and without neighbours."""
    return [
        simulated_request(1, raw=False),
        simulated_request(2, raw=False, neighbours=False),
        simulated_request(3, raw=True),
    ]


@pytest.fixture(scope="module")
def openapi_bodies(fuzz_client) -> dict[str, st.SearchStrategy[Any]]:
    spec = fuzz_client.get("/openapi.json").json()
    components = spec["components"]
    strategies = {}
    for path in ("/predict", "/predict/batch"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        strategies[path] = from_schema({**body, "components": components})
    return strategies


# --- changes to a valid request ------------------------------------------------------------------


def _mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """`value` with one change somewhere inside it (the value itself is not modified)."""
    descend = depth < 8 and data.draw(st.integers(0, 4), label="descend") > 0
    if isinstance(value, dict) and value and descend:
        key = data.draw(st.sampled_from(sorted(value)), label="key")
        action = data.draw(st.sampled_from(["into", "into", "drop", "rename"]), label="dict action")
        changed = dict(value)
        if action == "drop":
            del changed[key]
        elif action == "rename":
            changed[data.draw(st.text(max_size=8), label="new key")] = changed.pop(key)
        else:
            changed[key] = _mutate(data, value[key], depth + 1)
        return changed
    if isinstance(value, list) and value and descend:
        action = data.draw(
            st.sampled_from(["into", "into", "cut", "stretch", "numbers"]), label="list action"
        )
        if action == "cut":
            return value[: data.draw(st.integers(0, len(value) - 1), label="keep")]
        if action == "stretch":
            return value + value[: data.draw(st.integers(1, len(value)), label="repeat")]
        if action == "numbers" and all(isinstance(v, (int, float)) for v in value):
            changed = list(value)
            for index in data.draw(st.lists(st.integers(0, len(value) - 1), max_size=5), label="at"):
                changed[index] = data.draw(st.sampled_from(SPECIAL_FLOATS) | LEAF, label="number")
            return changed
        index = data.draw(st.integers(0, len(value) - 1), label="index")
        changed = list(value)
        changed[index] = _mutate(data, value[index], depth + 1)
        return changed
    return data.draw(ANY_JSON, label="replacement")


def _changed(data: st.DataObject, value: Any) -> Any:
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        value = _mutate(data, value)
    return value


# --- the binary format, from its documented layout ------------------------------------------------


def _car_binary(car: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray]]:
    header = {key: value for key, value in car.items() if key != "laps"}
    entries, blocks = [], []
    for lap in car["laps"]:
        channels = [lap["channels"][name] for name in contract.CHANNELS]
        if lap.get("aligned"):
            kind, rows = "aligned", channels
        else:
            kind = "time_s" if lap.get("time_s") is not None else "distance_m"
            rows = [lap[kind], *channels]
        block = np.asarray(rows, dtype="<f4")
        entries.append({"index": kind, "n": int(block.shape[1])})
        blocks.append(block)
    return {**header, "laps": entries}, blocks


def _binary(header: Any, blocks: list[np.ndarray]) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<I", len(encoded)) + encoded + b"".join(b.astype("<f4").tobytes() for b in blocks)


def _binary_body(data: st.DataObject, cars: list[dict[str, Any]], batch: bool) -> bytes:
    headers, blocks = [], []
    for car in cars:
        header, car_blocks = _car_binary(car)
        headers.append(header)
        blocks.extend(car_blocks)
    header_value: Any = {"cars": headers} if batch else headers[0]
    action = data.draw(
        st.sampled_from(["valid", "header", "samples", "prefix", "truncate", "flip", "tail"]), label="binary"
    )
    if action == "header":
        header_value = _changed(data, header_value)
    if action == "samples":
        blocks = [b.copy() for b in blocks]
        for _ in range(data.draw(st.integers(1, 6), label="bad samples")):
            block = blocks[data.draw(st.integers(0, len(blocks) - 1), label="block")]
            row = data.draw(st.integers(0, block.shape[0] - 1), label="row")
            col = data.draw(st.integers(0, block.shape[1] - 1), label="col")
            with np.errstate(over="ignore"):
                block[row, col] = np.float32(data.draw(st.sampled_from(SPECIAL_FLOATS), label="f32"))
    body = _binary(header_value, blocks)
    if action == "prefix":
        prefix = data.draw(st.integers(0, 2**32 - 1) | st.integers(0, len(body)), label="length")
        body = struct.pack("<I", prefix) + body[4:]
    elif action == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1), label="cut at")]
    elif action == "flip":
        flipped = bytearray(body)
        for index in data.draw(st.lists(st.integers(0, len(body) - 1), min_size=1, max_size=8), label="at"):
            flipped[index] ^= data.draw(st.integers(1, 255), label="xor")
        body = bytes(flipped)
    elif action == "tail":
        body += data.draw(st.binary(min_size=1, max_size=64), label="tail")
    return body


# --- the tests --------------------------------------------------------------------------------


def _cars(data: st.DataObject, seeds: list[dict[str, Any]], batch: bool) -> list[dict[str, Any]]:
    count = data.draw(st.integers(1, 5), label="cars") if batch else 1  # 5 > max_batch_cars
    # No copies: _mutate copies what it changes, the binary encoder only reads.
    return [data.draw(st.sampled_from(seeds), label="seed") for _ in range(count)]


def _post(client: TestClient, path: str, body: bytes, content_type: str | None) -> int:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (
        path,
        content_type,
        response.status_code,
        response.text[:500],
        body[:300],
    )
    return response.status_code


def _run(fuzz, statuses: Counter[int]) -> None:
    fuzz()
    assert sum(statuses.values()) >= CASES_PER_TEST, statuses
    # Not vacuous: valid requests are answered, broken ones refused with a 4xx.
    assert statuses[200] > 0 and any(400 <= code < 500 for code in statuses), statuses


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_json_bodies_never_get_a_server_error(fuzz_client, seeds, path):
    statuses: Counter[int] = Counter()
    batch = path.endswith("batch")

    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["changed", "changed", "changed", "valid", "bytes"]), label="kind")
        if kind == "bytes":
            body = data.draw(st.binary(max_size=256), label="bytes")
        else:
            cars = _cars(data, seeds, batch)
            value: Any = {"cars": cars} if batch else cars[0]
            if kind == "changed":
                value = _changed(data, value)
            body = json.dumps(value).encode()  # NaN / Infinity written as such: not strict JSON
        content_type = data.draw(st.sampled_from(CONTENT_TYPES["json"]), label="content type")
        statuses[_post(fuzz_client, path, body, content_type if kind != "valid" else "application/json")] += 1

    _run(fuzz, statuses)


# hypothesis-jsonschema takes ~80 ms to draw a /predict body and ~320 ms a batch one (2-core box):
# fewer cases here, the changed valid requests above reach further anyway.
@pytest.mark.parametrize(("path", "cases"), [("/predict", 60), ("/predict/batch", 15)])
def test_bodies_from_the_openapi_schema_never_get_a_server_error(fuzz_client, openapi_bodies, path, cases):
    statuses: Counter[int] = Counter()

    @settings(FUZZ, max_examples=cases)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        body = json.dumps(data.draw(openapi_bodies[path], label="from schema")).encode()
        statuses[_post(fuzz_client, path, body, "application/json")] += 1

    fuzz()
    assert sum(statuses.values()) >= cases, statuses


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_binary_bodies_never_get_a_server_error(fuzz_client, seeds, path):
    statuses: Counter[int] = Counter()
    batch = path.endswith("batch")

    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9), label="random bytes") == 0:
            body = data.draw(st.binary(max_size=512), label="bytes")
        else:
            body = _binary_body(data, _cars(data, seeds, batch), batch)
        content_type = data.draw(st.sampled_from(CONTENT_TYPES["binary"]), label="content type")
        statuses[_post(fuzz_client, path, body, content_type)] += 1

    _run(fuzz, statuses)
