"""Gateway test requests and comparisons: simulated car requests, what the Data Engine makes of the
same laps, the PyTorch answers and the gateway settings for an in-process ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.sample_inputs import realistic_batch
from server.settings import GatewaySettings
from strategist import contract
from strategist.data.engine import AlignedLap, RawLap, build_model_inputs

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def raw_lap_by_distance(aligned: np.ndarray, n_samples: int, lap_length_m: float, seed: int) -> dict:
    """A raw lap sampled at `n_samples` irregular distances whose channels follow `aligned` [100, 5]."""
    rng = np.random.default_rng(seed)
    centres = (np.arange(contract.N_STEPS) + 0.5) / contract.N_STEPS * lap_length_m
    distance = np.sort(rng.uniform(0.0, lap_length_m, n_samples))
    distance[0], distance[-1] = 0.0, lap_length_m
    channels = {}
    for col, name in enumerate(contract.CHANNELS):
        values = np.interp(distance, centres, aligned[:, col])
        channels[name] = np.round(values) if name in contract.DISCRETE_CHANNELS else values
    return {"distance_m": distance.tolist(), "channels": {k: v.tolist() for k, v in channels.items()}}


def aligned_lap(aligned: np.ndarray) -> dict:
    return {
        "aligned": True,
        "channels": {name: aligned[:, i].tolist() for i, name in enumerate(contract.CHANNELS)},
    }


def simulated_request(seed: int, *, raw: bool = True, neighbours: bool = True) -> dict:
    telemetry, tactical = realistic_batch(1, seed=seed)
    laps = [
        raw_lap_by_distance(telemetry[0, slot], 300 + 10 * slot, 5400.0, seed * 10 + slot)
        if raw and slot % 2 == 0
        else aligned_lap(telemetry[0, slot])
        for slot in range(contract.N_LAP_CONTEXT)
    ]
    request = {
        "car": f"SIM{seed}",
        "laps": laps,
        "lap_number": 20,
        "lap_time_s": 93.5 + seed,
        "race_laps": 57,
    }
    if neighbours:
        request["ahead"] = {"gap_s": 0.8, "pace_delta_s": 0.4}
        request["behind"] = {"gap_s": 2.5, "pace_delta_s": -0.3}
    return request


def engine_inputs(request: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the dataset side of the Data Engine makes of the same laps (no server code involved)."""
    laps = []
    for lap in request["laps"]:
        if lap.get("aligned"):
            laps.append(AlignedLap(channels=lap["channels"]))
        else:
            laps.append(
                RawLap(channels=lap["channels"], distance_m=lap.get("distance_m"), time_s=lap.get("time_s"))
            )
    neighbour = {
        k: (request[k]["gap_s"], request[k]["pace_delta_s"]) if request.get(k) else None
        for k in ("ahead", "behind")
    }
    return build_model_inputs(laps, neighbour["ahead"], neighbour["behind"])


def settings_for(onnx_path: Path, **changes) -> GatewaySettings:
    values = dict(backend="onnxruntime", onnx_path=onnx_path, api_key=API_KEY, max_body_bytes=1_000_000)
    return GatewaySettings(**{**values, **changes})


def torch_outputs(model: torch.nn.Module, telemetry: np.ndarray, tactical: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(telemetry), torch.from_numpy(tactical))]


def corridor(values: dict) -> np.ndarray:
    return np.array([values["p10_s"], values["p50_s"], values["p90_s"]])
