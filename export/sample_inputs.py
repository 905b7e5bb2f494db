"""Real-looking model inputs in physical units, for export checks and parity tests.

Random normal noise is a poor parity probe: a model normalises telemetry with the training
statistics, so N(0, 1) "speeds" sit far outside anything it was trained on and can hide or invent
precision problems. `realistic_batch` draws laps that look like car_data on the 100-step distance
grid (speed 60-330 km/h with corners, throttle 0-100 %, brake 0/1, RPM 4000-12500, gear 1-8) and
gaps like a race's. `realistic_context` encodes synthetic timing-feed laps (stints, tyre ages,
compounds, safety cars, pit laps) with the one context encoder, strategist.data.context.context_vector.
`realistic_inputs` gives whichever of these a model reads, by input name (ModelConfig.input_names).
`dataset_batch` takes real samples from a dataset built by the Data Engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from strategist import contract
from strategist.data.context import LapTiming, context_vector
from strategist.data.dataset_format import compute_stats, load_arrays
from strategist.data.fuel import FuelModel
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


_COMPOUND_CHOICES = (*contract.COMPOUNDS[:3], "")  # dry compounds, and now and then an unknown one


def _stint_timings(rng: np.random.Generator, race_laps: int) -> list[LapTiming]:
    """One car's timing feed for laps 1..race_laps: stints with pit laps, tyre ages, compounds, a
    fuel-burn trend, an occasional safety-car lap, and a lap now and then without a usable time."""
    fuel = FuelModel.for_race(race_laps)
    stops = sorted(rng.choice(np.arange(8, race_laps - 3), size=rng.integers(0, 3), replace=False))
    base_s = rng.uniform(80.0, 100.0)  # fuel-corrected pace of the car on this circuit
    laps: list[LapTiming] = []
    stint, stint_start, tyre_start = 1, 1, float(rng.integers(0, 4))
    compound = str(rng.choice(_COMPOUND_CHOICES))
    for number in range(1, race_laps + 1):
        pit_out = number - 1 in stops
        if pit_out:
            stint, stint_start, tyre_start = stint + 1, number, 0.0
            compound = str(rng.choice(_COMPOUND_CHOICES))
        stint_lap = number - stint_start + 1
        status = "4" if rng.random() < 0.05 else ("12" if rng.random() < 0.05 else "1")
        fc = base_s + 0.05 * stint_lap + rng.normal(0.0, 0.3) + (20.0 if status == "4" else 0.0)
        measured = fuel.uncorrect(fc, number)
        laps.append(
            LapTiming(
                lap_number=number,
                lap_time_s=None if rng.random() < 0.03 else float(measured),
                tyre_life=tyre_start + stint_lap,
                stint=stint,
                stint_lap=stint_lap,
                compound=compound,
                track_status=status,
                pit_in=number in stops,
                pit_out=pit_out,
            )
        )
    return laps


def realistic_context(n: int, seed: int = 0) -> np.ndarray:
    """`n` timing contexts float32 [n, N_CONTEXT], each a lap stack [L, L-1, L-2, L-5, L_base] of a
    synthetic timing feed, encoded by context_vector (the dataset builder's and the gateway's encoder).
    L_base is the stint's first lap when L is deep enough into it, else L itself (a repeated slot)."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, contract.N_CONTEXT), dtype=np.float32)
    for i in range(n):
        race_laps = int(rng.integers(44, 72))
        feed = _stint_timings(rng, race_laps)
        lap = int(rng.integers(6, race_laps))  # L: the stack's offsets reach back 5 laps
        numbers = [lap - offset for offset in contract.LAP_OFFSETS]
        first_of_stint = lap - feed[lap - 1].stint_lap + 1
        numbers.append(first_of_stint if feed[lap - 1].stint_lap > 3 else lap)
        slots = [feed[number - 1] for number in numbers]
        out[i] = context_vector(slots, fuel=FuelModel.for_race(race_laps), race_laps=race_laps)
    return out


def realistic_inputs(n: int, input_names: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    """`n` samples of every input the model reads (input_names: ModelConfig.input_names), by name."""
    shapes = contract.input_shapes(input_names)
    telemetry, tactical = realistic_batch(n, seed=seed)
    arrays = {contract.INPUT_TELEMETRY: telemetry, contract.INPUT_TACTICAL: tactical}
    if contract.INPUT_CONTEXT in shapes:
        arrays[contract.INPUT_CONTEXT] = realistic_context(n, seed=seed)
    return {name: arrays[name] for name in shapes}


def dataset_batch(
    dataset_dir: Path, n: int, input_names: Sequence[str], seed: int = 0
) -> dict[str, np.ndarray]:
    """Up to `n` real samples of the model's inputs (by name) from a dataset folder (manifest.json +
    shard-*.npz).

    Returns fewer than `n` samples when the dataset is smaller; raises DataError when it holds none.
    """
    names = tuple(contract.input_shapes(input_names))
    arrays, _ = load_arrays(dataset_dir, names, limit=4 * n)  # enough to draw from; not every shard
    found = len(arrays[contract.INPUT_TELEMETRY])
    if not found:
        raise DataError("dataset lists no shards with samples", file=str(dataset_dir))
    pick = np.random.default_rng(seed).permutation(found)[:n]
    return {name: arrays[name].astype(np.float32)[pick] for name in names}


def realistic_stats(n: int = 512, seed: int = 123) -> dict[str, object]:
    """Normalisation statistics (manifest "stats" layout) of `realistic_batch` samples.

    For models with untrained weights (tests, timing): with the default 0 / 1 buffers, raw RPM of
    ~12000 would enter the network unscaled, which no trained model ever sees.
    """
    telemetry, tactical = realistic_batch(n, seed=seed)
    context = realistic_context(n, seed=seed)
    # No pace targets: compute_stats gives the neutral 0 s / 1 s, the order of lap-to-lap changes.
    # The context statistics are there for models that read it; two-input models ignore them.
    part = {"telemetry": telemetry, "tactical": tactical, "context": context, "pace_delta": np.empty(0)}
    return compute_stats([part])
