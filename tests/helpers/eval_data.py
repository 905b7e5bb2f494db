"""Tiny datasets in the documented format (docs/data-format.md) for tests and smoke runs of evaluation.

Laps follow a per-driver stint trend plus Gaussian noise, so the baselines have something to find and
the simulator-only arrays (noise_sigma, clean_target) are filled as on a simulated race.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.timing import contexts
from strategist.contract import CHANNELS, N_LAP_CONTEXT, N_STEPS
from strategist.data import dataset_format


def synthetic_arrays(n_races: int = 3, n_drivers: int = 4, n_laps: int = 20, seed: int = 0) -> dict:
    """Laps that follow a stint trend plus Gaussian noise; every array the format lists."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("race", "track", "driver", "lap", "ref", "target", "clean")}
    fc_rows, stint_rows, life, sigma, health, risk, regime = [], [], [], [], [], [], []
    for r in range(n_races):
        for d in range(n_drivers):
            base, slope, noise = 90.0 + r + 0.3 * d, 0.05 + 0.01 * d, 0.3 + 0.05 * d
            clean = base + slope * np.arange(n_laps + 1)
            laps = clean + rng.normal(0.0, noise, n_laps + 1)
            for lap in range(5, n_laps):  # predict lap+1 from laps up to `lap`
                rows["race"].append(f"race_{r}")
                rows["track"].append(f"track_{r}")
                rows["driver"].append(f"D{d}")
                rows["lap"].append(lap + 1)
                rows["ref"].append(laps[lap])
                rows["target"].append(laps[lap + 1])
                rows["clean"].append(clean[lap + 1])
                fc_rows.append([laps[lap], laps[lap - 1], laps[lap - 2], laps[lap - 5], laps[0]])
                window = laps[max(0, lap - 7) : lap + 1]
                stint_rows.append(np.r_[np.full(8 - len(window), np.nan), window])
                life.append(lap)
                sigma.append(noise)
                health.append(1.0 - 0.02 * lap)
                risk.append(int(rng.choice(3, p=[0.8, 0.15, 0.05])))
                regime.append("clean" if lap % 4 else "traffic")
    n = len(rows["ref"])
    telemetry = rng.normal(200.0, 20.0, (n, N_LAP_CONTEXT, N_STEPS, len(CHANNELS))).astype(np.float32)
    tactical = np.tile(np.array([[1.5, 0.2], [30.0, 0.0]], np.float32), (n, 1, 1))
    return {
        "telemetry": telemetry,
        "tactical": tactical,
        "context": contexts(np.asarray(rows["lap"]) - 1, np.asarray(fc_rows), np.asarray(life, np.float64)),
        "pace_forecastable": np.ones(n, dtype=bool),
        "pace_ref": np.asarray(rows["ref"], np.float32),
        "pace_target": np.asarray(rows["target"], np.float32),
        "risk": np.asarray(risk, np.int64),
        "tire_health": np.asarray(health, np.float32),
        "fc_laps": np.asarray(fc_rows, np.float32),
        "stint_fc_laps": np.asarray(stint_rows, np.float32),
        "tyre_life": np.asarray(life, np.float32),
        "noise_sigma": np.asarray(sigma, np.float32),
        "clean_target": np.asarray(rows["clean"], np.float32),
        "race": np.asarray(rows["race"]),
        "track": np.asarray(rows["track"]),
        "driver": np.asarray(rows["driver"]),
        "lap": np.asarray(rows["lap"], np.int32),
        "regime": np.asarray(regime),
    }


def write_dataset(arrays: dict, out_dir: Path) -> Path:
    """One shard plus manifest.json, through the writer the Data Engine uses."""
    dataset_format.write_dataset(out_dir, arrays, n_shards=1, fuel_model={}, build={})
    return out_dir
