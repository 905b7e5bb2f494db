"""End to end with the real local Triton (nvidia-pytriton's tritonserver, Python backend + ONNX Runtime):
tiny checkpoint -> `build_cpu_repository` -> LocalTriton -> gateway (Triton gRPC backend).

Answers are checked against the PyTorch model on the same stacks; Triton is stopped to see a quick
503 and restarted on the same ports to see the gateway recover by itself.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.gateway import corridor, engine_inputs, simulated_request, torch_outputs
from helpers.skips import skip_without_triton
from helpers.tiny import save_tiny_checkpoint

from export.repository import build_cpu_repository
from export.triton_config import ServingSettings
from server.main import create_app
from server.preprocess import preprocess
from server.schemas import PredictRequest
from server.settings import GatewaySettings
from strategist import contract
from strategist.contract import CPU_MODEL_NAME
from strategist.data.engine import align_raw_lap, build_model_inputs
from strategist.data.fastf1_reader import read_race
from strategist.data.labels import label_table
from strategist.data.stack import choose_stack_laps
from strategist.data.tactical import tactical_tensor
from strategist.serving.race_requests import drivers_with_stack, request_from_race
from strategist.serving.triton_launcher import LocalTriton

API_KEY = "e2e-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ATOL = 1e-4
MAX_BATCH = 16  # model rows; the gateway may send 8 cars (x2 for clean air)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=1)


@pytest.fixture(scope="module")
def repository(checkpoint, tmp_path_factory):
    repo = tmp_path_factory.mktemp("model_repository")
    build_cpu_repository(
        checkpoint[1], repo, settings=ServingSettings(max_batch_size=MAX_BATCH, cpu_intra_op_threads=1)
    )
    return repo


@pytest.fixture(scope="module")
def triton(repository):
    skip_without_triton()
    server = LocalTriton(repository, (CPU_MODEL_NAME,)).start(timeout_s=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(triton):
    settings = GatewaySettings(
        backend="triton",
        triton_url=triton.grpc_url,
        model_name=CPU_MODEL_NAME,
        api_key=API_KEY,
        request_timeout_s=1.0,
        readiness_timeout_s=0.5,
        max_batch_cars=MAX_BATCH // 2,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_triton_answers_match_pytorch(client, checkpoint, triton):
    model = checkpoint[0]
    ready = client.get("/readyz", headers=AUTH).json()
    (endpoint,) = ready.pop("endpoints")
    assert ready == {"ready": True, "backend": "triton", "model": CPU_MODEL_NAME}
    assert (endpoint["url"], endpoint["up"], endpoint["outstanding"]) == (triton.grpc_url, True, 0)
    request = simulated_request(21)
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": CPU_MODEL_NAME, "version": "1", "backend": "triton"}

    telemetry, tactical = engine_inputs(request)
    pace, risk, tire = torch_outputs(
        model, np.stack([telemetry, telemetry]), np.stack([tactical, tactical_tensor(None, None)])
    )
    np.testing.assert_allclose(corridor(body["pace"]["delta_vs_lap_s"]), pace[0], atol=ATOL)
    np.testing.assert_allclose(corridor(body["clean_air"]["pace"]["delta_vs_lap_s"]), pace[1], atol=ATOL)
    np.testing.assert_allclose([body["risk"][c] for c in contract.RISK_CLASSES], risk[0], atol=ATOL)
    np.testing.assert_allclose(body["tire_health"], tire[0, 0], atol=ATOL)


def test_triton_batch_matches_pytorch(client, checkpoint):
    requests = [simulated_request(seed, neighbours=seed % 2 == 0) for seed in range(30, 34)]
    response = client.post("/predict/batch", json={"cars": requests}, headers=AUTH)
    assert response.status_code == 200, response.text
    inputs = [engine_inputs(r) for r in requests]
    pace, _, _ = torch_outputs(
        checkpoint[0], np.stack([t for t, _ in inputs]), np.stack([tac for _, tac in inputs])
    )
    got = np.stack([corridor(p["pace"]["delta_vs_lap_s"]) for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, pace, atol=ATOL)


def test_real_race_stack_through_triton(client, checkpoint, real_races_dir):
    race_dir = real_races_dir / "01_sakhir"
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    race = read_race(race_dir)
    driver = drivers_with_stack(race, 20)[0]
    request = request_from_race(race, driver, 20)
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 200, response.text
    telemetry, tactical = engine_inputs(request)
    pace, _, _ = torch_outputs(checkpoint[0], telemetry[None], tactical[None])
    np.testing.assert_allclose(corridor(response.json()["pace"]["delta_vs_lap_s"]), pace[0], atol=ATOL)


def test_gateway_stack_equals_the_dataset_builders(real_races_dir):
    """Raw laps sent as JSON -> gateway preprocessing == the dataset builder's path for the same laps."""
    race_dir = real_races_dir / "01_sakhir"
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    race = read_race(race_dir)
    labels = label_table(race)
    for driver, lap in (("VER", 20), ("HAM", 36), ("SAR", 3)):
        request = PredictRequest.model_validate(request_from_race(race, driver, lap, decimals=None))
        batch = preprocess([request], default_race_laps=57)
        # The dataset builder: align every lap once, choose the slots, build the inputs.
        choice = choose_stack_laps(lap, race.lap_infos(driver), driver=driver)
        aligned = [align_raw_lap(race.lap_telemetry(driver, n)) for n in choice.laps]
        telemetry, tactical = build_model_inputs(aligned, *race.neighbours(driver, lap))
        np.testing.assert_array_equal(batch.telemetry[0], telemetry)
        np.testing.assert_array_equal(batch.tactical[0], tactical)
        np.testing.assert_array_equal(batch.tactical[1], tactical_tensor(None, None))
        # The pace reference is the training label's fuel-corrected lap time (dataset `pace_ref`).
        row = labels[(labels["Driver"] == driver) & (labels["LapNumber"] == lap)]
        assert batch.reference_fc_s[0] == pytest.approx(float(row["FcLapTime"].iloc[0]), abs=1e-9)


def test_triton_down_is_a_quick_503_and_the_gateway_recovers(client, triton, repository):
    request = simulated_request(40, raw=False)
    triton.stop()
    started = time.perf_counter()
    response = client.post("/predict", json=request, headers=AUTH)
    assert response.status_code == 503, response.text
    assert time.perf_counter() - started < 2.0
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json()["endpoints"][0]["up"] is False
    # Open to probes, but Triton's address and error only for a caller with the key.
    assert "url" not in down.json()["endpoints"][0] and str(triton.grpc_port) not in down.text
    assert client.get("/readyz", headers=AUTH).json()["endpoints"][0]["url"] == triton.grpc_url
    metrics = client.get("/metrics").text
    assert f'strategist_triton_endpoint_up{{endpoint="{triton.grpc_url}"}} 0.0' in metrics

    restarted = LocalTriton(
        repository,
        (CPU_MODEL_NAME,),
        grpc_port=triton.grpc_port,
        http_port=triton.http_port,
        metrics_port=triton.metrics_port,
    ).start(timeout_s=120)
    try:
        deadline = time.monotonic() + 10.0
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway did not see Triton again within 10 s"
            time.sleep(0.2)
        assert client.post("/predict", json=request, headers=AUTH).status_code == 200
    finally:
        restarted.stop()
