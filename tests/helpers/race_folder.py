"""A tiny race folder in the FastF1 export layout, with known answers, for tests and demos.

`write_synthetic_race(out_dir)` writes laps.csv, track_status.csv, results.csv, race_info.csv and
telemetry/<car>_telemetry.csv.gz for a few cars on a 2 km circuit whose speed along the lap is
analytic (v(f) = mean + amplitude * cos(2 pi f), f = fraction of the lap), sampled at about 4 Hz
with jitter. Each car drives the same profile scaled by its own pace factor, so its lap times,
crossing order and distances are known. Built in: one pit stop (car 2: in-lap 4, out-lap 5, slow
out-lap), one VSC lap for everyone (lap 6, speeds x 0.7), a mistake of car 1 on lap 7 that
lets car 3 pass it on track, and optionally truth.csv + sim_meta.json
so the folder reads as a simulated race.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LAP_LENGTH_M = 2000.0
MEAN_SPEED_KMH = 200.0
SPEED_AMPLITUDE_KMH = 80.0
GRID_WAIT_S = 5.0  # standstill on the grid before lap 1 starts (Throttle 104 artefacts there)


@dataclass(frozen=True)
class SyntheticCar:
    driver: str
    number: str
    pace: float  # speed multiplier
    pit_in_lap: int | None = None
    mistake_lap: int | None = None  # a slow lap (speeds x 0.85): lets the car behind pass


DEFAULT_CARS = (
    SyntheticCar("AAA", "1", 1.00, mistake_lap=7),
    SyntheticCar("BBB", "2", 0.97, pit_in_lap=4),
    SyntheticCar("CCC", "3", 0.985),
)
VSC_LAP = 6


def speed_profile_kmh(fraction: np.ndarray) -> np.ndarray:
    """The analytic speed along the lap [km/h] at fractions 0..1 of the lap distance."""
    return MEAN_SPEED_KMH + SPEED_AMPLITUDE_KMH * np.cos(2 * np.pi * fraction)


def _lap_factor(car: SyntheticCar, lap: int) -> float:
    factor = car.pace
    if lap == VSC_LAP:
        factor *= 0.7
    if car.pit_in_lap is not None and lap == car.pit_in_lap + 1:
        factor *= 0.6  # the out-lap: pit-lane limit and cold tires, one slow factor
    if car.mistake_lap == lap:
        factor *= 0.85
    return factor


def _drive(car: SyntheticCar, n_laps: int, rng: np.random.Generator) -> tuple[pd.DataFrame, list[float]]:
    """Integrate the car along the track: telemetry frame and the session times of the lap ends."""
    times: list[float] = []
    speeds: list[float] = []
    t, s = 0.0, 0.0
    while t < GRID_WAIT_S:  # grid standstill
        times.append(t)
        speeds.append(0.0)
        t += 0.25
    lap_ends: list[float] = []
    total = n_laps * LAP_LENGTH_M
    dt_fine = 0.01  # integrate finely, sample at ~4 Hz
    next_sample = t
    t = GRID_WAIT_S
    while s < total + 200.0:  # telemetry runs on past the flag, as in real sessions
        lap = int(s // LAP_LENGTH_M) + 1
        v = speed_profile_kmh(np.array((s % LAP_LENGTH_M) / LAP_LENGTH_M)) * _lap_factor(car, lap)
        s_new = s + float(v) / 3.6 * dt_fine
        if int(s_new // LAP_LENGTH_M) > int(s // LAP_LENGTH_M):
            boundary = (int(s // LAP_LENGTH_M) + 1) * LAP_LENGTH_M
            lap_ends.append(t + (boundary - s) / (s_new - s) * dt_fine)
        s, t = s_new, t + dt_fine
        if t >= next_sample:
            times.append(t)
            speeds.append(float(v))
            next_sample = t + 0.24 + rng.uniform(0, 0.03)  # FastF1 car_data: 240-270 ms
    speed = np.asarray(speeds)
    accel = np.gradient(speed)
    frame = pd.DataFrame(
        {
            "Date": pd.Timestamp("2023-03-05 15:00:00") + pd.to_timedelta(times, unit="s"),
            "RPM": np.where(speed > 0, 4000 + 35 * speed, 0).round(),
            "Speed": speed.round(1),
            "nGear": np.clip(np.ceil(speed / 40), 0, 8).astype(int),
            "Throttle": np.where(speed == 0, 104, np.clip(50 + accel * 10, 0, 100)).round(),
            "Brake": (accel < -0.5) & (speed > 0),
            "DRS": 0,
            "Source": "car",
        }
    )
    frame["Time"] = pd.to_timedelta(times, unit="s").astype(str)
    frame["SessionTime"] = frame["Time"]
    return frame, lap_ends[:n_laps]


def write_synthetic_race(
    out_dir: str | Path,
    *,
    n_laps: int = 8,
    cars: tuple[SyntheticCar, ...] = DEFAULT_CARS,
    simulated: bool = False,
    seed: int = 0,
) -> Path:
    """Write the race folder and return its path. `simulated` adds truth.csv and sim_meta.json."""
    out = Path(out_dir)
    (out / "telemetry").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for car in cars:
        telemetry, ends = _drive(car, n_laps, rng)
        telemetry.to_csv(out / "telemetry" / f"{car.number}_telemetry.csv.gz")
        starts = [GRID_WAIT_S, *ends[:-1]]
        stint, life = 1, 3
        for lap, (a, b) in enumerate(zip(starts, ends, strict=True), start=1):
            pit_out = car.pit_in_lap is not None and lap == car.pit_in_lap + 1
            if pit_out:
                stint, life = 2, 0
            life += 1
            rows.append(
                {
                    "Time": b,
                    "Driver": car.driver,
                    "DriverNumber": car.number,
                    "LapTime": b - a,
                    "LapNumber": float(lap),
                    "Stint": float(stint),
                    "PitOutTime": a + 1.0 if pit_out else np.nan,
                    "PitInTime": b - 1.0 if lap == car.pit_in_lap else np.nan,
                    "Compound": "SOFT" if stint == 1 else "HARD",
                    "TyreLife": float(life),
                    "Team": f"Team {car.driver}",
                    "LapStartTime": a,
                    "TrackStatus": "6" if lap == VSC_LAP else "1",
                }
            )
    laps = pd.DataFrame(rows)
    # Race position at each line crossing: order of arrival among the cars completing that lap.
    laps["Position"] = laps.groupby("LapNumber")["Time"].rank(method="first")
    for col in ("Time", "LapTime", "PitOutTime", "PitInTime", "LapStartTime"):
        laps[col] = pd.to_timedelta(laps[col], unit="s").astype(str).replace("NaT", "")
    laps.to_csv(out / "laps.csv")

    # A VSC period over the leader's lap VSC_LAP (slower cars' neighbouring laps overlap it too,
    # as in real FastF1 data); every car's lap VSC_LAP also carries the code in TrackStatus.
    lead = laps[(laps["LapNumber"] == VSC_LAP) & (laps["Driver"] == cars[0].driver)]
    vsc_start = pd.to_timedelta(lead["LapStartTime"]).iloc[0].total_seconds()
    vsc_end = pd.to_timedelta(lead["Time"]).iloc[0].total_seconds()
    status = pd.DataFrame(
        {
            "Time": pd.to_timedelta([0.0, vsc_start, vsc_end], unit="s").astype(str),
            "Status": ["1", "6", "1"],
            "Message": ["AllClear", "VSCDeployed", "AllClear"],
        }
    )
    status.to_csv(out / "track_status.csv")
    last = laps[laps["LapNumber"] == n_laps]
    pd.DataFrame(
        {
            "DriverNumber": [c.number for c in cars],
            "Abbreviation": [c.driver for c in cars],
            "TeamName": [f"Team {c.driver}" for c in cars],
            "GridPosition": list(range(1, len(cars) + 1)),
            "Position": [float(last.loc[last["Driver"] == c.driver, "Position"].iloc[0]) for c in cars],
            "Status": "Finished",
        }
    ).to_csv(out / "results.csv")
    pd.Series({"EventName": "Synthetic Grand Prix", "Location": "Synthetic Ring"}).to_csv(
        out / "race_info.csv"
    )

    if simulated:
        truth = laps[["Driver", "LapNumber"]].copy()
        truth["LapNumber"] = truth["LapNumber"].astype(int)
        truth["TireHealth"] = np.clip(1.0 - laps["TyreLife"].to_numpy() / 30.0, 0, 1)
        truth["TrafficLoss"] = np.where(truth["LapNumber"] == 3, 2.0, 0.0)  # everyone "in traffic" on lap 3
        truth["Overtaken"] = (truth["LapNumber"] == 7) & (truth["Driver"] == cars[0].driver)
        truth["NoiseSigma"] = 0.5
        truth["FuelMass"] = 100.0 - (truth["LapNumber"] - 1) * 2.0
        truth["CleanLapTime"] = pd.to_timedelta(laps["LapTime"]).dt.total_seconds().to_numpy() - 0.1
        truth.to_csv(out / "truth.csv", index=False)
        meta = {
            "seed": seed,
            "track": "synthetic-ring",
            "total_laps": n_laps,
            "fuel_model": {
                "start_mass_kg": 100.0,
                "consumption_kg_per_lap": 2.0,
                "sensitivity_s_per_kg": 0.03,
            },
        }
        (out / "sim_meta.json").write_text(json.dumps(meta, indent=1))
    return out
