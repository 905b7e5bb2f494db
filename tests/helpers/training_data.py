"""A small synthetic dataset in the docs/data-format.md layout, with targets the model can learn.

For the training tests; not race physics. Each sample has a hidden pace
factor that slows every stacked lap's speed trace and sets the next lap's pace delta; the gap to the
car ahead decides the risk class; the throttle level sets tire health.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.timing import contexts
from strategist import contract
from strategist.data.dataset_format import write_dataset


def make_synthetic_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_laps, n_steps = contract.N_LAP_CONTEXT, contract.N_STEPS
    distance = np.linspace(0.0, 2.0 * np.pi, n_steps, dtype=np.float32)
    pace_factor = rng.normal(size=(n, 1, 1)).astype(np.float32)  # hidden: + = slow
    wear = rng.uniform(0.0, 1.0, size=(n, 1, 1)).astype(np.float32)

    speed = 220.0 + 60.0 * np.sin(3 * distance) - 8.0 * pace_factor + rng.normal(0, 2, (n, n_laps, n_steps))
    throttle = np.clip(70.0 + 30.0 * np.sin(3 * distance + 0.3) - 20.0 * wear, 0, 100) + rng.normal(
        0, 1, (n, n_laps, n_steps)
    )
    brake = (np.sin(3 * distance + 1.5) > 0.8).astype(np.float32) * np.ones((n, n_laps, 1))
    rpm = 9000.0 + 20.0 * speed + rng.normal(0, 50, (n, n_laps, n_steps))
    gear = np.clip(np.round(speed / 40.0), 1, 8)
    telemetry = np.stack([speed, throttle, brake, rpm, gear], axis=-1).astype(np.float32)  # [n, 5, 100, 5]

    gap_ahead = rng.uniform(0.2, contract.NO_CAR_GAP_S, n)
    gap_behind = rng.uniform(0.2, contract.NO_CAR_GAP_S, n)
    pace_ahead = rng.normal(0, 0.5, n)
    pace_behind = rng.normal(0, 0.5, n)
    tactical = np.stack([np.stack([gap_ahead, pace_ahead], -1), np.stack([gap_behind, pace_behind], -1)], 1)

    pace_ref = rng.uniform(85.0, 95.0, n)
    pace_delta = 0.6 * pace_factor[:, 0, 0] + 0.3 * (gap_ahead < 1.5) + rng.normal(0, 0.05, n)
    risk = np.where(gap_ahead < 1.5, 1, np.where(gap_behind < 1.0, 2, 0)).astype(np.int64)
    tire_health = (1.0 - 0.8 * wear[:, 0, 0]).astype(np.float32)

    lap = (np.arange(n) % 60 + 2).astype(np.int32)
    # The slot laps of the timing context carry the same hidden pace factor as the speed traces.
    slot_times = (
        pace_ref[:, None]
        + 0.4 * pace_factor[:, 0, :1] * np.ones((1, n_laps))
        + rng.normal(0, 0.1, (n, n_laps))
    )
    slot_times[:, 0] = pace_ref
    return {
        "telemetry": telemetry,
        "tactical": tactical.astype(np.float32),
        "context": contexts(lap, slot_times, rng.uniform(2, 30, n)),
        "pace_forecastable": np.ones(n, dtype=bool),
        "pace_ref": pace_ref.astype(np.float32),
        "pace_target": (pace_ref + pace_delta).astype(np.float32),
        "risk": risk,
        "tire_health": tire_health,
        "driver": np.array([f"D{i % 20:02d}" for i in range(n)]),
        "lap": lap,
    }


def write_synthetic_dataset(folder: str | Path, n: int, *, seed: int = 0, n_shards: int = 2) -> Path:
    """Write `n` samples as `n_shards` shards + manifest.json into `folder`; returns the folder."""
    arrays = make_synthetic_arrays(n, seed)
    write_dataset(folder, arrays, n_shards=n_shards, build={"synthetic_seed": seed})
    return Path(folder)
