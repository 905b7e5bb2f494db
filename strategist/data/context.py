"""Timing context: what the timing feed says about each lap of the stack, as one float32 vector.

    context = context_vector(slots, lap_number=30, fuel=fuel_model, race_laps=57)   # [N_CONTEXT]

`slots` holds one LapTiming per lap slot in LAP_SLOTS order [L, L-1, L-2, L-5, L_base], the same laps
whose telemetry the stack carries. The dataset builder (from the race's lap table) and the gateway
(from the request's per-lap `timing`) both call this function, so a model sees the same encoding in
training and in service. Layout and encodings: strategist.contract (CONTEXT_FEATURES).

Why it exists: a model that sees earlier laps only through their speed traces (~4 Hz samples,
mean 1/Speed over 100 steps) did not match "same as last lap" on real races. The timing feed has the
exact lap times, the tyre age and compound and the track status; the pit wall reads them and so must
the model.

Rules:
- fc_delta_s is FuelModel.correct(lap time) of the slot minus the same of lap L. A lap "has no usable
  time" when none is given (NaN / None: a deleted or red-flag lap) or when the slot repeats the lap of
  the more recent slot (the stack rules substitute missing laps at a race start that way); then
  fc_delta_s is 0 and lap_time_missing 1.
- Track status: the FastF1 digit string of everything shown during the lap ("1", "12", "4", "671"),
  flags per strategist.contract.TRACK_STATUS_FLAGS; green is all flags 0.
- race_progress = lap L / race laps, clipped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from strategist.contract import (
    COMPOUNDS,
    CONTEXT_FEATURES,
    CONTEXT_SLOT_FEATURES,
    LAP_SLOTS,
    N_CONTEXT,
    N_LAP_CONTEXT,
    TRACK_STATUS_FLAGS,
)
from strategist.data.fuel import FuelModel
from strategist.errors import DataError, StackSizeError

# Substitution only ever copies the next more recent slot: L-1 <- L, L-2 <- L-1, L-5 <- L-2.
_SUBSTITUTABLE_SLOTS = (1, 2, 3)


@dataclass(frozen=True)
class LapTiming:
    """One lap of the timing feed (a FastF1 laps row, or what a team feed gives per lap)."""

    lap_number: int
    lap_time_s: float | None  # measured lap time; None or NaN: no usable time
    tyre_life: float  # laps on the set at the end of the lap
    stint: int
    stint_lap: int  # laps into the stint, 1 = the out-lap
    compound: str = ""  # SOFT, MEDIUM, HARD, INTERMEDIATE, WET; anything else is "unknown"
    track_status: str = "1"  # FastF1 TrackStatus digits shown during the lap
    pit_in: bool = False
    pit_out: bool = False


_FEATURE_INDEX = {name: i for i, name in enumerate(CONTEXT_SLOT_FEATURES)}
_N_SLOT = len(CONTEXT_SLOT_FEATURES)


def _usable_time(lap: LapTiming) -> float | None:
    t = lap.lap_time_s
    return None if t is None or not math.isfinite(t) else float(t)


def context_vector(
    slots: Sequence[LapTiming], *, fuel: FuelModel, race_laps: int, where: str = ""
) -> np.ndarray:
    """float32 [N_CONTEXT] for one car (layout: strategist.contract.CONTEXT_FEATURES).

    Raises StackSizeError for a wrong number of slots and DataError naming the slot and field for a
    value that cannot be encoded (negative tyre life, a slot lap after lap L, ...).
    """
    if len(slots) != N_LAP_CONTEXT:
        raise StackSizeError(
            f"the timing context needs exactly {N_LAP_CONTEXT} laps {list(LAP_SLOTS)}, got {len(slots)}"
        )
    if race_laps < 1:
        raise DataError(f"race_laps must be >= 1, got {race_laps}", field="race_laps")
    lap_l = slots[0]
    time_l = _usable_time(lap_l)
    fc_l = None if time_l is None else float(fuel.correct(time_l, lap_l.lap_number))
    out = np.zeros(N_CONTEXT, dtype=np.float32)
    for k, (slot_name, lap) in enumerate(zip(LAP_SLOTS, slots, strict=True)):
        _check_lap(lap, lap_l, slot_name, where)
        block = out[k * _N_SLOT : (k + 1) * _N_SLOT]  # a view: writes land in `out`
        repeated = k in _SUBSTITUTABLE_SLOTS and lap.lap_number == slots[k - 1].lap_number
        t = _usable_time(lap)
        if t is None or fc_l is None or repeated:
            block[_FEATURE_INDEX["lap_time_missing"]] = 1.0
        else:
            block[_FEATURE_INDEX["fc_delta_s"]] = float(fuel.correct(t, lap.lap_number)) - fc_l
        block[_FEATURE_INDEX["tyre_life"]] = lap.tyre_life
        block[_FEATURE_INDEX["stint_lap"]] = lap.stint_lap
        block[_FEATURE_INDEX["same_stint"]] = float(lap.stint == lap_l.stint)
        block[_FEATURE_INDEX["laps_back"]] = lap_l.lap_number - lap.lap_number
        compound = lap.compound.strip().upper()
        if compound in COMPOUNDS:
            block[_FEATURE_INDEX[f"compound_{compound.lower()}"]] = 1.0
        for name, digits in TRACK_STATUS_FLAGS.items():
            block[_FEATURE_INDEX[f"status_{name}"]] = float(any(c in digits for c in lap.track_status))
        block[_FEATURE_INDEX["pit_in"]] = float(lap.pit_in)
        block[_FEATURE_INDEX["pit_out"]] = float(lap.pit_out)
    out[CONTEXT_FEATURES.index("race_progress")] = min(max(lap_l.lap_number / race_laps, 0.0), 1.0)
    return out


def _check_lap(lap: LapTiming, lap_l: LapTiming, slot: str, where: str) -> None:
    prefix = f"{where}: " if where else ""
    if lap.lap_number < 1 or lap.lap_number > lap_l.lap_number:
        raise DataError(
            f"{prefix}slot {slot} is lap {lap.lap_number}, which is not between 1 and lap L "
            f"({lap_l.lap_number})",
            field=f"{slot}.lap_number",
        )
    if not math.isfinite(lap.tyre_life) or lap.tyre_life < 0:
        raise DataError(
            f"{prefix}slot {slot} tyre_life must be >= 0, got {lap.tyre_life}", field=f"{slot}.tyre_life"
        )
    if lap.stint_lap < 1:
        raise DataError(
            f"{prefix}slot {slot} stint_lap must be >= 1, got {lap.stint_lap}", field=f"{slot}.stint_lap"
        )


def status_digits(codes: str, *, sc: bool = False, vsc: bool = False, red: bool = False) -> str:
    """TrackStatus digits with the reader's period flags folded in (a SC period that overlaps the lap
    but is missing from the lap's own TrackStatus cell still counts as SC)."""
    extra = ("4" if sc else "") + ("6" if vsc else "") + ("5" if red else "")
    return "".join(sorted(set(codes + extra)))


def driver_lap_timings(driver_laps: pd.DataFrame) -> dict[int, LapTiming]:
    """Lap number -> LapTiming for one driver's rows of a reader lap table (Race.laps columns).

    stint_lap counts the driver's laps in each stint from its first lap; the track status folds the
    reader's SC/VSC/red period flags into the lap's own digits (status_digits)."""
    rows = driver_laps.sort_values("LapNumber")
    out: dict[int, LapTiming] = {}
    stint_start: dict[int, int] = {}
    for r in rows.itertuples(index=False):
        number, stint = int(r.LapNumber), int(r.Stint)
        stint_start.setdefault(stint, number)
        tyre = float(r.TyreLife)
        out[number] = LapTiming(
            lap_number=number,
            lap_time_s=float(r.LapTime),
            # FastF1 leaves TyreLife empty on a few laps; the stint lap is the best stand-in.
            tyre_life=tyre if np.isfinite(tyre) else float(number - stint_start[stint] + 1),
            stint=stint,
            stint_lap=number - stint_start[stint] + 1,
            compound=str(r.Compound),
            track_status=status_digits(
                str(r.TrackStatus), sc=bool(r.is_sc), vsc=bool(r.is_vsc), red=bool(r.is_red)
            ),
            pit_in=bool(r.is_pit_in),
            pit_out=bool(r.is_pit_out),
        )
    return out
