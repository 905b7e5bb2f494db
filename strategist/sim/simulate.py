"""Entry points: simulate one race or a season into FastF1-layout race folders."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from strategist.errors import StrategistError
from strategist.sim import speed_profile as sp
from strategist.sim.eras import get_era
from strategist.sim.laptime import draw_setup
from strategist.sim.params import load_library
from strategist.sim.race import simulate_timing
from strategist.sim.telemetry import build_traces, pit_lane, sample_car
from strategist.sim.tracks import available_tracks, default_calendar, load_track
from strategist.sim.writer import write_race

log = logging.getLogger(__name__)
SIM_FORMAT_VERSION = 1


def _race_seed(seed: int, round_number: int, track: str) -> np.random.SeedSequence:
    # Independent, reproducible streams per race: the season seed, the round and the circuit name.
    return np.random.SeedSequence([seed, round_number, *track.encode("utf-8")])


def simulate_race(
    out_dir: Path,
    *,
    track: str | None = None,
    seed: int = 0,
    era: str = "2023",
    n_cars: int = 20,
    n_laps: int | None = None,
    round_number: int = 1,
    folder_name: str | None = None,
) -> Path:
    """Simulate one race and write it to `out_dir/<NN_track>/`; returns that folder.

    track: a name from available_tracks() (default: the first circuit of the default calendar).
    n_laps: race distance (default: the fitted race's distance, or ~305 km).
    """
    era_spec = get_era(era)
    track_name = track or default_calendar()[0]
    if track_name not in available_tracks():
        raise StrategistError(f"unknown track {track_name!r}; available: {', '.join(available_tracks())}")
    if not 2 <= n_cars <= 24:
        raise StrategistError(f"n_cars must be between 2 and 24, got {n_cars}")
    if n_laps is not None and n_laps < 3:
        raise StrategistError(f"n_laps must be at least 3, got {n_laps}")
    circuit = load_track(track_name)
    car = era_spec.car
    sens = sp.sensitivities(circuit, car)
    library = load_library()
    ss = _race_seed(seed, round_number, track_name)
    rng_setup, rng_race, rng_tel = (np.random.default_rng(s) for s in ss.spawn(3))

    setup = draw_setup(
        rng_setup,
        track=track_name,
        era=era_spec,
        library=library,
        ref_time_s=sens.ref_time_s,
        lap_length_m=circuit.length_m,
        n_cars=n_cars,
        n_laps=n_laps,
    )
    race_start_s = float(np.round(3600.0 + rng_setup.uniform(60.0, 240.0), 3))
    rec = simulate_timing(setup, rng_race, race_start_s)

    ref = sp.solve(circuit, car, sp.default_conditions(circuit, car, 1))
    lane = pit_lane(circuit, ref.v_ms[0], setup.tum.pit_inlap_s, setup.tum.pit_outlap_s)
    traces = build_traces(setup, rec, circuit, car, sens, lane, rng_tel)
    samples = {}
    for i in range(len(setup.entries)):
        laps = [(float(rec.start[li, i]), traces[(li, i)]) for li in range(setup.n_laps) if (li, i) in traces]
        if laps:
            samples[i] = sample_car(laps, car, race_start_s, rng_tel)

    year = int(era_spec.name)
    session_date = dt.datetime(year, 3, 5, 14, 0, 0) + dt.timedelta(days=14 * (round_number - 1))
    meta = {
        "format_version": SIM_FORMAT_VERSION,
        "seed": seed,
        "round": round_number,
        "era": era_spec.name,
        "track": track_name,
        "synthetic_track": circuit.synthetic,
        "track_length_m": round(circuit.length_m, 1),
        "total_laps": setup.n_laps,
        "n_cars": n_cars,
        "fuel_model": {
            "start_mass_kg": setup.fuel_start_kg,
            "consumption_kg_per_lap": round(setup.fuel_per_lap_kg, 4),
            "sensitivity_s_per_kg": setup.fuel_sens_s_per_kg,
            "consumption_mult_sc": 0.25,
            "consumption_mult_vsc": 0.5,
        },
        "base_lap_time_s": round(setup.base_time_s, 3),
        "tire_severity": round(setup.severity, 3),
        "tire_life_laps": {k: round(v, 2) for k, v in setup.tire_life.items()},
        "deg_rate_s_per_lap": {k: round(v, 4) for k, v in setup.deg_rate.items()},
        "drs_effect_s": round(setup.drs_effect_s, 3),
        "drs_zones_m": [[round(a, 1), round(b, 1)] for a, b in circuit.drs_zones],
        "dirty_air": {"a_s": setup.dirty_air_a_s, "g0_s": era_spec.dirty_air_g0_s},
        "overtake_threshold_s": round(setup.overtake_threshold_s, 3),
        "pit_lane_m": {
            "entry": round(lane.entry_m, 1),
            "exit": round(lane.exit_m, 1),
            "box": round(lane.box_m, 1),
        },
        "pit_loss_s": {"inlap": setup.tum.pit_inlap_s, "outlap": setup.tum.pit_outlap_s},
        "sc_events": [{"first_lap": a, "laps": b, "kind": c} for a, b, c in setup.sc_events],
        "race_start_session_s": race_start_s,
        "params_source": {"track": setup.tum.track, "season": setup.tum.season, "library": library.source},
        "drivers": {
            e.abbreviation: {
                "number": e.number,
                "team": e.team,
                "grid": e.grid,
                "pace_deficit_s": round(e.pace_deficit_s, 3),
                "noise_sigma_s": round(e.noise_sigma_s, 4),
                "deg_factor": round(e.deg_factor, 3),
                "retire_lap": e.retire_lap,
            }
            for e in setup.entries
        },
    }
    folder = Path(out_dir) / (folder_name or f"{round_number:02d}_{track_name.lower()}")
    write_race(
        folder,
        setup=setup,
        rec=rec,
        traces=traces,
        samples=samples,
        meta=meta,
        round_number=round_number,
        session_date=session_date,
    )
    return folder


def simulate_season(
    out_dir: Path,
    *,
    seed: int = 0,
    era: str = "2023",
    n_races: int = 20,
    tracks: list[str] | None = None,
    n_cars: int = 20,
    n_laps: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Simulate `n_races` rounds (cycling through `tracks`, default the F1 venues available) into
    `out_dir/<NN_track>/`; returns the race folders in round order."""
    calendar = list(tracks) if tracks else default_calendar()
    if not calendar:
        raise StrategistError("no tracks to simulate")
    unknown = [t for t in calendar if t not in available_tracks()]
    if unknown:
        raise StrategistError(
            f"unknown track(s) {', '.join(unknown)}; available: {', '.join(available_tracks())}"
        )
    rounds = [(r + 1, calendar[r % len(calendar)]) for r in range(n_races)]
    iterator = rounds
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rounds, desc=f"season {era} seed {seed}", unit="race")
    folders = []
    for round_number, track in iterator:
        folders.append(
            simulate_race(
                Path(out_dir),
                track=track,
                seed=seed,
                era=era,
                n_cars=n_cars,
                n_laps=n_laps,
                round_number=round_number,
            )
        )
    return folders
