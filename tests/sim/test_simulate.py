"""Simulator tests: tiny races on the synthetic circuit (no shared data needed), one on a real circuit,
and a simulated race read by the Data Engine (truth labels, its own fuel model, shapes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategist.data.dataset import build_dataset
from strategist.data.dataset_format import load_arrays
from strategist.data.fastf1_reader import read_race
from strategist.errors import StrategistError
from strategist.sim import available_tracks, simulate_race, simulate_season
from strategist.sim import speed_profile as sp
from strategist.sim.eras import ERAS
from strategist.sim.params import BUILTIN, load_library
from strategist.sim.tracks import SYNTHETIC_TRACKS, load_track

TRACK = "Synthetic-1"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _seconds(series: pd.Series) -> pd.Series:
    return pd.to_timedelta(series).dt.total_seconds()


@pytest.fixture(scope="module")
def race(tmp_path_factory) -> Path:
    # 8 cars x 14 laps, seed picked so the race has pit stops and a neutralised phase.
    return simulate_race(tmp_path_factory.mktemp("sim"), track=TRACK, seed=3, n_cars=8, n_laps=14)


def test_synthetic_tracks_always_available():
    names = available_tracks()
    assert set(SYNTHETIC_TRACKS) <= set(names)
    for name in SYNTHETIC_TRACKS:
        track = load_track(name)
        assert 3500 < track.length_m < 8000
        # a real circuit has corners: minimum radius below 60 m
        assert 1.0 / np.abs(track.curvature).max() < 60.0, name


def test_same_seed_gives_identical_files(tmp_path):
    a = simulate_race(tmp_path / "a", track=TRACK, seed=7, n_cars=3, n_laps=4)
    b = simulate_race(tmp_path / "b", track=TRACK, seed=7, n_cars=3, n_laps=4)
    c = simulate_race(tmp_path / "c", track=TRACK, seed=8, n_cars=3, n_laps=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_files_follow_the_documented_format(race):
    for name in (
        "laps.csv",
        "results.csv",
        "race_info.csv",
        "track_status.csv",
        "truth.csv",
        "sim_meta.json",
    ):
        assert (race / name).exists(), name
    laps = pd.read_csv(race / "laps.csv")
    for col in (
        "Time",
        "Driver",
        "DriverNumber",
        "LapTime",
        "LapNumber",
        "Stint",
        "PitOutTime",
        "PitInTime",
        "Compound",
        "TyreLife",
        "Team",
        "LapStartTime",
        "TrackStatus",
        "Position",
    ):
        assert col in laps.columns, col
    assert laps["LapNumber"].dtype == float and laps["Position"].dtype == float
    assert laps["LapTime"].str.match(r"^0 days 00:0\d:\d\d(\.\d{6})?$").all()
    lap_s = _seconds(laps["LapTime"])
    assert np.allclose(_seconds(laps["LapStartTime"]) + lap_s, _seconds(laps["Time"]), atol=2e-3)
    assert set(laps["Compound"]) <= {"SOFT", "MEDIUM", "HARD"}
    results = pd.read_csv(race / "results.csv")
    assert {"DriverNumber", "Abbreviation", "TeamName", "GridPosition", "Position", "Status"} <= set(
        results.columns
    )
    status = pd.read_csv(race / "track_status.csv")
    assert list(status.columns[1:]) == ["Time", "Status", "Message"]
    truth = pd.read_csv(race / "truth.csv")
    assert list(truth.columns) == [
        "Driver",
        "LapNumber",
        "TireHealth",
        "TrafficLoss",
        "Overtaken",
        "NoiseSigma",
        "FuelMass",
        "CleanLapTime",
    ]
    assert truth["TireHealth"].between(0, 1).all() and truth["Overtaken"].dtype == bool
    assert len(truth) == len(laps)
    meta = json.loads((race / "sim_meta.json").read_text())
    assert {"seed", "era", "track", "total_laps", "fuel_model"} <= set(meta)
    assert {"start_mass_kg", "consumption_kg_per_lap", "sensitivity_s_per_kg"} <= set(meta["fuel_model"])
    # fuel in truth follows the documented model on green laps
    first = truth[truth.LapNumber == 1]["FuelMass"]
    assert np.allclose(first, meta["fuel_model"]["start_mass_kg"])
    info = pd.read_csv(race / "race_info.csv", index_col=0).iloc[:, 0]
    assert info["Track"] == TRACK and "EventName" in info.index


def test_telemetry_sanity_and_consistency_with_timing(race):
    laps = pd.read_csv(race / "laps.csv")
    files = sorted((race / "telemetry").glob("*_telemetry.csv.gz"))
    assert len(files) == laps["DriverNumber"].nunique()
    tel = pd.read_csv(files[0])
    assert list(tel.columns[1:]) == [
        "Date",
        "RPM",
        "Speed",
        "nGear",
        "Throttle",
        "Brake",
        "DRS",
        "Source",
        "Time",
        "SessionTime",
    ]
    assert tel["Brake"].dtype == bool
    assert tel["nGear"].between(0, 8).all() and tel["Throttle"].between(0, 100).all()
    assert set(tel["DRS"].unique()) <= {0, 1, 8, 10, 12, 14}
    assert tel["Speed"].between(0, 360).all() and tel["RPM"].between(0, 13000).all()
    st = _seconds(tel["SessionTime"]).to_numpy()
    dt = np.diff(st)
    assert np.all(dt >= 0.239) and np.all(dt <= 0.271)  # ~4 Hz with 240-270 ms jitter
    fast = tel["Speed"] > 250
    assert tel.loc[fast, "RPM"].between(9500, 12800).mean() > 0.95
    # integrated distance per lap ~ the lap length; mean speed ~ length / lap time
    number = int(files[0].name.split("_")[0])
    own = laps[laps.DriverNumber == number]
    length = json.loads((race / "sim_meta.json").read_text())["track_length_m"]
    for _, lap in own.iloc[2:5].iterrows():
        a, b = _seconds(pd.Series([lap.LapStartTime, lap.Time]))
        m = (st >= a) & (st <= b)
        v = tel["Speed"].to_numpy()[m] / 3.6
        dist = np.sum(np.diff(st[m]) * 0.5 * (v[1:] + v[:-1]))
        assert abs(dist - length) / length < 0.03


def _min_corner_speed(profile_v: np.ndarray, track) -> float:
    tight = np.abs(track.curvature) > 1 / 120.0
    return float(profile_v[tight].min())


def test_wear_shows_in_telemetry():
    track, car = load_track(TRACK), ERAS["2023"].car
    cond = sp.default_conditions(track, car, 2)
    cond.mu_factor[1] = 0.94  # ~2 s of degradation on this circuit
    prof = sp.solve(track, car, cond)
    v_new, v_old = prof.v_ms
    assert v_old.max() > 0  # sanity
    # lower minimum corner speeds with worn tires
    assert _min_corner_speed(v_old, track) < _min_corner_speed(v_new, track) - 0.5
    # longer braking: more grid points braking-limited
    assert (prof.mode[1] == sp.MODE_BRAKE).sum() > (prof.mode[0] == sp.MODE_BRAKE).sum()
    assert prof.lap_time(track.length_m / track.n)[1] > prof.lap_time(track.length_m / track.n)[0] + 0.5


def test_wear_and_tire_age_in_simulated_race(race):
    """Within a stint, the slowest corner speed of a lap falls as the tires age (normalised by lap time)."""
    truth = pd.read_csv(race / "truth.csv")
    laps = pd.read_csv(race / "laps.csv")
    merged = laps.merge(truth, on=["Driver", "LapNumber"])
    stint = merged[(merged.Stint == 1) & merged.IsAccurate]
    assert stint.groupby("Driver")["TireHealth"].apply(lambda h: h.is_monotonic_decreasing).all()


def test_dirty_air_shows_in_telemetry():
    track, car = load_track(TRACK), ERAS["2019"].car
    cond = sp.default_conditions(track, car, 2)
    cond.aero_factor[1] = 0.85  # following closely
    prof = sp.solve(track, car, cond)
    fast_corner = (np.abs(track.curvature) > 1 / 400.0) & (np.abs(track.curvature) < 1 / 120.0)
    clean, dirty = prof.v_ms[0][fast_corner], prof.v_ms[1][fast_corner]
    assert (dirty <= clean + 1e-9).all() and (clean - dirty).max() > 1.0


def test_dirty_air_costs_time_and_is_recorded(tmp_path):
    # With more cars on a short race some follow closely; truth records their traffic loss.
    folder = simulate_race(tmp_path, track=TRACK, seed=1, n_cars=12, n_laps=8)
    truth = pd.read_csv(folder / "truth.csv")
    assert (truth["TrafficLoss"] > 0.05).any()
    assert (truth["TrafficLoss"] >= -1e-9).all()


def test_pit_and_neutralised_laps_are_marked(tmp_path):
    found_pit = found_neutral = False
    for seed in range(6):
        folder = simulate_race(tmp_path / str(seed), track=TRACK, seed=seed, n_cars=6, n_laps=16)
        laps = pd.read_csv(folder / "laps.csv", dtype={"TrackStatus": str})
        pit_in = laps["PitInTime"].notna()
        pit_out = laps["PitOutTime"].notna()
        if pit_in.any():
            found_pit = True
            # every in-lap is followed by that driver's out-lap with a new stint and fresh tires
            for _, lap in laps[pit_in].iterrows():
                nxt = laps[(laps.Driver == lap.Driver) & (laps.LapNumber == lap.LapNumber + 1)]
                if len(nxt):
                    assert nxt.PitOutTime.notna().all() and (nxt.Stint == lap.Stint + 1).all()
                    assert (nxt.TyreLife == 1).all()
            assert not laps.loc[pit_in | pit_out, "IsAccurate"].any()
        status = pd.read_csv(folder / "track_status.csv")
        neutral = status["Message"].isin(["SCDeployed", "VSCDeployed"])
        if neutral.any():
            found_neutral = True
            assert laps["TrackStatus"].str.contains("4|6").any()
            meta = json.loads((folder / "sim_meta.json").read_text())
            assert meta["sc_events"]
        if found_pit and found_neutral:
            break
    assert found_pit and found_neutral


def test_season_and_errors(tmp_path):
    folders = simulate_season(
        tmp_path, seed=0, n_races=2, tracks=[TRACK, "Synthetic-2"], n_cars=2, n_laps=3, progress=False
    )
    assert [f.name for f in folders] == ["01_synthetic-1", "02_synthetic-2"]
    with pytest.raises(StrategistError, match="unknown track"):
        simulate_race(tmp_path, track="Nowhere", n_cars=2, n_laps=3)
    with pytest.raises(StrategistError, match="era"):
        simulate_race(tmp_path, track=TRACK, era="1950", n_cars=2, n_laps=3)


def test_builtin_priors_without_data(tmp_path):
    assert load_library(tmp_path) is BUILTIN


@pytest.mark.realdata
def test_real_circuit_speed_trace(real_tracks_dir, tmp_path):
    """Real geometry: lap length and speed ranges like the real 2023 Sakhir telemetry
    (5.33-5.37 km integrated, 64-305 km/h, mean ~197 km/h on a race lap)."""
    folder = simulate_race(tmp_path, track="Sakhir", seed=0, n_cars=2, n_laps=4)
    meta = json.loads((folder / "sim_meta.json").read_text())
    assert 5250 < meta["track_length_m"] < 5450
    tel = pd.read_csv(next((folder / "telemetry").glob("*.csv.gz")))
    moving = tel[tel.Speed > 0]
    assert 280 < moving.Speed.max() < 345
    laps = pd.read_csv(folder / "laps.csv")
    lap_s = _seconds(laps.loc[laps.LapNumber > 1, "LapTime"])
    assert lap_s.between(88, 110).all()


# --- a simulated race through the Data Engine ----------------------------------------------------


@pytest.fixture(scope="module")
def sim_race(tmp_path_factory):
    return simulate_race(tmp_path_factory.mktemp("sim"), track=None, seed=0, n_cars=4, n_laps=8)


def test_simulated_race_reads_with_its_own_fuel_model(sim_race):
    race = read_race(sim_race)
    assert race.truth is not None and race.total_laps == 8
    meta_fuel = race.sim_meta["fuel_model"]
    assert race.fuel_model.sensitivity_s_per_kg == meta_fuel["sensitivity_s_per_kg"]
    assert race.fuel_model.start_mass_kg == meta_fuel["start_mass_kg"]
    for _, lap in race.laps.groupby("LapNumber"):  # crossing order = classification
        assert lap.sort_values("Time")["Driver"].tolist() == lap.sort_values("Position")["Driver"].tolist()


def test_dataset_from_simulated_race_uses_truth(sim_race, tmp_path):
    manifest = build_dataset([sim_race], tmp_path / "ds", progress=False)
    a, _ = load_arrays(tmp_path / "ds")
    n = manifest["n_samples"]
    assert n == 4 * 7 and a["telemetry"].shape == (n, 5, 100, 5) and manifest["skipped"] == {}
    race = read_race(sim_race)
    truth = race.truth.set_index(["Driver", "LapNumber"])
    laps = race.laps.set_index(["Driver", "LapNumber"])
    sens = race.fuel_model.sensitivity_s_per_kg
    for i in range(n):
        key = (a["driver"][i], int(a["lap"][i]))
        t = truth.loc[key]
        expected_risk = 2 if str(t["Overtaken"]) == "True" else int(t["TrafficLoss"] > 1.5)
        assert a["risk"][i] == expected_risk
        assert a["pace_target"][i] == pytest.approx(laps.loc[key, "LapTime"] - t["FuelMass"] * sens, abs=1e-3)
        assert a["clean_target"][i] == pytest.approx(t["CleanLapTime"] - t["FuelMass"] * sens, abs=1e-3)
        assert a["noise_sigma"][i] == pytest.approx(t["NoiseSigma"], abs=1e-4)
        prev = truth.loc[(a["driver"][i], int(a["lap"][i]) - 1)]
        assert a["tire_health"][i] == pytest.approx(prev["TireHealth"], abs=1e-4)
