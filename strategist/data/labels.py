"""Training labels per (driver, lap): fuel-corrected pace, bad-lap risk class, tire health, regime.

Fuel-corrected lap time (FcLapTime): LapTime - fuel on board at the lap start x sensitivity. Real
races use the race's FuelModel (linear burn); simulated races use truth FuelMass, which is exact
(the simulator burns less fuel under SC/VSC).

Simulated races carry ground truth (truth.csv); real races get labels from documented rules:

Risk of target lap T = L+1 (strategist.contract.RISK_CLASSES), overtaken wins over traffic loss:
- simulated: 2 if truth Overtaken in T, else 1 if truth TrafficLoss in T > 1.5 s, else 0.
- real, 2 "overtaken": a car X that was classified behind us at the end of L is ahead of us at
  the end of T, with neither car on an in- or out-lap in L or T (a pit stop is not an overtake).
- real, 1 "traffic loss": T is a clean lap (no pit, no SC/VSC/red), we were within
  TRAFFIC_GAP_S of the car ahead on track at the end of L, and T's fuel-corrected time is more than
  TRAFFIC_LOSS_THRESHOLD_S slower than the stint's expected pace = median fuel-corrected time of the
  last (up to) 5 clean laps of the same stint before T. Without such laps: no traffic label (0).

Tire health at the end of lap L (0 dead .. 1 new):
- simulated: truth TireHealth.
- real: 1 - TyreLife / typical life of the compound, clipped to [0, 1]. The typical life is the
  90th percentile of the TyreLife at which stints of that compound ended in a pit stop in this race
  (at least 3 such stints), else a default per compound (soft 18, medium 28, hard 38 laps, the
  commonly quoted "cliff" ages; intermediate 30, wet 40). Pirelli's sets are retired before they
  are dead, so this is a proxy for wear, not a measurement.

Forecastable (pace target of a sample L -> T): 0 when T's time depends on a decision or an event the
inputs cannot know at the end of L: T is an in-lap (the team decides to pit), or a neutralisation
(SC/VSC/red) starts during T while L was green. Those samples keep their rows and are evaluated, but
training leaves them out of the pace loss: the corridor is "the next lap if it is raced as the
inputs say", and an unforecastable 20 s jump would otherwise pull every racing lap's forecast.

Regime of a sample (L -> T): `pit` if L or T is an in/out lap, else `sc` if L or T is neutralised,
else `traffic` if the gap to the car ahead at the end of L is below TRAFFIC_GAP_S, else `clean`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from strategist.contract import TRAFFIC_GAP_S, TRAFFIC_LOSS_THRESHOLD_S
from strategist.data.fastf1_reader import Race
from strategist.errors import DataError

EXPECTED_PACE_LAPS = 5
MIN_STINTS_FOR_TYPICAL_LIFE = 3
DEFAULT_TYPICAL_LIFE_LAPS = {"SOFT": 18.0, "MEDIUM": 28.0, "HARD": 38.0, "INTERMEDIATE": 30.0, "WET": 40.0}
FALLBACK_TYPICAL_LIFE_LAPS = 28.0  # unknown compound names


def typical_tire_life(laps: pd.DataFrame) -> dict[str, float]:
    """Compound -> typical life in laps, from the stints of this race that ended in a pit stop."""
    ended = laps[laps["is_pit_in"]]
    out: dict[str, float] = {}
    for compound in laps["Compound"].unique():
        lives = ended.loc[ended["Compound"] == compound, "TyreLife"].dropna().to_numpy()
        if lives.size >= MIN_STINTS_FOR_TYPICAL_LIFE:
            out[compound] = float(np.percentile(lives, 90))
        else:
            out[compound] = DEFAULT_TYPICAL_LIFE_LAPS.get(compound, FALLBACK_TYPICAL_LIFE_LAPS)
    return out


def label_table(race: Race) -> pd.DataFrame:
    """race.laps plus columns FcLapTime, Risk (as target lap), TireHealth (end of lap), GapAhead,
    and for simulated races NoiseSigma and FcCleanLapTime. One row per (Driver, LapNumber)."""
    laps = race.laps.copy()
    laps["FcLapTime"] = race.fuel_model.correct(laps["LapTime"].to_numpy(), laps["LapNumber"].to_numpy())
    gaps = race.gaps.set_index(["Driver", "LapNumber"])
    key = pd.MultiIndex.from_frame(laps[["Driver", "LapNumber"]])
    laps["GapAhead"] = gaps["GapAhead"].reindex(key).to_numpy()

    if race.truth is not None:
        truth = race.truth.copy()
        truth["Driver"] = truth["Driver"].astype(str)
        truth["LapNumber"] = pd.to_numeric(truth["LapNumber"], errors="coerce")
        truth = (
            truth.dropna(subset=["LapNumber"])
            .astype({"LapNumber": np.int64})
            .set_index(["Driver", "LapNumber"])
        )
        if truth.index.duplicated().any():
            d, lap = truth.index[truth.index.duplicated()][0]
            raise DataError(
                "truth row appears twice", file=f"{race.source}/truth.csv", driver=d, lap=int(lap)
            )
        t = truth.reindex(key)
        overtaken = (
            t["Overtaken"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).to_numpy(dtype=bool)
        )
        risk = np.where(
            overtaken, 2, np.where(t["TrafficLoss"].to_numpy(dtype=float) > TRAFFIC_LOSS_THRESHOLD_S, 1, 0)
        )
        laps["Risk"] = np.where(t["TrafficLoss"].isna().to_numpy(), -1, risk)  # -1: no truth row
        laps["TireHealth"] = t["TireHealth"].to_numpy(dtype=float)
        laps["NoiseSigma"] = t["NoiseSigma"].to_numpy(dtype=float)
        # The simulator knows the fuel on board exactly (it burns less under SC/VSC than the
        # linear model assumes), so simulated laps are corrected with truth FuelMass.
        fuel_s = t["FuelMass"].to_numpy(dtype=float) * race.fuel_model.sensitivity_s_per_kg
        laps["FcLapTime"] = laps["LapTime"].to_numpy() - fuel_s
        laps["FcCleanLapTime"] = t["CleanLapTime"].to_numpy(dtype=float) - fuel_s
    else:
        laps["Risk"] = _real_risk(laps)
        typical = typical_tire_life(laps)
        life = laps["Compound"].map(typical).to_numpy(dtype=float)
        laps["TireHealth"] = np.clip(1.0 - laps["TyreLife"].to_numpy(dtype=float) / life, 0.0, 1.0)
        laps["NoiseSigma"] = np.nan
        laps["FcCleanLapTime"] = np.nan
    return laps


def _real_risk(laps: pd.DataFrame) -> np.ndarray:
    """Risk class of each row as the *target* lap T (uses lap L = T-1 of the same driver)."""
    by_key = laps.set_index(["Driver", "LapNumber"])
    pit = (by_key["is_pit_in"] | by_key["is_pit_out"]).to_dict()
    pos = by_key["Position"].to_dict()
    risk = np.zeros(len(laps), dtype=np.int64)
    # Position tables per lap for the overtake rule: lap -> {driver: position}
    positions: dict[int, dict[str, float]] = {}
    for (drv, lap), p in pos.items():
        if np.isfinite(p):
            positions.setdefault(int(lap), {})[drv] = p

    for i, row in enumerate(laps.itertuples(index=False)):
        d, target = row.Driver, int(row.LapNumber)
        prev = target - 1
        if prev < 1 or (d, prev) not in pit:
            continue
        if pit[(d, target)] or pit[(d, prev)]:
            continue
        before, after = positions.get(prev, {}), positions.get(target, {})
        my_before, my_after = before.get(d), after.get(d)
        if my_before is not None and my_after is not None:
            for other, p_before in before.items():
                if other == d or p_before < my_before or other not in after:
                    continue
                if (
                    after[other] < my_after
                    and not pit.get((other, prev), True)
                    and not pit.get((other, target), True)
                ):
                    risk[i] = 2
                    break
        if risk[i]:
            continue
        gap = by_key.at[(d, prev), "GapAhead"]
        if row.is_neutralised or not (np.isfinite(gap) and gap < TRAFFIC_GAP_S):
            continue
        stint = laps[(laps["Driver"] == d) & (laps["Stint"] == row.Stint) & (laps["LapNumber"] < target)]
        clean = stint[
            ~(stint["is_pit_in"] | stint["is_pit_out"] | stint["is_neutralised"]) & (stint["LapNumber"] > 1)
        ]
        recent = clean["FcLapTime"].dropna().to_numpy()[-EXPECTED_PACE_LAPS:]
        if recent.size and row.FcLapTime - float(np.median(recent)) > TRAFFIC_LOSS_THRESHOLD_S:
            risk[i] = 1
    return risk


def pace_forecastable(l_row: pd.Series | object, t_row: pd.Series | object) -> bool:
    """False when T is an in-lap or a neutralisation starts in T after a green L (see module doc)."""
    if t_row.is_pit_in:  # type: ignore[union-attr]
        return False
    return not (t_row.is_neutralised and not l_row.is_neutralised)  # type: ignore[union-attr]


def regime(l_row: pd.Series | object, t_row: pd.Series | object) -> str:
    """Regime of a sample from the label-table rows of lap L and target lap T (see module doc)."""
    if l_row.is_pit_in or l_row.is_pit_out or t_row.is_pit_in or t_row.is_pit_out:  # type: ignore[union-attr]
        return "pit"
    if l_row.is_neutralised or t_row.is_neutralised:  # type: ignore[union-attr]
        return "sc"
    gap = l_row.GapAhead  # type: ignore[union-attr]
    if np.isfinite(gap) and gap < TRAFFIC_GAP_S:
        return "traffic"
    return "clean"
