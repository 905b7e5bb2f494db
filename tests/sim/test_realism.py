"""Realism metrics on races with known answers, and `strategist realism` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.race_folder import (
    LAP_LENGTH_M,
    MEAN_SPEED_KMH,
    SPEED_AMPLITUDE_KMH,
    SyntheticCar,
    speed_profile_kmh,
    write_synthetic_race,
)

from strategist.cli import main
from strategist.data.fastf1_reader import read_race
from strategist.sim import realism as R

N_LAPS = 8
# Lap time at pace 1 of the synthetic circuit: integral of ds / v(s) for v = mean + amp cos(2 pi f).
PACE1_LAP_S = LAP_LENGTH_M * 3.6 / np.sqrt(MEAN_SPEED_KMH**2 - SPEED_AMPLITUDE_KMH**2)


@pytest.fixture(scope="module")
def default_race(tmp_path_factory: pytest.TempPathFactory):
    """3 cars: BBB stops (in-lap 4, out-lap 5 at 0.6 pace), VSC lap 6, CCC passes AAA on lap 7."""
    return read_race(write_synthetic_race(tmp_path_factory.mktemp("syn") / "race", n_laps=N_LAPS))


@pytest.fixture(scope="module")
def clean_race(tmp_path_factory: pytest.TempPathFactory):
    """Two cars at constant pace: every green lap of a car takes the same time."""
    cars = (SyntheticCar("AAA", "1", 1.0), SyntheticCar("CCC", "3", 0.95))
    return read_race(
        write_synthetic_race(tmp_path_factory.mktemp("clean") / "race", cars=cars, n_laps=N_LAPS)
    )


def test_fit_stint_recovers_slope_and_residuals():
    x = np.arange(5.0)
    e = np.array([1.0, -2.0, 0.0, 2.0, -1.0])  # orthogonal to 1 and x: the line leaves it untouched
    fit = R.fit_stint(x, 90.0 + 0.1 * x + e)
    assert fit.slope_s_per_lap == pytest.approx(0.1)
    np.testing.assert_allclose(fit.residuals, e, atol=1e-9)
    assert R.pooled_residual_sd([fit]) == pytest.approx(np.sqrt(10 / 3))  # 5 laps - 2 parameters
    assert R.robust_residual_sd([fit]) == pytest.approx(R.MAD_TO_SD * 1.0)


def test_green_laps_exclude_lap1_pits_and_vsc(default_race):
    green = R.green_laps(default_race)
    assert 1 not in set(green["LapNumber"]) and 6 not in set(green["LapNumber"])  # lap 1, VSC lap
    assert set(green.loc[green["Driver"] == "BBB", "LapNumber"]) == {2, 3, 7, 8}  # 4 in, 5 out


def test_constant_pace_gives_zero_spread_and_fuel_slope(clean_race):
    fits = R.stint_fits(clean_race)
    assert len(fits) == 2
    assert R.pooled_residual_sd(fits) < 0.01
    # Constant raw lap times: the fuel correction alone makes them rise by consumption x sensitivity.
    fuel = clean_race.fuel_model
    expected = fuel.consumption_kg_per_lap * fuel.sensitivity_s_per_kg
    for fit in fits:
        assert fit.slope_s_per_lap == pytest.approx(expected, abs=0.005)


def test_pit_loss_is_the_slow_out_lap(tmp_path, default_race):
    cars = (SyntheticCar("AAA", "1", 1.0), SyntheticCar("BBB", "2", 0.97, pit_in_lap=2))
    race = read_race(write_synthetic_race(tmp_path / "race", cars=cars, n_laps=N_LAPS))
    # in-lap at race pace, out-lap at 0.6 x pace: loss = T (1 / 0.6 - 1), T = BBB's green lap
    assert R.pit_losses(race) == pytest.approx([PACE1_LAP_S / 0.97 * (1 / 0.6 - 1)], abs=0.05)
    # BBB's slow out-lap 5 in the default race overlaps the VSC period: a cheap stop, left out
    assert R.pit_losses(default_race) == []


def test_on_track_passes_count_the_mistake_only(default_race, clean_race):
    counts = R.on_track_passes(default_race)
    assert counts.passes == 1  # CCC past AAA on lap 7; the stop and the VSC lap do not count
    assert counts.overtaken_car_laps == 1
    # racing car-laps: laps 2-8 minus the VSC lap 6 for 3 cars, minus BBB's laps 4, 5 (pit) and 6 (its
    # previous lap 5 was a pit lap)
    assert counts.car_laps == 3 * 6 - 3
    # within 1 s only at the end of lap 1 (CCC 0.6 s behind AAA, BBB 0.6 s behind CCC); no pass follows
    assert (counts.close_chances, counts.close_passes) == (2, 0)
    assert R.on_track_passes(clean_race).passes == 0


def test_close_pass_rate_counts_a_pass_from_within_one_second(default_race):
    # With a huge "close" threshold every classified neighbour pair is a chance; one of them passes.
    counts = R.on_track_passes(default_race, close_gap_s=1e6)
    assert counts.close_passes == 1
    assert counts.close_chances > 1


def test_speed_trace_follows_the_analytic_profile(clean_race):
    traces = R.speed_traces(clean_race, n_steps=50)
    assert traces.n_laps == len(R.green_laps(clean_race)) and traces.failed_laps == 0
    x = (np.arange(50) + 0.5) / 50
    median = traces.quantiles((0.5,))[0]
    # the median lap lies between the two cars' analytic profiles (pace 0.95 and 1.0), same shape
    assert np.all(median >= 0.95 * speed_profile_kmh(x) - 1.0)
    assert np.all(median <= speed_profile_kmh(x) + 1.0)
    assert np.corrcoef(median, speed_profile_kmh(x))[0, 1] > 0.999
    same = R.compare_traces(traces, traces)
    assert same.correlation == pytest.approx(1.0)
    assert same.best_shift == 0.0
    assert same.lap_time_diff_s == same.top_speed_diff_kmh == same.min_speed_diff_kmh == 0.0


def test_circuit_key_matches_simulator_and_fastf1_names():
    assert R.circuit_key("Catalunya") == R.circuit_key("Barcelona")
    assert R.circuit_key("Montréal") == R.circuit_key("Montreal")
    assert R.circuit_key("Mexico City") == R.circuit_key("MexicoCity")


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from strategist.sim import simulate_race

    return simulate_race(tmp_path_factory.mktemp("sim") / "race", track="Synthetic-1", n_cars=4, n_laps=8)


def test_command_without_real_data_skips_the_real_side(tiny_sim, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["realism", "--sim", str(tiny_sim), "--real", str(tmp_path / "absent"), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "real side skipped" in printed and "absent" in printed
    table = (out / "realism_table.md").read_text()
    assert "| on-track overtakes per race |" in table and "real side skipped" in table
    assert (out / "img" / "realism_distributions.png").stat().st_size > 0
    assert not list((out / "img").glob("realism_speed_*.png"))  # nothing to compare the trace with


def test_command_race_against_itself_gives_identical_traces(tiny_sim, tmp_path):
    out = tmp_path / "out"
    assert main(["realism", "--sim", str(tiny_sim), "--real", str(tiny_sim), "--out", str(out)]) == 0
    table = (out / "realism_table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Synthetic-1 |"))
    assert "| 1.000 | +0.000 | 1.000 | +0.00 | +0.0 | +0.0 |" in row
    assert (out / "img" / "realism_speed_synthetic1.png").stat().st_size > 0
