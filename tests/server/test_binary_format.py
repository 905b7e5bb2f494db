"""The binary request body (application/vnd.strategist.f32): same answers as JSON, 422 naming what is
wrong for truncated or garbled bodies and bad samples, and the body-size limit."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, settings_for, simulated_request

from server import binary_format
from server.main import create_app

BINARY = AUTH | {"content-type": binary_format.CONTENT_TYPE}


def float32_values(body: dict) -> dict:
    """The body with every sample rounded to float32, as the binary format carries it."""
    for lap in body["laps"]:
        for key in ("time_s", "distance_m"):
            if key in lap:
                lap[key] = np.asarray(lap[key], dtype=np.float32).astype(float).tolist()
        lap["channels"] = {
            k: np.asarray(v, dtype=np.float32).astype(float).tolist() for k, v in lap["channels"].items()
        }
    return body


def _answer(response) -> dict:
    assert response.status_code == 200, response.text
    answer = response.json()
    for key in ("request_id", "timing"):
        answer.pop(key)
    return answer


def test_binary_and_json_give_identical_answers(client):
    body = float32_values(simulated_request(3))  # raw laps by distance and aligned laps
    from_json = _answer(client.post("/predict", json=body, headers=AUTH))
    from_binary = _answer(client.post("/predict", content=binary_format.encode(body), headers=BINARY))
    assert from_binary == from_json


def test_binary_batch_matches_json_batch(client):
    cars = [float32_values(simulated_request(seed)) for seed in (4, 5)]
    from_json = _answer(client.post("/predict/batch", json={"cars": cars}, headers=AUTH))
    response = client.post("/predict/batch", content=binary_format.encode_batch(cars), headers=BINARY)
    assert _answer(response) == from_json


def test_decode_round_trips_a_time_indexed_lap():
    body = simulated_request(6)
    lap = body["laps"][0]
    n = len(lap["distance_m"])
    lap["time_s"] = [0.25 * i for i in range(n)]
    del lap["distance_m"]
    decoded = binary_format.decode(binary_format.encode(body))
    np.testing.assert_allclose(decoded.laps[0].time_s, lap["time_s"], rtol=1e-6)
    assert decoded.lap_number == body["lap_number"]
    assert decoded.ahead is not None and decoded.ahead.gap_s == body["ahead"]["gap_s"]


def _errors(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def _has(errors: list[dict], loc: str, reason: str) -> bool:
    return any(loc in ".".join(map(str, e["loc"])) and reason in e["msg"] for e in errors)


def test_truncated_binary_is_422_naming_the_lap(client):
    data = binary_format.encode(simulated_request(7))
    errors = _errors(client.post("/predict", content=data[:-400], headers=BINARY))
    assert _has(errors, "body.laps.4", "body truncated"), errors


def test_garbled_binary_is_422(client):
    for data, reason in [
        (b"\x01\x00", "shorter than its 4-byte header length"),
        (struct.pack("<I", 1000) + b"{}", "header length says 1000 bytes"),
        (struct.pack("<I", 3) + b"{x]", "not valid UTF-8 JSON"),
        (binary_format.encode(simulated_request(7)) + b"\x00" * 8, "8 bytes left after"),
    ]:
        errors = _errors(client.post("/predict", content=data, headers=BINARY))
        assert any(reason in e["msg"] for e in errors), (reason, errors)


def test_binary_samples_get_the_json_messages(client):
    body = simulated_request(8)
    body["laps"][2]["channels"]["Speed"][3] = 900.0
    errors = _errors(client.post("/predict", content=binary_format.encode(body), headers=BINARY))
    assert _has(errors, "body.laps.2.channels", "Speed value 900 at sample 3"), errors

    body = simulated_request(8)
    body["laps"][0]["channels"]["RPM"][7] = float("nan")
    errors = _errors(client.post("/predict", content=binary_format.encode(body), headers=BINARY))
    assert _has(errors, "body.laps.0.channels.RPM.7", "finite"), errors

    body = simulated_request(8)
    body["laps"][2]["distance_m"][50] = 1.0
    errors = _errors(client.post("/predict", content=binary_format.encode(body), headers=BINARY))
    assert _has(errors, "body.laps.2", "distance_m must not decrease"), errors

    body = simulated_request(8)
    body["lap_time_s"] = 5.0
    errors = _errors(client.post("/predict", content=binary_format.encode(body), headers=BINARY))
    assert _has(errors, "body.lap_time_s", "greater than or equal to 30"), errors


def test_binary_body_over_the_limit_is_413(tiny_model):
    data = binary_format.encode(simulated_request(10))
    with TestClient(create_app(settings_for(tiny_model[1], max_body_bytes=len(data) - 1))) as c:
        assert c.post("/predict", content=data, headers=BINARY).status_code == 413


def test_openapi_documents_both_body_formats(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", binary_format.CONTENT_TYPE}
    schemas = spec["components"]["schemas"]
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec))
    assert "LapTelemetry" in refs and all(ref in schemas for ref in refs)
