"""Real-looking model inputs in physical units, for export checks and parity tests.

Random normal noise is a poor parity probe: a model normalises telemetry with the training
statistics, so N(0, 1) "speeds" sit far outside anything it was trained on and can hide or invent
precision problems. `realistic_batch` draws laps that look like car_data on the 100-step distance
grid (speed 60-330 km/h with corners, throttle 0-100 %, brake 0/1, RPM 4000-12500, gear 1-8) and
gaps like a race's. `dataset_batch` takes real stacks from a dataset built by the Data Engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strategist import contract
from strategist.data.dataset_format import compute_stats, load_arrays
from strategist.errors import DataError

N_LAPS = contract.N_LAP_CONTEXT
N_STEPS = contract.N_STEPS
_SPEED, _THROTTLE, _BRAKE, _RPM, _GEAR = (
    contract.CHANNELS.index(name) for name in ("Speed", "Throttle", "Brake", "RPM", "nGear")
)


def _speed_profile(rng: np.random.Generator) -> np.ndarray:
    """One circuit's speed trace over the distance grid, km/h, shape [N_STEPS]."""
    x = np.linspace(0.0, 1.0, N_STEPS, endpoint=False)
    speed = np.full(N_STEPS, rng.uniform(300.0, 330.0))
    for _ in range(rng.integers(6, 14)):  # corners: a dip of chosen depth and length
        centre, width = rng.uniform(0.0, 1.0), rng.uniform(0.01, 0.04)
        depth = rng.uniform(60.0, 250.0)
        dist = np.minimum(np.abs(x - centre), 1.0 - np.abs(x - centre))  # the lap wraps around
        speed -= depth * np.exp(-0.5 * (dist / width) ** 2)
    return np.clip(speed, 60.0, 330.0)


def _lap_channels(speed: np.ndarray) -> np.ndarray:
    """Throttle, brake, RPM and gear consistent with a speed trace; returns [N_STEPS, 5]."""
    accel = np.diff(speed, append=speed[0])  # km/h per step, the lap wraps
    brake = (accel < -8.0).astype(np.float32)
    throttle = np.where(brake > 0, 0.0, np.clip(60.0 + 4.0 * accel + 0.15 * (speed - 150.0), 0.0, 100.0))
    gear = np.clip(np.ceil(speed / 42.0), 1.0, 8.0)
    band_low = (gear - 1.0) * 42.0
    rpm = 7000.0 + 5500.0 * np.clip((speed - band_low) / 42.0, 0.0, 1.0)
    lap = np.empty((N_STEPS, len(contract.CHANNELS)), dtype=np.float32)
    lap[:, _SPEED], lap[:, _THROTTLE], lap[:, _BRAKE] = speed, throttle, brake
    lap[:, _RPM], lap[:, _GEAR] = np.clip(rpm, 4000.0, 12500.0), gear
    return lap


def realistic_batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples: telemetry float32 [n, 5, 100, 5] and tactical float32 [n, 2, 2], physical units."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    telemetry = np.empty((n, N_LAPS, N_STEPS, len(contract.CHANNELS)), dtype=np.float32)
    for i in range(n):
        base = _speed_profile(rng)
        for slot in range(N_LAPS):
            # Laps of one stack share the circuit; each differs by tire wear, fuel and lines.
            speed = np.clip(base * rng.uniform(0.97, 1.01) + rng.normal(0.0, 2.0, N_STEPS), 60.0, 330.0)
            telemetry[i, slot] = _lap_channels(speed)
    gaps = rng.exponential(4.0, size=(n, 2)).clip(0.2, contract.NO_CAR_GAP_S)
    deltas = rng.normal(0.0, 0.8, size=(n, 2)).clip(
        -contract.MAX_ABS_PACE_DELTA_S, contract.MAX_ABS_PACE_DELTA_S
    )
    no_car = rng.random((n, 2)) < 0.1  # leader / last car, or nobody within reach
    gaps[no_car], deltas[no_car] = contract.NO_CAR_GAP_S, contract.NO_CAR_PACE_DELTA_S
    tactical = np.stack([gaps, deltas], axis=-1).astype(np.float32)  # [n, 2 rows, 2 cols]
    return telemetry, tactical


def dataset_batch(dataset_dir: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` real stacks drawn from a dataset folder (manifest.json + shard-*.npz).

    Returns fewer than `n` samples when the dataset is smaller; raises DataError when it holds none.
    """
    fields = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL)
    arrays, _ = load_arrays(dataset_dir, fields, limit=4 * n)  # enough to draw from; not every shard
    telemetry = arrays[contract.INPUT_TELEMETRY].astype(np.float32)
    tactical = arrays[contract.INPUT_TACTICAL].astype(np.float32)
    if not len(telemetry):
        raise DataError("dataset lists no shards with samples", file=str(dataset_dir))
    pick = np.random.default_rng(seed).permutation(len(telemetry))[:n]
    return telemetry[pick], tactical[pick]


def realistic_stats(n: int = 512, seed: int = 123) -> dict[str, object]:
    """Normalisation statistics (manifest "stats" layout) of `realistic_batch` samples.

    For models with untrained weights (tests, timing): with the default 0 / 1 buffers, raw RPM of
    ~12000 would enter the network unscaled, which no trained model ever sees.
    """
    telemetry, tactical = realistic_batch(n, seed=seed)
    # No pace targets: compute_stats gives the neutral 0 s / 1 s, the order of lap-to-lap changes.
    return compute_stats([{"telemetry": telemetry, "tactical": tactical, "pace_delta": np.empty(0)}])
