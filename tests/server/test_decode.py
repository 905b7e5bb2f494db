"""Request decoding (server/decode.py): the fast decoder answers and refuses exactly like pydantic, numbers
are strict, the content type is checked (415), a batch is counted before it is parsed, 422 lists are
capped, deep nesting is a 422, the optional counterfactual, and the OpenAPI document states the rules."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, corridor, settings_for, simulated_request

from server import binary_format, decode
from server.main import create_app
from server.onnx_backend import OnnxRuntimeBackend
from strategist import contract, limits

JSON = AUTH | {"content-type": "application/json"}
BINARY = AUTH | {"content-type": binary_format.CONTENT_TYPE}


@pytest.fixture(scope="module")
def pydantic_client(tiny_model):
    settings = settings_for(tiny_model[1], max_batch_cars=4, request_decoder="pydantic")
    with TestClient(create_app(settings)) as c:
        yield c


def _post(client, body: dict, path: str = "/predict"):
    return client.post(path, content=json.dumps(body), headers=JSON)


def _without_ids(response) -> dict:
    assert response.status_code == 200, response.text
    answer = response.json()
    for key in ("request_id", "timing"):
        answer.pop(key)
    return answer


def test_fast_and_pydantic_decoders_give_the_same_answers(client, pydantic_client):
    for seed in (1, 2):
        body = simulated_request(seed)
        assert _without_ids(_post(client, body)) == _without_ids(_post(pydantic_client, body))
    cars = {"cars": [simulated_request(3), simulated_request(4, raw=False)]}
    assert _without_ids(_post(client, cars, "/predict/batch")) == _without_ids(
        _post(pydantic_client, cars, "/predict/batch")
    )


def _set(path: tuple, value):
    def change(body: dict) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


STRICT_CASES = [
    (_set(("lap_time_s",), "104.808"), "lap_time_s"),
    (_set(("lap_time_s",), True), "lap_time_s"),
    (_set(("lap_number",), "20"), "lap_number"),
    (_set(("laps", 0, "channels", "Speed", 3), "104.808"), "laps.0.channels.Speed.3"),
    (_set(("laps", 1, "channels", "Brake", 0), True), "laps.1.channels.Brake.0"),
    (_set(("laps", 0, "distance_m", 2), "12.5"), "laps.0.distance_m.2"),
    (_set(("ahead", "gap_s"), False), "ahead.gap_s"),
    (_set(("laps", 1, "aligned"), 1), "laps.1.aligned"),
]


@pytest.mark.parametrize(("change", "loc"), STRICT_CASES)
def test_strings_and_booleans_are_not_numbers(client, pydantic_client, change, loc):
    body = simulated_request(5)
    change(body)
    fast, slow = _post(client, body), _post(pydantic_client, body)
    assert fast.status_code == 422 and slow.status_code == 422, (fast.text, slow.text)
    assert fast.json()["detail"] == slow.json()["detail"]
    assert any(".".join(map(str, e["loc"])) == f"body.{loc}" for e in fast.json()["detail"]), fast.text


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["laps"][2]["channels"]["Speed"].__setitem__(3, 900.0),
        lambda r: r["laps"][0]["channels"].pop("Brake"),
        lambda r: r["laps"][1]["channels"]["Speed"].pop(),
        lambda r: r["laps"][3].update(time_s=[0.0] * 100),
        lambda r: r.update(laps=r["laps"][:4]),
        lambda r: r.update(lap_number=57),
        lambda r: r.update(unknown_field=1),
        lambda r: r["laps"][0]["channels"]["RPM"].__setitem__(7, float("nan")),
        lambda r: r["laps"][0]["channels"]["RPM"].__setitem__(7, 1e999),  # json.dumps: Infinity
    ],
)
def test_fast_decoder_refuses_with_pydantics_words(client, pydantic_client, change):
    body = simulated_request(6)
    change(body)
    fast, slow = _post(client, body), _post(pydantic_client, body)
    assert fast.status_code == 422, fast.text
    assert fast.json()["detail"] == slow.json()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_in_another_content_type_is_415(client, content_type):
    body = json.dumps(simulated_request(7, raw=False))
    headers = AUTH | ({"content-type": content_type} if content_type else {})
    for path in ("/predict", "/predict/batch"):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 415, response.text
        assert "application/json" in response.json()["detail"]
        assert binary_format.CONTENT_TYPE in response.json()["detail"]
    ok = client.post(
        "/predict", content=body, headers=AUTH | {"content-type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200, ok.text


def test_batch_over_the_limit_is_refused_before_any_car_is_parsed(client, monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("a car was parsed")

    monkeypatch.setattr(decode, "_json_car", no_parse)
    response = client.post("/predict/batch", content=json.dumps({"cars": [{}] * 10_000}), headers=JSON)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (
        error["loc"] == ["body", "cars"] and "at most 4 cars" in error["msg"] and "got 10000" in error["msg"]
    )

    header = json.dumps({"cars": [{}] * 10_000}).encode()
    binary = struct.pack("<I", len(header)) + header
    response = client.post("/predict/batch", content=binary, headers=BINARY)
    assert response.status_code == 422, response.text
    assert "at most 4 cars" in response.json()["detail"][0]["msg"]


def test_422_lists_at_most_the_cap_and_says_how_many_more(client):
    body = simulated_request(8)
    speed = body["laps"][0]["channels"]["Speed"]
    body["laps"][0]["channels"]["Speed"] = [str(v) for v in speed]  # every sample a string
    response = _post(client, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == decode.MAX_REPORTED_ERRORS + 1
    more = len(speed) - decode.MAX_REPORTED_ERRORS
    assert detail[-1]["type"] == "too_many_errors" and f"{more} more error(s)" in detail[-1]["msg"]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_deeply_nested_bodies_are_422_not_500(client, path):
    nested = b"[" * 100_000 + b"]" * 100_000
    binary = struct.pack("<I", len(nested)) + nested
    response = client.post(path, content=binary, headers=BINARY)
    assert response.status_code == 422, response.text
    assert "nests too deeply" in response.json()["detail"][0]["msg"]
    deep_json = b'{"cars": ' + nested + b"}" if path.endswith("batch") else b'{"laps": ' + nested + b"}"
    assert client.post(path, content=deep_json, headers=JSON).status_code == 422


def test_no_counterfactual_sends_one_row_and_answers_without_clean_air(tiny_model):
    rows: list[int] = []

    class Recording(OnnxRuntimeBackend):
        async def infer(self, inputs):
            rows.append(int(inputs[contract.INPUT_TELEMETRY].shape[0]))
            return await super().infer(inputs)

    backend = Recording(tiny_model[1], contract.CPU_MODEL_NAME)
    with TestClient(create_app(settings_for(tiny_model[1]), backend=backend)) as c:
        body = simulated_request(9)
        both = c.post("/predict", json=body, headers=AUTH).json()
        alone = c.post("/predict", json=body | {"counterfactual": False}, headers=AUTH).json()
        cars = [body | {"counterfactual": False}, simulated_request(10), body | {"counterfactual": False}]
        batch = c.post("/predict/batch", json={"cars": cars}, headers=AUTH).json()["predictions"]
        strict = c.post("/predict", json=body | {"counterfactual": "false"}, headers=AUTH)
    assert rows == [2, 1, 4]  # 2 rows by default, 1 without, 3 cars + 1 clean-air row
    assert alone["clean_air"] is None and alone["traffic_cost_s"] is None
    np.testing.assert_allclose(
        corridor(alone["pace"]["fuel_corrected"]), corridor(both["pace"]["fuel_corrected"])
    )
    assert [p["clean_air"] is None for p in batch] == [True, False, True]
    np.testing.assert_allclose(
        corridor(batch[2]["pace"]["fuel_corrected"]), corridor(both["pace"]["fuel_corrected"])
    )
    assert strict.status_code == 422


def test_openapi_states_the_rules(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    laps = schemas["PredictRequest"]["properties"]["laps"]
    assert laps["minItems"] == laps["maxItems"] == contract.N_LAP_CONTEXT
    assert schemas["BatchPredictRequest"]["properties"]["cars"]["maxItems"] == limits.MAX_BATCH_CARS
    channels = schemas["LapTelemetry"]["properties"]["channels"]
    assert channels["required"] == list(contract.CHANNELS) and channels["additionalProperties"] is False
    for name, (low, high) in limits.CHANNEL_LIMITS.items():
        items = channels["properties"][name]["items"]
        assert (items["minimum"], items["maximum"]) == (low, high)
    timing = schemas["TimingRecord"]["properties"]
    assert {"lap_number", "tyre_life", "stint", "stint_lap", "compound", "track_status"} <= set(timing)
    assert schemas["PredictRequest"]["properties"]["counterfactual"]["default"] is True


def test_fast_decoder_checks_each_lap_index_once(monkeypatch):
    """lap_block checks a lap's index; PredictRequest's validation (which calls the lap's "after"
    validator on each instance) does not check it a second time."""
    from server import schemas
    from strategist.paths import PROJECT_ROOT

    calls = []
    real = limits.check_raw_index
    monkeypatch.setattr(limits, "check_raw_index", lambda *a: calls.append(a[0]) or real(*a))
    body = (PROJECT_ROOT / "examples" / "predict_request.json").read_bytes()
    request = decode.decode_predict(body, "application/json")
    assert len(calls) == contract.N_LAP_CONTEXT
    calls.clear()  # a lap pydantic validated is checked by its validator, as before
    schemas.PredictRequest.model_validate_json(body)
    assert len(calls) == contract.N_LAP_CONTEXT and len(request.laps) == contract.N_LAP_CONTEXT
