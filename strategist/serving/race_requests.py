"""Request payloads built from a race on disk (real FastF1 export or simulated race).

Used by `strategist client`, by `strategist serve` to write examples/predict_request.json, and by the
tests. The lap stack is chosen by the Data Engine's slot rules (strategist.data.stack), the laps are
the reader's raw car_data samples (indexed by time, as FastF1 records them), the neighbours and fuel
model are the reader's, and each lap's `timing` is the reader's lap table through
strategist.data.context.driver_lap_timings (what the dataset builder encodes): nothing here
re-derives race data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strategist import contract
from strategist.data.context import LapTiming, driver_lap_timings
from strategist.data.fastf1_reader import Race
from strategist.data.stack import choose_stack_laps
from strategist.errors import DataError


def _values(array: Any, decimals: int | None) -> list[float]:
    values = np.asarray(array, dtype=np.float64)
    if decimals is not None:
        values = np.round(values, decimals)
    return [float(v) for v in values]


def _round(value: float, decimals: int | None) -> float:
    return float(value) if decimals is None else round(float(value), decimals)


def lap_time_s(race: Race, driver: str, lap: int) -> float:
    rows = race.driver_laps(driver)
    hit = rows[rows["LapNumber"] == lap]
    value = float(hit["LapTime"].iloc[0]) if not hit.empty else float("nan")
    if not np.isfinite(value):
        raise DataError(
            "no lap time recorded for this lap", file=race.source, driver=driver, lap=lap, field="LapTime"
        )
    return value


_STATUS_DIGITS = frozenset("1234567")


def timing_record(lap: LapTiming) -> dict[str, Any]:
    """A lap's timing as the request's `timing` object (JSON-ready).

    Spelled the way the schema takes it, with the same encoding: a compound the context does not know
    is "UNKNOWN" (all-zero one-hot either way), and a TrackStatus cell without a status digit (FastF1
    leaves some empty) is green, "1" (no flag either way).
    """
    compound = lap.compound.strip().upper()
    status = "".join(c for c in lap.track_status if c in _STATUS_DIGITS) or "1"
    time_s = lap.lap_time_s
    return {
        "lap_number": int(lap.lap_number),
        "lap_time_s": None if time_s is None or not np.isfinite(time_s) else float(time_s),
        "tyre_life": float(lap.tyre_life),
        "stint": int(lap.stint),
        "stint_lap": int(lap.stint_lap),
        "compound": compound if compound in contract.COMPOUNDS else "UNKNOWN",
        "track_status": status,
        "pit_in": bool(lap.pit_in),
        "pit_out": bool(lap.pit_out),
    }


def lap_samples(race: Race, driver: str, lap: int, decimals: int | None = 4) -> dict[str, Any]:
    """One lap's raw car_data samples in the request form (indexed by time from the lap start)."""
    raw = race.lap_telemetry(driver, lap)
    return {
        "time_s": _values(raw.time_s, decimals),
        "channels": {name: _values(raw.channels[name], decimals) for name in contract.CHANNELS},
    }


def request_from_race(race: Race, driver: str, lap: int, *, decimals: int | None = 4) -> dict[str, Any]:
    """The /predict body for `driver` after completing `lap` (JSON-ready dict), with every lap's
    timing, so models with and without the timing context can answer it.

    decimals: rounding of the raw samples (keeps the JSON small; FastF1 times are ms-resolution);
    None keeps them exact.
    """
    choice = choose_stack_laps(lap, race.lap_infos(driver), driver=driver)
    timings = driver_lap_timings(race.driver_laps(driver))
    laps = [
        {**lap_samples(race, driver, number, decimals), "timing": timing_record(timings[number])}
        for number in choice.laps
    ]
    ahead, behind = race.neighbours(driver, lap)
    gaps = {
        name: None
        if car is None
        else {"gap_s": _round(car[0], decimals), "pace_delta_s": _round(car[1], decimals)}
        for name, car in (("ahead", ahead), ("behind", behind))
    }
    return {
        "car": driver,
        "lap_number": int(lap),
        "lap_time_s": lap_time_s(race, driver, lap),
        "race_laps": int(race.total_laps),
        "fuel": race.fuel_model.to_dict(),
        **gaps,
        "laps": laps,
    }


def drivers_with_stack(race: Race, lap: int) -> list[str]:
    """Drivers with telemetry who completed `lap` (the ones a stack can be built for)."""
    laps = race.laps
    done = set(laps.loc[laps["LapNumber"] == lap, "Driver"])
    return [d for d in race.drivers if d in done and race.driver_has_telemetry(d)]


# --- race sessions (POST /live/sessions, /live/sessions/{id}/laps; server/live) ---


def session_body(race: Race, session_id: str | None = None) -> dict[str, Any]:
    """The body that opens a race session for `race` (its track, length and fuel model)."""
    return {
        "session_id": session_id or race.race_id,
        "circuit": race.track,
        "race_laps": int(race.total_laps),
        "fuel": race.fuel_model.to_dict(),
    }


def laps_in_finish_order(race: Race, max_lap: int | None = None) -> list[tuple[str, int, float]]:
    """(driver, lap, lap end s) of every lap up to `max_lap`, in the order the cars crossed the line."""
    laps = race.laps
    if max_lap is not None:
        laps = laps[laps["LapNumber"] <= max_lap]
    order = laps.sort_values(["Time", "Position"], kind="stable", na_position="last")
    return [
        (str(d), int(n), float(t))
        for d, n, t in zip(order["Driver"], order["LapNumber"], order["Time"], strict=True)
    ]


def live_lap(
    race: Race, driver: str, lap: int, timings: dict[int, LapTiming], *, decimals: int | None = 4
) -> dict[str, Any]:
    """One completed lap as a timing feed posts it to a race session: the timing row (the reader's
    lap table, encoded as the request's `timing`) and the car data (null where the car has none).

    timings: driver_lap_timings of the driver (pass it in: a replay asks for every lap of a car).
    """
    record = timing_record(timings[lap])
    row = race.laps[(race.laps["Driver"] == driver) & (race.laps["LapNumber"] == lap)].iloc[0]
    position = float(row["Position"])
    try:
        telemetry: dict[str, Any] | None = lap_samples(race, driver, lap, decimals)
    except DataError:  # no car data for this car or this lap: the lap still counts for the gaps
        telemetry = None
    return {
        "car": driver,
        "lap_number": int(lap),
        "timing": {
            "lap_time_s": record["lap_time_s"],
            "lap_end_s": float(row["Time"]),
            "position": int(position) if np.isfinite(position) else None,
            "tyre_life": record["tyre_life"],
            "stint": record["stint"],
            "compound": record["compound"],
            "track_status": record["track_status"],
            "pit_in": record["pit_in"],
            "pit_out": record["pit_out"],
        },
        "telemetry": telemetry,
    }
