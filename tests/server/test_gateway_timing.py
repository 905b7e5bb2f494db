"""The gateway serving a model that reads the timing context (three inputs): per-lap `timing` in the
request, the context built by the dataset builder's encoder, answers equal to PyTorch through the
in-process ONNX backend and through a real local Triton, and the 422s for missing or inconsistent
timing. The two-input model (the shipped design) accepts the timing and ignores it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers.context_models import THREE_INPUTS, context_checkpoint
from helpers.gateway import AUTH, corridor, engine_inputs, settings_for, simulated_request
from helpers.tiny import TINY_OVERRIDES as TINY

from export.onnx_export import export_onnx, run_torch
from server import binary_format
from server.main import create_app
from server.preprocess import preprocess
from server.schemas import TIMING_FIELDS, PredictRequest
from strategist import contract
from strategist.data.context import LapTiming, context_vector
from strategist.data.fuel import FuelModel
from strategist.data.tactical import tactical_tensor
from strategist.model import ModelConfig, build_model

ATOL = 1e-4  # PyTorch FP32 vs ONNX Runtime FP32
SLOT_LAPS = (20, 19, 18, 15, 12)  # L, L-1, L-2, L-5, L_base (the stint's first lap)


def timing_for(request: dict, *, sc_on: int | None = 18) -> list[dict]:
    """A plausible timing feed for `simulated_request`'s stack (lap L = 20, stint from lap 12)."""
    laps = []
    for number in SLOT_LAPS:
        time_s = request["lap_time_s"] if number == request["lap_number"] else 93.0 + 0.1 * (20 - number)
        laps.append(
            {
                "lap_number": number,
                "lap_time_s": None if number == 15 else time_s,  # one lap without a usable time
                "tyre_life": float(number - 12 + 3),  # a set with 3 laps on it, fitted at lap 12
                "stint": 2,
                "stint_lap": number - 12 + 1,
                "compound": "MEDIUM",
                "track_status": "14" if number == sc_on else "1",
                "pit_out": number == 12,
            }
        )
    return laps


def timed_request(seed: int, **changes) -> dict:
    request = simulated_request(seed, **changes)
    for lap, timing in zip(request["laps"], timing_for(request), strict=True):
        lap["timing"] = timing
    return request


def expected_context(request: dict) -> np.ndarray:
    """The context the dataset builder would encode for these laps (no gateway code involved)."""
    slots = [LapTiming(**{k: v for k, v in lap["timing"].items()}) for lap in request["laps"]]
    race_laps = request["race_laps"]
    return context_vector(slots, fuel=FuelModel.for_race(race_laps), race_laps=race_laps)


def torch_answer(model, request: dict) -> tuple[np.ndarray, ...]:
    """PyTorch on [as raced, clean air] with the same context on both rows."""
    telemetry, tactical = engine_inputs(request)
    context = expected_context(request)
    inputs = {
        contract.INPUT_TELEMETRY: np.stack([telemetry, telemetry]),
        contract.INPUT_TACTICAL: np.stack([tactical, tactical_tensor(None, None)]),
        contract.INPUT_CONTEXT: np.stack([context, context]),
    }
    return run_torch(model, inputs)


def assert_answer(body: dict, expected: tuple[np.ndarray, ...], row: int = 0) -> None:
    pace, risk, tire = expected
    np.testing.assert_allclose(corridor(body["pace"]["delta_vs_lap_s"]), pace[row], atol=ATOL)
    np.testing.assert_allclose([body["risk"][c] for c in contract.RISK_CLASSES], risk[row], atol=ATOL)
    np.testing.assert_allclose(body["tire_health"], tire[row, 0], atol=ATOL)


@pytest.fixture(scope="module")
def context_served(tmp_path_factory):
    model, checkpoint = context_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=5)
    onnx_path = export_onnx(
        model, tmp_path_factory.mktemp("repo") / contract.CPU_MODEL_NAME / "1" / "model.onnx"
    )
    return model, checkpoint, onnx_path


@pytest.fixture(scope="module")
def client(context_served):
    with TestClient(create_app(settings_for(context_served[2], max_batch_cars=4))) as c:
        yield c


# --- answers ---------------------------------------------------------------------------------


def test_context_model_answer_matches_pytorch(client, context_served):
    request = timed_request(1)
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = torch_answer(context_served[0], request)
    assert_answer(body, expected)
    np.testing.assert_allclose(
        corridor(body["clean_air"]["pace"]["delta_vs_lap_s"]), expected[0][1], atol=ATOL
    )


def test_the_timing_changes_the_answer(client):
    request = timed_request(2)
    other = timed_request(2)
    for lap, timing in zip(other["laps"], timing_for(other, sc_on=20), strict=True):
        lap["timing"] = timing  # a safety car on lap L instead of L-2
    answers = [client.post("/predict", json=r, headers=AUTH).json() for r in (request, other)]
    assert corridor(answers[0]["pace"]["delta_vs_lap_s"]) != pytest.approx(
        corridor(answers[1]["pace"]["delta_vs_lap_s"]), abs=1e-4
    )


def test_gateway_builds_the_encoders_context_for_both_rows():
    request = timed_request(3)
    batch = preprocess(
        [PredictRequest.model_validate(request)], default_race_laps=57, input_names=THREE_INPUTS
    )
    assert batch.context is not None and batch.context.shape == (2, contract.N_CONTEXT)
    np.testing.assert_array_equal(batch.context[0], expected_context(request))
    np.testing.assert_array_equal(batch.context[1], batch.context[0])  # clean air: only tactical changes
    two = preprocess(
        [PredictRequest.model_validate(request)], default_race_laps=57, input_names=THREE_INPUTS[:2]
    )
    assert two.context is None and set(two.model_inputs(THREE_INPUTS[:2])) == set(THREE_INPUTS[:2])


def test_batch_and_binary_bodies_carry_the_timing(client, context_served):
    requests = [timed_request(seed, neighbours=seed % 2 == 0) for seed in (4, 5)]
    batch = client.post("/predict/batch", json={"cars": requests}, headers=AUTH)
    assert batch.status_code == 200, batch.text
    binary = client.post(
        "/predict/batch",
        content=binary_format.encode_batch(requests),
        headers={**AUTH, "Content-Type": binary_format.CONTENT_TYPE},
    )
    assert binary.status_code == 200, binary.text
    for request, as_json, as_binary in zip(
        requests, batch.json()["predictions"], binary.json()["predictions"], strict=True
    ):
        expected = torch_answer(context_served[0], request)
        assert_answer(as_json, expected)
        # float32 samples in the binary body: the aligned laps differ by float rounding only.
        np.testing.assert_allclose(corridor(as_binary["pace"]["delta_vs_lap_s"]), expected[0][0], atol=1e-3)


# --- 422s ------------------------------------------------------------------------------------


def _errors(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_context_model_without_timing_is_422_naming_each_lap(client):
    request = timed_request(6)
    del request["laps"][1]["timing"], request["laps"][3]["timing"]
    errors = _errors(client.post("/predict", json=request, headers=AUTH))
    assert [e["loc"] for e in errors] == [["body", "laps", 1, "timing"], ["body", "laps", 3, "timing"]]
    assert "timing context" in errors[0]["msg"]
    assert all(field in errors[0]["msg"] for field in TIMING_FIELDS)
    batch = {"cars": [timed_request(7), simulated_request(8)]}
    errors = _errors(client.post("/predict/batch", json=batch, headers=AUTH))
    assert errors[0]["loc"] == ["body", "cars", 1, "laps", 0, "timing"] and len(errors) == 5
    binary = client.post(
        "/predict",
        content=binary_format.encode(simulated_request(9)),
        headers={**AUTH, "Content-Type": binary_format.CONTENT_TYPE},
    )
    assert _errors(binary)[0]["loc"] == ["body", "laps", 0, "timing"]


def _with_timing(change) -> dict:
    request = timed_request(10)
    change(request)
    return request


@pytest.mark.parametrize(
    ("change", "loc", "reason"),
    [
        (
            lambda r: r["laps"][0]["timing"].update(lap_number=19),
            ["body"],
            "laps.0.timing.lap_number 19 differs",
        ),
        (lambda r: r["laps"][0]["timing"].update(lap_time_s=99.0), ["body"], "laps.0.timing.lap_time_s 99"),
        (
            lambda r: r["laps"][2]["timing"].update(lap_number=21),
            ["body"],
            "laps.2.timing.lap_number 21 is after",
        ),
        (
            lambda r: r["laps"][1]["timing"].update(compound="SUPERSOFT"),
            ["body", "laps", 1, "timing", "compound"],
            "compound must be one of",
        ),
        (
            lambda r: r["laps"][1]["timing"].update(track_status="18"),
            ["body", "laps", 1, "timing", "track_status"],
            "pattern",
        ),
        (
            lambda r: r["laps"][1]["timing"].update(lap_time_s=12.0),
            ["body", "laps", 1, "timing", "lap_time_s"],
            "greater than or equal to 30",
        ),
        (
            lambda r: r["laps"][1]["timing"].update(tyre_life=-1),
            ["body", "laps", 1, "timing", "tyre_life"],
            "greater than or equal to 0",
        ),
        (
            lambda r: r["laps"][4]["timing"].pop("stint"),
            ["body", "laps", 4, "timing", "stint"],
            "Field required",
        ),
    ],
)
def test_inconsistent_timing_is_422_naming_field_and_reason(client, change, loc, reason):
    errors = _errors(client.post("/predict", json=_with_timing(change), headers=AUTH))
    assert errors[0]["loc"] == loc, errors
    assert reason in errors[0]["msg"], errors


def test_binary_timing_is_validated_like_json(client):
    request = _with_timing(lambda r: r["laps"][1]["timing"].update(compound="SUPERSOFT"))
    binary = client.post(
        "/predict",
        content=binary_format.encode(request),
        headers={**AUTH, "Content-Type": binary_format.CONTENT_TYPE},
    )
    errors = _errors(binary)
    assert errors[0]["loc"] == ["body", "laps", 1, "timing", "compound"]


# --- the two-input model ---------------------------------------------------------------------


def test_two_input_model_accepts_and_ignores_the_timing(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY)).eval()
    onnx_path = export_onnx(model, tmp_path / contract.CPU_MODEL_NAME / "1" / "model.onnx")
    with TestClient(create_app(settings_for(onnx_path))) as c:
        plain = simulated_request(11)
        timed = timed_request(11)
        answers = [c.post("/predict", json=r, headers=AUTH) for r in (plain, timed)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert answers[0].json()["pace"] == answers[1].json()["pace"]
