"""Lap-time model (TUM race-simulation form, domain-notes.md section 1.1) and the field that races.

    t_lap = t_base + t_car + t_driver                       pace of the car/driver pair
          + k0[compound] + k1 * wear + cliff(wear)           tires (wear in "virtual laps")
          + t_cold (first lap of a stint)
          + fuel_mass * fuel_sens                            fuel at the start of the lap
          + lap 1: t_firstlap + (grid - 1) * t_pergrid + start performance
          + DRS / dirty air / duels / blocking               interactions (strategist.sim.race)
          + pit in/out losses, SC/VSC                        (strategist.sim.race)
          + N(0, sigma_driver)                               driver noise

Degradation per lap is compound x track severity x driver factor (section 1.2: fitted per-compound
rates are confounded by track choice, so a product form is the honest synthetic model), with a
quadratic "cliff" once wear passes the compound's usable life.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from strategist.sim.eras import Era
from strategist.sim.params import TumLibrary, TumRace, fisk_sample

COMPOUNDS: tuple[str, ...] = ("SOFT", "MEDIUM", "HARD")
COLD_TIRE_S = 1.0  # TUM t_add_coldtires, every one of the 6,583 entries
CLIFF_COEF_S = 0.045  # s per (lap past the usable life)^2
HEALTH_ZERO_AT = 1.35  # tire health reaches 0 at this multiple of the usable life
WEAR_MULT_SC, WEAR_MULT_VSC = 0.25, 0.5
FUEL_MULT_SC, FUEL_MULT_VSC = 0.25, 0.5
SC_LAP_MULT, VSC_LAP_MULT = 1.6, 1.4

TEAMS: tuple[tuple[str, str], ...] = (
    ("Aurora Racing", "2E6BD6"),
    ("Vanguard F1", "C8102E"),
    ("Meridian GP", "00A19C"),
    ("Halcyon Motorsport", "F28C28"),
    ("Polaris Racing", "2D8A3E"),
    ("Kestrel F1 Team", "8A2BE2"),
    ("Ardent Racing", "B8860B"),
    ("Northwind GP", "1F3A93"),
    ("Solstice Motorsport", "E0115F"),
    ("Ironbridge Racing", "5A5A5A"),
)
# Fictional drivers: (number, abbreviation, first name, last name)
DRIVERS: tuple[tuple[int, str, str, str], ...] = (
    (2, "ALV", "Marco", "Alvarez"),
    (3, "BRN", "Tom", "Brennan"),
    (5, "CAS", "Luca", "Castelli"),
    (6, "DUP", "Hugo", "Dupont"),
    (7, "EKS", "Nils", "Ekstrom"),
    (8, "FAR", "Omar", "Farouk"),
    (9, "GRE", "Sam", "Greene"),
    (12, "HOL", "Jan", "Holm"),
    (13, "IVA", "Pavel", "Ivanov"),
    (15, "JAR", "Diego", "Jaramillo"),
    (17, "KAT", "Ren", "Kato"),
    (19, "LIN", "Erik", "Lindqvist"),
    (21, "MOR", "Felix", "Moreau"),
    (25, "NAK", "Yuto", "Nakamura"),
    (26, "OKA", "Kwame", "Okafor"),
    (28, "PRI", "Owen", "Price"),
    (30, "QUI", "Mateo", "Quiroga"),
    (33, "ROS", "Adam", "Rossi"),
    (37, "SVE", "Lars", "Svensson"),
    (41, "TAN", "Wei", "Tan"),
    (43, "UHL", "Max", "Uhlig"),
    (45, "VOS", "Ruben", "Vos"),
    (47, "WAL", "Ian", "Walsh"),
    (50, "XAV", "Andre", "Xavier"),
)


@dataclass
class Entry:
    """One car/driver in one race."""

    number: int
    abbreviation: str
    first_name: str
    last_name: str
    team: str
    team_color: str
    team_idx: int
    pace_deficit_s: float  # car + driver deficit to the fastest pair
    noise_sigma_s: float
    deg_factor: float  # driver x car tire treatment
    start_perf_s: float  # lap-1 gain/loss drawn for this race
    pit_fisk: tuple[float, float, float]
    pit_add_s: float  # team's extra standstill over the 1.9 s minimum
    grid: int = 0
    plan: list[tuple[int, str]] = field(default_factory=list)  # [(pit lap, next compound)]
    start_compound: str = "MEDIUM"
    retire_lap: int | None = None  # the lap it does not complete
    retire_reason: str = ""


@dataclass
class RaceSetup:
    """Everything drawn for one race before the lights go out."""

    track: str
    era: Era
    tum: TumRace
    n_laps: int
    base_time_s: float  # fuel-free, fresh-soft race pace of the fastest pair
    fuel_start_kg: float
    fuel_per_lap_kg: float
    fuel_sens_s_per_kg: float
    severity: float  # track tire severity (1 = average)
    deg_rate: dict[str, float]  # s/lap at severity, before the driver factor
    tire_life: dict[str, float]  # usable laps before the cliff
    drs_effect_s: float
    dirty_air_a_s: float
    overtake_threshold_s: float
    entries: list[Entry]
    sc_events: list[tuple[int, int, str]]  # (first lap, n laps, "SC" | "VSC")

    def tire_time_s(self, entry: Entry, compound: str, wear: np.ndarray | float) -> np.ndarray:
        """Fresh-compound offset + degradation + cliff, s."""
        w = np.asarray(wear, dtype=float)
        life = self.tire_life[compound]
        k1 = self.deg_rate[compound] * entry.deg_factor
        cliff = CLIFF_COEF_S * np.maximum(w - life, 0.0) ** 2
        return self.era.compound_offset_s[compound] + k1 * w + cliff

    def tire_health(self, compound: str, wear: np.ndarray | float) -> np.ndarray:
        return np.clip(
            1.0 - np.asarray(wear, dtype=float) / (HEALTH_ZERO_AT * self.tire_life[compound]), 0.0, 1.0
        )

    def dirty_air_s(self, gap_s: np.ndarray) -> np.ndarray:
        """Lap-time loss following a car at `gap_s` (at the line), s; zero beyond 2.5 s."""
        g = np.asarray(gap_s, dtype=float)
        return np.where(g < 2.5, self.dirty_air_a_s * np.exp(-g / self.era.dirty_air_g0_s), 0.0)

    def dirty_air_wear_mult(self, gap_s: np.ndarray) -> np.ndarray:
        g = np.asarray(gap_s, dtype=float)
        return 1.0 + np.where(
            g < 2.5, self.era.dirty_air_wear_kappa * np.exp(-g / self.era.dirty_air_g0_s), 0.0
        )


def draw_setup(
    rng: np.random.Generator,
    *,
    track: str,
    era: Era,
    library: TumLibrary,
    ref_time_s: float,
    lap_length_m: float,
    n_cars: int,
    n_laps: int | None,
) -> RaceSetup:
    """Draw a race: a fitted TUM race at this circuit when there is one (any circuit otherwise), a field
    of n_cars, strategies, retirements and safety-car phases."""
    same_track = library.races_at(track)
    pool = same_track or list(library.races)
    tum = pool[int(rng.integers(len(pool)))]
    if n_laps is None:
        n_laps = tum.n_laps if same_track else int(np.clip(round(305_000 / lap_length_m), 44, 78))
    n_laps = int(n_laps)
    # Base pace comes from the circuit's own physics (the car model is tuned to real race pace), so
    # speed traces and lap times agree; TUM's qualifying times belong to other layouts and cars.
    base_time = ref_time_s * float(rng.uniform(0.995, 1.005))
    severity = float(np.clip(tum.deg_k1_median / 0.045, 0.6, 2.2) * rng.uniform(0.85, 1.15))
    deg_rate = {c: era.deg_rate_s[c] * severity for c in COMPOUNDS}
    tire_life = {c: era.tire_life_laps[c] / severity**0.6 for c in COMPOUNDS}
    fuel_start = era.start_fuel_kg
    fuel_per_lap = fuel_start / n_laps * float(rng.uniform(0.97, 1.0))

    entries = _draw_field(rng, era, tum, library, n_cars)
    # Grid: qualifying order = pace + a little noise.
    quali = np.array([e.pace_deficit_s for e in entries]) + rng.normal(0.0, 0.15, len(entries))
    for pos, idx in enumerate(np.argsort(quali, kind="stable")):
        entries[idx].grid = pos + 1
    for e in entries:
        _plan_strategy(rng, e, n_laps, tire_life)
    sc_events = _draw_fcy(rng, library, n_laps)
    _draw_retirements(rng, entries, n_laps, sc_events)
    return RaceSetup(
        track=track,
        era=era,
        tum=tum,
        n_laps=n_laps,
        base_time_s=base_time,
        fuel_start_kg=fuel_start,
        fuel_per_lap_kg=fuel_per_lap,
        fuel_sens_s_per_kg=tum.fuel_sens_s_per_kg,
        severity=severity,
        deg_rate=deg_rate,
        tire_life=tire_life,
        drs_effect_s=era.drs_effect_s * tum.drs_effect_s / -0.5,
        dirty_air_a_s=era.dirty_air_a_s,
        overtake_threshold_s=era.overtake_threshold_s * float(np.clip(tum.gap_overtake_s / 2.03, 0.6, 1.6)),
        entries=entries,
        sc_events=sc_events,
    )


def _draw_field(
    rng: np.random.Generator, era: Era, tum: TumRace, library: TumLibrary, n_cars: int
) -> list[Entry]:
    n_teams = (n_cars + 1) // 2
    # Team deficits: the fitted race's spread of t_car, rescaled a little (2023 fields are closer).
    car_pool = np.array(tum.car_deficits_s) - min(tum.car_deficits_s)
    spread = 0.75 if era.name >= "2022" else 1.0
    team_deficit = np.sort(rng.choice(car_pool, size=n_teams, replace=len(car_pool) < n_teams)) * spread
    team_deficit -= team_deficit.min()
    drv_pool = np.array(tum.driver_deficits_s)
    team_order = rng.permutation(len(TEAMS))[:n_teams]
    driver_order = rng.permutation(len(DRIVERS))[:n_cars]
    entries = []
    for i in range(n_cars):
        t = i // 2
        team_name, color = TEAMS[int(team_order[t % len(team_order)])]
        number, abbr, first, last = DRIVERS[int(driver_order[i])]
        fisk = library.pit_fisk[int(rng.integers(len(library.pit_fisk)))]
        entries.append(
            Entry(
                number=number,
                abbreviation=abbr,
                first_name=first,
                last_name=last,
                team=team_name,
                team_color=color,
                team_idx=t,
                pace_deficit_s=float(team_deficit[t] + rng.choice(drv_pool) * 0.8),
                noise_sigma_s=float(rng.choice(library.lap_sigma_s)) * 0.5,
                deg_factor=float(np.exp(rng.normal(0.0, 0.2))),
                start_perf_s=float(rng.normal(0.0, 0.15)),
                pit_fisk=fisk,
                pit_add_s=float(rng.uniform(0.4, 1.2)),
            )
        )
    return entries


def _plan_strategy(rng: np.random.Generator, entry: Entry, n_laps: int, life: dict[str, float]) -> None:
    """Pick stints that cover the race before each set's cliff, with two different dry compounds."""
    one_stop: list[tuple[str, ...]] = [
        ("MEDIUM", "HARD"),
        ("HARD", "MEDIUM"),
        ("SOFT", "HARD"),
        ("SOFT", "MEDIUM"),
    ]
    two_stop: list[tuple[str, ...]] = [
        ("SOFT", "MEDIUM", "MEDIUM"),
        ("MEDIUM", "HARD", "MEDIUM"),
        ("SOFT", "HARD", "SOFT"),
        ("MEDIUM", "MEDIUM", "HARD"),
    ]
    three_stop: list[tuple[str, ...]] = [
        ("SOFT", "MEDIUM", "MEDIUM", "HARD"),
        ("MEDIUM", "HARD", "MEDIUM", "HARD"),
    ]

    def feasible(seq: tuple[str, ...]) -> bool:
        return sum(life[c] for c in seq) * 1.05 >= n_laps

    options = [s for s in one_stop if feasible(s)]
    if not options or rng.uniform() < 0.3:
        options = [s for s in two_stop if feasible(s)] or options
    if not options:
        options = three_stop
    seq = options[int(rng.integers(len(options)))]
    if n_laps < 8:
        seq = seq[:1]  # sprint-length test races: no stop
    weights = np.array([life[c] for c in seq]) * rng.uniform(0.85, 1.15, len(seq))
    lengths = weights / weights.sum() * n_laps
    pit_laps = np.round(np.cumsum(lengths)[:-1]).astype(int) + rng.integers(-2, 3, len(seq) - 1)
    pit_laps = np.clip(pit_laps, 3, n_laps - 3)
    entry.start_compound = seq[0]
    entry.plan = []
    last = 0
    for lap, comp in zip(pit_laps, seq[1:], strict=True):
        lap = int(max(lap, last + 3))
        if lap < n_laps:
            entry.plan.append((lap, comp))
            last = lap


def _draw_fcy(rng: np.random.Generator, library: TumLibrary, n_laps: int) -> list[tuple[int, int, str]]:
    """Safety cars from TUM's Monte Carlo distributions; one VSC in ~30 % of races."""
    events: list[tuple[int, int, str]] = []
    n_sc = int(rng.choice(len(library.sc_count_p), p=np.array(library.sc_count_p) / sum(library.sc_count_p)))
    start_p = np.array(library.sc_start_p) / sum(library.sc_start_p)
    dur_p = np.array(library.sc_duration_p) / sum(library.sc_duration_p)
    for _ in range(n_sc):
        b = int(rng.choice(len(start_p), p=start_p))
        if b == 0:
            first = 1
        else:
            lo, hi = (b - 1) / 5.0, b / 5.0
            first = int(np.clip(round(rng.uniform(lo, hi) * n_laps), 2, n_laps - 2))
        events.append((first, int(rng.choice(len(dur_p), p=dur_p)) + 1, "SC"))
    if rng.uniform() < 0.3:
        vsc_p = np.array(library.vsc_duration_p) / sum(library.vsc_duration_p)
        events.append(
            (int(rng.integers(3, max(4, n_laps - 3))), int(rng.choice(len(vsc_p), p=vsc_p)) + 1, "VSC")
        )
    # Keep events apart and inside the race: drop the later of overlapping phases.
    events.sort()
    kept: list[tuple[int, int, str]] = []
    for first, n, kind in events:
        if first == 1 and kind == "SC":
            first = 2  # a lap-1 incident brings the SC out at the end of lap 1
        if kept and first <= kept[-1][0] + kept[-1][1] + 1:
            continue
        n = min(n, n_laps - first - 1)
        if n >= 1:
            kept.append((first, n, kind))
    return kept


def _draw_retirements(
    rng: np.random.Generator, entries: list[Entry], n_laps: int, sc_events: list[tuple[int, int, str]]
) -> None:
    """About 1-2 retirements a race (TUM accident 4.5-11 %, failure 4-22 % per race); an accident
    retirement is placed on the first lap of a safety-car phase when one is free."""
    free_sc = [first for first, _, kind in sc_events if kind == "SC"]
    for e in entries:
        u = rng.uniform()
        if u < 0.04:
            if free_sc:
                e.retire_lap, e.retire_reason = free_sc.pop(0), "Accident"
            else:
                e.retire_lap, e.retire_reason = int(rng.integers(1, n_laps)), "Collision damage"
        elif u < 0.08:
            e.retire_lap = int(rng.integers(2, n_laps))
            e.retire_reason = str(rng.choice(["Engine", "Power Unit", "Hydraulics", "Gearbox", "Brakes"]))
    # No race without enough runners to interact: at most a quarter of the field retires.
    retired = [e for e in entries if e.retire_lap is not None]
    for e in retired[max(1, len(entries) // 4) :]:
        e.retire_lap, e.retire_reason = None, ""


def standstill_s(rng: np.random.Generator, entry: Entry) -> float:
    """Pit standstill: 1.9 s minimum + team add-on + Fisk-distributed random part (TUM), s."""
    c, loc, scale = entry.pit_fisk
    return 1.9 + 0.3 * entry.pit_add_s + fisk_sample(rng, c, loc, scale)
