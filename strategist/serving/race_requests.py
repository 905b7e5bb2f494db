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


def request_from_race(race: Race, driver: str, lap: int, *, decimals: int | None = 4) -> dict[str, Any]:
    """The /predict body for `driver` after completing `lap` (JSON-ready dict), with every lap's
    timing, so models with and without the timing context can answer it.

    decimals: rounding of the raw samples (keeps the JSON small; FastF1 times are ms-resolution);
    None keeps them exact.
    """
    choice = choose_stack_laps(lap, race.lap_infos(driver), driver=driver)
    timings = driver_lap_timings(race.driver_laps(driver))
    laps = []
    for number in choice.laps:
        raw = race.lap_telemetry(driver, number)
        laps.append(
            {
                "time_s": _values(raw.time_s, decimals),
                "channels": {name: _values(raw.channels[name], decimals) for name in contract.CHANNELS},
                "timing": timing_record(timings[number]),
            }
        )
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
