"""Gateway over the in-process ONNX Runtime backend: answers vs the PyTorch model, batch,
counterfactual, validation (422), body limit (413), API key (401), deadline (503), metrics.

The Triton path (real local tritonserver) is covered by tests/server/test_triton_backend.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, corridor, engine_inputs, settings_for, simulated_request, torch_outputs

from server.backend import BackendUnavailable, ModelOutputs
from server.main import create_app
from server.onnx_backend import OnnxRuntimeBackend
from server.settings import GatewaySettings
from strategist import contract
from strategist.data.fuel import FuelModel
from strategist.data.tactical import tactical_tensor
from strategist.paths import PROJECT_ROOT

ATOL = 1e-4  # PyTorch FP32 vs ONNX Runtime FP32


# --- answers ---------------------------------------------------------------------------------


def test_predict_matches_pytorch_on_the_same_stack(client, tiny_model):
    model, _ = tiny_model
    request = simulated_request(1)
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()

    telemetry, tactical = engine_inputs(request)
    clean = tactical_tensor(None, None)
    pace, risk, tire = torch_outputs(model, np.stack([telemetry, telemetry]), np.stack([tactical, clean]))

    np.testing.assert_allclose(corridor(body["pace"]["delta_vs_lap_s"]), pace[0], atol=ATOL)
    np.testing.assert_allclose(corridor(body["clean_air"]["pace"]["delta_vs_lap_s"]), pace[1], atol=ATOL)
    np.testing.assert_allclose([body["risk"][c] for c in contract.RISK_CLASSES], risk[0], atol=ATOL)
    np.testing.assert_allclose(body["tire_health"], tire[0, 0], atol=ATOL)

    fuel = FuelModel.for_race(57)
    reference = fuel.correct(request["lap_time_s"], request["lap_number"])
    assert body["reference_fc_s"] == pytest.approx(reference)
    assert body["fuel_model_source"] == "race_laps"
    fc = corridor(body["pace"]["fuel_corrected"])
    np.testing.assert_allclose(fc, reference + corridor(body["pace"]["delta_vs_lap_s"]), atol=1e-9)
    # Lap L+1 carries fuel: expected measured time = fuel-corrected + mass at the start of L+1 x sensitivity.
    np.testing.assert_allclose(corridor(body["pace"]["expected_lap_time"]), fuel.uncorrect(fc, 21), atol=1e-9)
    assert body["traffic_cost_s"] == pytest.approx(
        body["pace"]["fuel_corrected"]["p50_s"] - body["clean_air"]["pace"]["fuel_corrected"]["p50_s"]
    )
    assert body["next_lap"] == 21 and body["car"] == "SIM1"
    assert body["model"] == {"name": contract.CPU_MODEL_NAME, "version": "1", "backend": "onnxruntime"}
    assert response.headers["x-request-id"] == body["request_id"]
    assert set(body["timing"]) == {"preprocess_ms", "predict_ms", "postprocess_ms"}


def test_clean_air_without_neighbours_costs_nothing(client):
    body = client.post("/predict", json=simulated_request(2, neighbours=False), headers=AUTH).json()
    assert body["clean_air"]["pace"] == body["pace"]
    assert body["traffic_cost_s"] == 0.0


def test_request_fuel_model_is_used(client):
    request = simulated_request(3) | {
        "fuel": {"start_mass_kg": 100.0, "consumption_kg_per_lap": 1.5, "sensitivity_s_per_kg": 0.03}
    }
    body = client.post("/predict", json=request, headers=AUTH).json()
    assert body["fuel_model_source"] == "request"
    assert body["reference_fc_s"] == pytest.approx(request["lap_time_s"] - (100.0 - 19 * 1.5) * 0.03)


class CountingBackend:
    """Wraps a real backend and records each call's batch size."""

    def __init__(self, inner: OnnxRuntimeBackend, delay_s: float = 0.0) -> None:
        self.inner, self.delay_s, self.calls = inner, delay_s, []
        self.kind, self.model_name = inner.kind, inner.model_name

    async def start(self) -> None:
        await self.inner.start()

    async def input_names(self) -> tuple[str, ...]:
        return await self.inner.input_names()

    async def infer(self, inputs: dict[str, np.ndarray]) -> ModelOutputs:
        self.calls.append(inputs[contract.INPUT_TELEMETRY].shape[0])
        await asyncio.sleep(self.delay_s)
        return await self.inner.infer(inputs)

    async def is_ready(self) -> bool:
        return await self.inner.is_ready()

    async def model_version(self) -> str:
        return await self.inner.model_version()

    async def close(self) -> None:
        await self.inner.close()


def test_batch_is_one_backend_call_and_matches_single_answers(tiny_model):
    backend = CountingBackend(OnnxRuntimeBackend(tiny_model[1], contract.CPU_MODEL_NAME))
    requests = [simulated_request(seed) for seed in (4, 5, 6)]
    with TestClient(create_app(settings_for(tiny_model[1]), backend=backend)) as c:
        batch = c.post("/predict/batch", json={"cars": requests}, headers=AUTH)
        assert batch.status_code == 200, batch.text
        assert backend.calls == [6]  # 3 cars x (as raced + clean air), one call
        singles = [c.post("/predict", json=r, headers=AUTH).json() for r in requests]
    predictions = batch.json()["predictions"]
    assert [p["car"] for p in predictions] == ["SIM4", "SIM5", "SIM6"]
    for one, single in zip(predictions, singles, strict=True):
        np.testing.assert_allclose(
            corridor(one["pace"]["fuel_corrected"]), corridor(single["pace"]["fuel_corrected"]), atol=ATOL
        )
        assert one["traffic_cost_s"] == pytest.approx(single["traffic_cost_s"], abs=ATOL)


def test_batch_over_the_limit_is_422(client):
    response = client.post(
        "/predict/batch", json={"cars": [simulated_request(7, raw=False)] * 5}, headers=AUTH
    )
    assert response.status_code == 422
    assert "at most 4 cars" in response.json()["detail"][0]["msg"]


# --- bad input -------------------------------------------------------------------------------


def _broken(change) -> dict:
    request = simulated_request(8)
    change(request)
    return request


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda r: r.update(laps=r["laps"][:4]), "laps", "exactly 5 laps"),
        (lambda r: r["laps"][1]["channels"]["Speed"].pop(), "laps.1.channels", "same number of samples"),
        (
            lambda r: r["laps"][0]["channels"]["RPM"].__setitem__(7, float("nan")),
            "laps.0.channels.RPM.7",
            "finite",
        ),
        (
            lambda r: r["laps"][2]["channels"]["Speed"].__setitem__(3, 900.0),
            "laps.2.channels",
            "Speed value 900 at sample 3",
        ),
        (lambda r: r["laps"][2]["distance_m"].__setitem__(50, 1.0), "laps.2", "distance_m must not decrease"),
        (lambda r: r["laps"][0]["channels"].pop("Brake"), "laps.0.channels", "missing ['Brake']"),
        (lambda r: r["laps"][1]["channels"]["Speed"].pop(), "laps.1", "same number"),
        (lambda r: r["laps"][3].update(time_s=[0.0] * 100), "laps.3", "exactly one of"),
        (
            lambda r: r["laps"][0]["channels"]["nGear"].__setitem__(5, 3.5),
            "laps.0.channels",
            "not a whole number",
        ),
        (lambda r: r.update(lap_time_s=5.0), "lap_time_s", "greater than or equal to 30"),
        (
            lambda r: r.update(ahead={"gap_s": -1.0, "pace_delta_s": 0.0}),
            "ahead.gap_s",
            "greater than or equal to 0",
        ),
        (lambda r: r.update(lap_number=57), "body", "no next lap"),
    ],
)
def test_bad_stack_is_422_naming_field_and_reason(client, change, field, reason):
    # json.dumps writes NaN as the bare literal that some clients do send; the gateway must reject it.
    body = json.dumps(_broken(change))
    response = client.post("/predict", content=body, headers=AUTH | {"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(field in ".".join(map(str, e["loc"])) and reason in e["msg"] for e in errors), errors


def test_too_short_raw_lap_is_named_by_the_data_engine(client):
    request = simulated_request(9)
    lap = request["laps"][0]
    lap["distance_m"] = [d / 60.0 for d in lap["distance_m"]]  # 90 m "lap": a timing artefact
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 422
    assert "distance_m spans 90 m" in response.text and "plausible lap 100..10000 m" in response.text


def test_lap_the_data_engine_rejects_is_422_naming_the_lap(client):
    request = simulated_request(15)
    lap = request["laps"][3]  # slot L-5
    n = len(lap["channels"]["Speed"])
    lap.pop("aligned")
    lap["time_s"] = [0.25 * i for i in range(n)]  # 25 s of samples...
    lap["channels"]["Speed"] = [0.0] * n  # ...standing still: the integrated lap has no length
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "data_error"
    assert "laps[3] (lap L-5)" in error["msg"] and "lap covers 0.0 m" in error["msg"]
    # The lap has no distance_m: what is wrong is its Speed (integrated over time_s), not a "Distance".
    assert error["loc"] == ["body", "laps", 3, "channels", "Speed"]


def test_body_over_the_limit_is_413(tiny_model):
    with TestClient(create_app(settings_for(tiny_model[1], max_body_bytes=20_000))) as c:
        big = json.dumps(simulated_request(10)).encode()
        assert (
            c.post("/predict", content=big, headers=AUTH | {"content-type": "application/json"}).status_code
            == 413
        )

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for start in range(0, len(big), 4096):
                yield big[start : start + 4096]

        response = c.post("/predict", content=chunks(), headers=AUTH | {"content-type": "application/json"})
        assert response.status_code == 413
        assert "STRATEGIST_MAX_BODY_BYTES" in response.json()["detail"]


# --- auth, health, metrics -------------------------------------------------------------------


def test_api_key_guards_predictions_only(client):
    request = simulated_request(11, raw=False)
    assert client.post("/predict", json=request).status_code == 401
    wrong = client.post("/predict", json=request, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.post("/predict/batch", json={"cars": [request]}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {
        "ready": True,
        "backend": "onnxruntime",
        "model": contract.CPU_MODEL_NAME,
    }


def test_no_key_configured_means_open(tiny_model):
    with TestClient(create_app(settings_for(tiny_model[1], api_key=None))) as c:
        assert c.post("/predict", json=simulated_request(12, raw=False)).status_code == 200


def test_backend_past_the_deadline_is_a_quick_503(tiny_model):
    backend = CountingBackend(
        OnnxRuntimeBackend(tiny_model[1], contract.CPU_MODEL_NAME, timeout_s=0.2), delay_s=5.0
    )

    class Deadline(CountingBackend):
        async def infer(self, inputs):
            try:
                return await asyncio.wait_for(super().infer(inputs), 0.2)
            except asyncio.TimeoutError as exc:
                raise BackendUnavailable("did not answer within 0.2 s") from exc

    deadline = Deadline(backend.inner, delay_s=5.0)
    with TestClient(create_app(settings_for(tiny_model[1]), backend=deadline)) as c:
        started = time.perf_counter()
        response = c.post("/predict", json=simulated_request(13, raw=False), headers=AUTH)
        assert response.status_code == 503
        assert time.perf_counter() - started < 2.0
        assert response.headers["retry-after"] == "1"
        assert "unavailable" in response.json()["detail"]


def test_metrics_count_requests_errors_and_stages(client):
    client.post("/predict", json=simulated_request(14, raw=False), headers=AUTH)
    client.post("/predict", json={"laps": []}, headers=AUTH)
    text = client.get("/metrics").text
    assert 'strategist_requests_total{endpoint="/predict",status="200"}' in text
    assert 'strategist_request_errors_total{endpoint="/predict",reason="validation"}' in text
    for stage in ("preprocess", "predict", "postprocess"):
        assert f'strategist_stage_seconds_count{{stage="{stage}"}}' in text


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STRATEGIST_API_KEY", "from-env")
    monkeypatch.setenv("STRATEGIST_TRITON_URL", "triton:8001")
    monkeypatch.setenv("STRATEGIST_REQUEST_TIMEOUT_S", "0.5")
    monkeypatch.setenv("STRATEGIST_LOG_LEVEL", "WARNING")
    settings = GatewaySettings()
    assert settings.log_level == "warning"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-env"
    assert (settings.triton_url, settings.request_timeout_s) == ("triton:8001", 0.5)
    monkeypatch.setenv("STRATEGIST_TRITON_URL", "http://triton:8001")
    with pytest.raises(ValueError, match="without a scheme"):
        GatewaySettings()


def test_openapi_shows_the_committed_example_and_it_is_accepted(client):
    example_file = PROJECT_ROOT / "examples" / "predict_request.json"
    example = json.loads(example_file.read_text())
    spec = client.get("/openapi.json").json()
    shown = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert shown["simulated_race"]["value"] == example
    response = client.post("/predict", json=example, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["fuel_model_source"] == "request"


def test_default_limits_admit_a_full_batch_of_raw_cars(tiny_model):
    settings = GatewaySettings(backend="onnxruntime", onnx_path=tiny_model[1])  # default limits
    example = json.loads((PROJECT_ROOT / "examples" / "predict_request.json").read_text())
    body = json.dumps({"cars": [example] * settings.max_batch_cars}).encode()
    assert len(body) <= settings.max_body_bytes
    with TestClient(create_app(settings)) as c:
        response = c.post("/predict/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == settings.max_batch_cars
