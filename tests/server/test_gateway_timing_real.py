"""A real race stack (/work/shared/data, skipped when absent) sent as JSON with its timing: the gateway's
inputs equal the dataset builder's row for that (driver, lap), context included, and a three-input
model answers as PyTorch does on that row, through the in-process ONNX backend and through a real
local Triton (Python backend + ONNX Runtime; skipped where tritonserver cannot run)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.context_models import THREE_INPUTS, context_checkpoint
from helpers.gateway import AUTH, corridor, settings_for
from helpers.skips import skip_without_triton

from export.onnx_export import run_torch
from export.repository import build_cpu_repository
from export.triton_config import ServingSettings
from server.main import create_app
from server.preprocess import preprocess
from server.schemas import PredictRequest
from server.settings import GatewaySettings
from strategist import contract
from strategist.contract import CPU_MODEL_NAME
from strategist.data.dataset import BuildConfig, race_samples
from strategist.data.fastf1_reader import read_race
from strategist.data.tactical import tactical_tensor
from strategist.serving.race_requests import request_from_race
from strategist.serving.triton_launcher import LocalTriton

ATOL = 1e-4
RACE = "01_sakhir"
AUTH_KEY = AUTH["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def real_race(real_races_dir):
    race_dir = real_races_dir / RACE
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    race = read_race(race_dir)
    arrays, _, _ = race_samples(race, BuildConfig())
    return race, arrays


def _rows(arrays: dict, n: int = 4) -> list[int]:
    """Dataset rows to check: a lap after a pit stop and one under a neutralisation when the race has
    them (their context differs most from a green racing lap), then random ones."""
    columns = {name: i for i, name in enumerate(contract.CONTEXT_FEATURES)}
    context = arrays["context"]
    picks = [
        int(np.flatnonzero(context[:, columns[feature]] > 0)[0])
        for feature in ("L-1.pit_out", "L.status_sc", "L.status_vsc")
        if (context[:, columns[feature]] > 0).any()
    ]
    rng = np.random.default_rng(0)
    picks += [int(i) for i in rng.choice(len(arrays["lap"]), size=n, replace=False)]
    return sorted(set(picks))


def _request(race, arrays, row: int) -> tuple[dict, str]:
    driver, lap = str(arrays["driver"][row]), int(arrays["lap"][row]) - 1  # dataset lap = target L+1
    return request_from_race(race, driver, lap, decimals=None), f"{driver} lap {lap}"


def _expected(model, arrays, row: int) -> tuple[np.ndarray, ...]:
    """PyTorch on the dataset row and its clean-air twin (the same laps and timing, no neighbours)."""
    inputs = {
        contract.INPUT_TELEMETRY: np.stack([arrays["telemetry"][row]] * 2),
        contract.INPUT_TACTICAL: np.stack([arrays["tactical"][row], tactical_tensor(None, None)]),
        contract.INPUT_CONTEXT: np.stack([arrays["context"][row]] * 2),
    }
    return run_torch(model, {k: v.astype(np.float32) for k, v in inputs.items()})


def _check_answer(body: dict, expected: tuple[np.ndarray, ...], where: str) -> None:
    pace, risk, tire = expected
    np.testing.assert_allclose(corridor(body["pace"]["delta_vs_lap_s"]), pace[0], atol=ATOL, err_msg=where)
    np.testing.assert_allclose(
        corridor(body["clean_air"]["pace"]["delta_vs_lap_s"]), pace[1], atol=ATOL, err_msg=where
    )
    np.testing.assert_allclose([body["risk"][c] for c in contract.RISK_CLASSES], risk[0], atol=ATOL)
    np.testing.assert_allclose(body["tire_health"], tire[0, 0], atol=ATOL)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model, checkpoint = context_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=7)
    repo = tmp_path_factory.mktemp("model_repository")
    build_cpu_repository(
        checkpoint, repo, settings=ServingSettings(max_batch_size=16, cpu_intra_op_threads=1)
    )
    return model, repo


def test_real_request_gives_the_dataset_rows_inputs(real_race):
    race, arrays = real_race
    for row in _rows(arrays):
        request, where = _request(race, arrays, row)
        batch = preprocess(
            [PredictRequest.model_validate(request)], default_race_laps=57, input_names=THREE_INPUTS
        )
        np.testing.assert_array_equal(batch.telemetry[0], arrays["telemetry"][row], err_msg=where)
        np.testing.assert_array_equal(batch.tactical[0], arrays["tactical"][row], err_msg=where)
        assert batch.context is not None
        np.testing.assert_array_equal(batch.context[0], arrays["context"][row], err_msg=where)
        np.testing.assert_array_equal(batch.context[1], arrays["context"][row], err_msg=where)


def test_real_request_through_onnx_runtime_matches_pytorch(real_race, served):
    race, arrays = real_race
    model, repo = served
    onnx_path = repo / CPU_MODEL_NAME / "1" / "model.onnx"
    with TestClient(create_app(settings_for(onnx_path))) as client:
        for row in _rows(arrays):
            request, where = _request(race, arrays, row)
            response = client.post("/predict", json=request, headers=AUTH)
            assert response.status_code == 200, f"{where}: {response.text}"
            _check_answer(response.json(), _expected(model, arrays, row), where)


def test_real_request_through_triton_matches_pytorch(real_race, served):
    skip_without_triton()
    race, arrays = real_race
    model, repo = served
    triton = LocalTriton(repo, (CPU_MODEL_NAME,)).start(timeout_s=120)
    try:
        settings = GatewaySettings(
            backend="triton", triton_url=triton.grpc_url, model_name=CPU_MODEL_NAME, api_key=AUTH_KEY
        )
        with TestClient(create_app(settings)) as client:
            rows = _rows(arrays)
            for row in rows:
                request, where = _request(race, arrays, row)
                response = client.post("/predict", json=request, headers=AUTH)
                assert response.status_code == 200, f"{where}: {response.text}"
                assert response.json()["model"]["backend"] == "triton"
                _check_answer(response.json(), _expected(model, arrays, row), where)
            missing = _request(race, arrays, rows[0])[0]
            del missing["laps"][2]["timing"]
            response = client.post("/predict", json=missing, headers=AUTH)
            assert response.status_code == 422 and response.json()["detail"][0]["loc"] == [
                "body",
                "laps",
                2,
                "timing",
            ]
    finally:
        triton.stop()
