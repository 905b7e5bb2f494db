"""Realism check: the same race metrics measured on simulated and on real races.

Every metric here takes a `Race` from `strategist.data.fastf1_reader.read_race`, so simulated and
real races go through exactly the same code. Nothing here reads the simulator's ground truth
(truth.csv): the real races do not have it, and a fair comparison may only use what both have.

Metrics (definitions in docs/realism.md):
- lap-time spread within a stint: s.d. of fuel-corrected green-flag lap times around a per-stint
  linear trend (pooled residuals; also a robust s.d., 1.4826 x median absolute residual)
- degradation: per-stint OLS slope of fuel-corrected lap time vs tyre life (median over stints)
- pit loss: in-lap + out-lap - 2 x the driver's median green lap (median over stops)
- on-track passes: pairs of cars whose classified order swaps between the ends of laps L-1 and L,
  with both cars racing (no in/out lap in L-1 or L, lap L green, L > 1)
- speed trace: median Speed vs lap-distance fraction over green laps, per circuit
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from strategist.data.engine import align_raw_lap
from strategist.data.fastf1_reader import Race
from strategist.errors import DataError

MIN_STINT_LAPS = 5  # green laps a stint needs before a trend through it means anything
CLOSE_GAP_S = 1.0  # "within 1 s" of the car ahead for the pass rate
PROFILE_STEPS = 200  # speed-trace resolution along the lap (~25 m at 5 km)
MAD_TO_SD = 1.4826  # robust s.d. of a normal distribution from its median absolute deviation

# The simulator names circuits after the track files (TUM); FastF1 uses the event Location.
_CIRCUIT_ALIASES = {"catalunya": "barcelona"}


def circuit_key(name: str) -> str:
    """A name both sides agree on: lower case, no accents/spaces/dashes, simulator aliases mapped."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    key = "".join(ch for ch in plain.lower() if ch.isalnum())
    return _CIRCUIT_ALIASES.get(key, key)


# --- laps -------------------------------------------------------------------------------------


def green_laps(race: Race) -> pd.DataFrame:
    """Racing laps: a lap time, not lap 1, no pit in/out, no SC/VSC/red. Adds `fc` (fuel-corrected s)."""
    laps = race.laps
    keep = (
        np.isfinite(laps["LapTime"].to_numpy())
        & (laps["LapNumber"].to_numpy() > 1)
        & ~laps["is_pit_in"].to_numpy(dtype=bool)
        & ~laps["is_pit_out"].to_numpy(dtype=bool)
        & ~laps["is_neutralised"].to_numpy(dtype=bool)
    )
    out = laps[keep].copy()
    out["fc"] = race.fuel_model.correct(out["LapTime"].to_numpy(), out["LapNumber"].to_numpy())
    return out


@dataclass(frozen=True)
class StintFit:
    slope_s_per_lap: float  # OLS slope of fuel-corrected lap time vs tyre life
    residuals: np.ndarray  # lap time minus the stint's linear trend, s


def fit_stint(tyre_life: np.ndarray, fc_lap_s: np.ndarray) -> StintFit:
    """Least-squares line through one stint's fuel-corrected laps."""
    slope, intercept = np.polyfit(tyre_life, fc_lap_s, 1)
    return StintFit(float(slope), fc_lap_s - (intercept + slope * tyre_life))


def stint_fits(race: Race, min_laps: int = MIN_STINT_LAPS) -> list[StintFit]:
    """One fit per (driver, stint) with at least `min_laps` green laps that have a tyre life."""
    laps = green_laps(race)
    laps = laps[np.isfinite(laps["TyreLife"].to_numpy())]
    fits = []
    for _, stint in laps.groupby(["Driver", "Stint"], sort=True):
        # a stint whose laps all share one tyre life (bad data) has no slope to fit
        if len(stint) >= min_laps and stint["TyreLife"].nunique() > 1:
            fits.append(fit_stint(stint["TyreLife"].to_numpy(float), stint["fc"].to_numpy(float)))
    return fits


def pooled_residual_sd(fits: list[StintFit]) -> float:
    """s.d. of all stints' residuals, each stint losing 2 degrees of freedom to its line."""
    dof = sum(len(f.residuals) - 2 for f in fits)
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(sum(float(np.sum(f.residuals**2)) for f in fits) / dof))


def robust_residual_sd(fits: list[StintFit]) -> float:
    """1.4826 x median |residual|: the spread of ordinary laps, blind to the odd mistake or traffic lap."""
    if not fits:
        return float("nan")
    return float(MAD_TO_SD * np.median(np.abs(np.concatenate([f.residuals for f in fits]))))


def pit_losses(race: Race) -> list[float]:
    """in-lap + out-lap - 2 x driver's median green lap, for stops made under green (not lap 1)."""
    green = green_laps(race)
    median_green = green.groupby("Driver")["LapTime"].median()
    laps = race.laps.set_index(["Driver", "LapNumber"])
    losses = []
    for (driver, lap), row in laps[laps["is_pit_in"]].iterrows():
        nxt = (driver, lap + 1)
        if lap <= 1 or nxt not in laps.index or driver not in median_green.index:
            continue
        out = laps.loc[nxt]
        if not out["is_pit_out"] or row["is_neutralised"] or out["is_neutralised"]:
            continue  # a stop under SC/VSC costs far less: not the number a strategist plans with
        total = row["LapTime"] + out["LapTime"]
        if np.isfinite(total):
            losses.append(float(total - 2.0 * median_green[driver]))
    return losses


# --- on-track passes --------------------------------------------------------------------------


@dataclass
class PassCounts:
    passes: int = 0  # on-track overtakes (pair swaps)
    car_laps: int = 0  # car-laps where a car could be passed (racing in L-1 and L)
    overtaken_car_laps: int = 0  # of those, car-laps in which the car lost a place on track
    close_chances: int = 0  # a car within CLOSE_GAP_S of the car classified just ahead at the end of L-1
    close_passes: int = 0  # of those, the follower is ahead at the end of L


def on_track_passes(race: Race, close_gap_s: float = CLOSE_GAP_S) -> PassCounts:
    """Overtakes from the classified order at the line, lap by lap.

    A pair counts between lap L-1 and L only when both cars are racing: neither has an in- or
    out-lap in L-1 or L (a stop reshuffles places without a pass), lap L is green for both, L > 1
    (the start is not an overtake). Lapped cars do not create passes: a leader lapping a car is
    already ahead of it in the classification.
    """
    laps = race.laps
    pos = laps.pivot(index="LapNumber", columns="Driver", values="Position")
    t = laps.pivot(index="LapNumber", columns="Driver", values="Time")
    pit = laps.assign(p=laps["is_pit_in"] | laps["is_pit_out"]).pivot(
        index="LapNumber", columns="Driver", values="p"
    )
    neutral = laps.pivot(index="LapNumber", columns="Driver", values="is_neutralised")
    pit = pit.reindex_like(pos).fillna(True).astype(bool)
    neutral = neutral.reindex_like(pos).fillna(True).astype(bool)
    counts = PassCounts()
    lap_numbers = list(pos.index)
    for prev_lap, lap in zip(lap_numbers[:-1], lap_numbers[1:], strict=True):
        if lap - prev_lap != 1 or lap <= 1:
            continue
        p0, p1 = pos.loc[prev_lap].to_numpy(float), pos.loc[lap].to_numpy(float)
        racing = (
            np.isfinite(p0)
            & np.isfinite(p1)
            & ~pit.loc[prev_lap].to_numpy()
            & ~pit.loc[lap].to_numpy()
            & ~neutral.loc[lap].to_numpy()
        )
        idx = np.flatnonzero(racing)
        if idx.size == 0:
            continue
        a0, a1 = p0[idx], p1[idx]
        # passed[i, j]: car i was behind car j at the end of L-1 and is ahead at the end of L
        passed = (a0[:, None] > a0[None, :]) & (a1[:, None] < a1[None, :])
        counts.passes += int(passed.sum())
        counts.car_laps += idx.size
        counts.overtaken_car_laps += int(passed.any(axis=0).sum())
        # close battles: each racing car and the racing car classified directly ahead of it
        t0 = t.loc[prev_lap].to_numpy(float)[idx]
        by_pos = {p: k for k, p in enumerate(a0)}
        for k, p in enumerate(a0):
            j = by_pos.get(p - 1)
            if j is not None and 0 <= t0[k] - t0[j] < close_gap_s:
                counts.close_chances += 1
                counts.close_passes += int(a1[k] < a1[j])
    return counts


# --- speed traces -----------------------------------------------------------------------------


@dataclass
class SpeedTraces:
    """Green laps of one side at one circuit: aligned speed [n_laps, PROFILE_STEPS] and per-lap figures."""

    profiles: list[np.ndarray] = field(default_factory=list)
    lap_times: list[float] = field(default_factory=list)
    top_speeds: list[float] = field(default_factory=list)
    min_speeds: list[float] = field(default_factory=list)
    failed_laps: int = 0

    def extend(self, other: SpeedTraces) -> None:
        self.profiles += other.profiles
        self.lap_times += other.lap_times
        self.top_speeds += other.top_speeds
        self.min_speeds += other.min_speeds
        self.failed_laps += other.failed_laps

    @property
    def n_laps(self) -> int:
        return len(self.profiles)

    def quantiles(self, q: tuple[float, ...] = (0.25, 0.5, 0.75)) -> np.ndarray:
        """[len(q), PROFILE_STEPS] speed quantiles across laps at each step."""
        return np.quantile(np.stack(self.profiles), q, axis=0)


def speed_traces(race: Race, n_steps: int = PROFILE_STEPS) -> SpeedTraces:
    """Speed along the lap (aligned on each lap's own distance) for every green lap with telemetry."""
    traces = SpeedTraces()
    green = green_laps(race)
    for driver, laps in green.groupby("Driver", sort=True):
        if not race.driver_has_telemetry(driver):
            continue
        for lap, lap_time in zip(laps["LapNumber"], laps["LapTime"], strict=True):
            try:
                raw = race.lap_telemetry(driver, int(lap))
                aligned = align_raw_lap(raw, n_steps=n_steps)
            except DataError:
                traces.failed_laps += 1  # unreadable car or a lap the aligner rejects
                continue
            speed = np.asarray(raw.channels["Speed"], dtype=float)
            traces.profiles.append(aligned[:, 0].astype(float))  # channel 0 is Speed
            traces.lap_times.append(float(lap_time))
            traces.top_speeds.append(float(speed.max()))
            traces.min_speeds.append(float(speed.min()))
    return traces


@dataclass(frozen=True)
class TraceComparison:
    correlation: float  # Pearson r of the two median profiles as they are
    best_shift: float  # circular shift of the simulated profile (lap fraction) that correlates best
    best_correlation: float
    lap_time_diff_s: float  # sim - real, medians over green laps
    top_speed_diff_kmh: float  # sim - real, medians of each lap's highest sample
    min_speed_diff_kmh: float  # sim - real, medians of each lap's lowest sample


def compare_traces(sim: SpeedTraces, real: SpeedTraces) -> TraceComparison:
    """How alike two circuits' speed traces are. The start line of a track file need not sit where
    FastF1's timing line is, so the best circular shift is reported next to the plain correlation."""
    a, b = sim.quantiles((0.5,))[0], real.quantiles((0.5,))[0]
    shifted = [float(np.corrcoef(np.roll(a, k), b)[0, 1]) for k in range(a.size)]
    k_best = int(np.argmax(shifted))
    # report the shift as the smallest signed fraction (-0.5, 0.5]
    best_shift = ((k_best + a.size // 2) % a.size - a.size // 2) / a.size
    return TraceComparison(
        correlation=shifted[0],
        best_shift=float(best_shift),
        best_correlation=shifted[k_best],
        lap_time_diff_s=float(np.median(sim.lap_times) - np.median(real.lap_times)),
        top_speed_diff_kmh=float(np.median(sim.top_speeds) - np.median(real.top_speeds)),
        min_speed_diff_kmh=float(np.median(sim.min_speeds) - np.median(real.min_speeds)),
    )


# --- one side (a set of races) ----------------------------------------------------------------


@dataclass
class SideMetrics:
    """Lap and pass metrics pooled over the races of one side (simulated or real)."""

    races: int = 0
    fits: list[StintFit] = field(default_factory=list)
    pit_losses: list[float] = field(default_factory=list)
    passes: PassCounts = field(default_factory=PassCounts)

    def add(self, race: Race) -> None:
        self.races += 1
        self.fits += stint_fits(race)
        self.pit_losses += pit_losses(race)
        c = on_track_passes(race)
        for name in ("passes", "car_laps", "overtaken_car_laps", "close_chances", "close_passes"):
            setattr(self.passes, name, getattr(self.passes, name) + getattr(c, name))

    def summary(self) -> dict[str, float]:
        """The table's numbers (NaN where the side has nothing to measure)."""
        p = self.passes
        slopes = [f.slope_s_per_lap for f in self.fits]
        nan = float("nan")
        return {
            "races": float(self.races),
            "stints": float(len(self.fits)),
            "spread_sd_s": pooled_residual_sd(self.fits),
            "spread_robust_sd_s": robust_residual_sd(self.fits),
            "degradation_s_per_lap": float(np.median(slopes)) if slopes else nan,
            "pit_stops": float(len(self.pit_losses)),
            "pit_loss_s": float(np.median(self.pit_losses)) if self.pit_losses else nan,
            "overtakes_per_race": p.passes / self.races if self.races else nan,
            "overtaken_pct": 100.0 * p.overtaken_car_laps / p.car_laps if p.car_laps else nan,
            "close_chances": float(p.close_chances),
            "close_pass_pct": 100.0 * p.close_passes / p.close_chances if p.close_chances else nan,
        }


# (key, label, format) of the summary rows, in table order
SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("races", "races", "{:.0f}"),
    ("stints", "stints fitted (>= 5 green laps)", "{:.0f}"),
    ("spread_sd_s", "lap-time spread in stint, s.d. [s]", "{:.3f}"),
    ("spread_robust_sd_s", "lap-time spread in stint, robust s.d. [s]", "{:.3f}"),
    ("degradation_s_per_lap", "degradation, median stint slope [s/lap]", "{:.3f}"),
    ("pit_stops", "green-flag pit stops", "{:.0f}"),
    ("pit_loss_s", "pit loss, median [s]", "{:.1f}"),
    ("overtakes_per_race", "on-track overtakes per race", "{:.1f}"),
    ("overtaken_pct", "car-laps overtaken on track [%]", "{:.2f}"),
    ("close_chances", "car-laps within 1 s of the car ahead", "{:.0f}"),
    ("close_pass_pct", "pass rate per lap within 1 s [%]", "{:.1f}"),
)
