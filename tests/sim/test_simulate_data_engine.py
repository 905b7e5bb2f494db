"""The Data Engine on a race written by the simulator: truth labels, its fuel model, shapes."""

from __future__ import annotations

import pytest

from strategist.data.dataset import build_dataset
from strategist.data.dataset_format import load_arrays
from strategist.data.fastf1_reader import read_race

sim = pytest.importorskip(
    "strategist.sim.simulate", reason="the simulator (strategist.sim) is not in this tree"
)


@pytest.fixture(scope="module")
def sim_race(tmp_path_factory):
    return sim.simulate_race(tmp_path_factory.mktemp("sim"), track=None, seed=0, n_cars=4, n_laps=8)


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
