"""Timing context: the encoding of each slot, missing laps, flags, errors, and the lap-table reader."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.race_folder import write_synthetic_race

from strategist import contract
from strategist.data.context import LapTiming, context_vector, driver_lap_timings, status_digits
from strategist.data.dataset import BuildConfig, race_samples
from strategist.data.fastf1_reader import read_race
from strategist.data.fuel import FuelModel
from strategist.errors import DataError, StackSizeError

FUEL = FuelModel(start_mass_kg=100.0, consumption_kg_per_lap=2.0, sensitivity_s_per_kg=0.03)


def lap(number: int, time: float | None = 90.0, **changes) -> LapTiming:
    values = dict(lap_number=number, lap_time_s=time, tyre_life=float(number), stint=1, stint_lap=number)
    return LapTiming(**{**values, **changes})


def feature(vector: np.ndarray, slot: str, name: str) -> float:
    return float(vector[contract.CONTEXT_FEATURES.index(f"{slot}.{name}")])


def test_layout_is_one_block_per_slot_then_the_race_features():
    per_slot = len(contract.CONTEXT_SLOT_FEATURES)
    assert contract.N_CONTEXT == per_slot * contract.N_LAP_CONTEXT + len(contract.CONTEXT_RACE_FEATURES)
    assert contract.CONTEXT_FEATURES[per_slot] == f"L-1.{contract.CONTEXT_SLOT_FEATURES[0]}"
    assert contract.INPUT_SHAPES[contract.INPUT_CONTEXT] == (contract.N_CONTEXT,)


def test_fuel_corrected_deltas_flags_and_progress():
    slots = [
        lap(20, 90.0, compound="medium", track_status="12"),
        lap(19, 91.0),
        lap(18, 90.5, track_status="4"),
        lap(15, 110.0, pit_in=True, compound="SOFT", stint=0),
        lap(12, 89.0),
    ]
    v = context_vector(slots, fuel=FUEL, race_laps=50)
    assert v.shape == (contract.N_CONTEXT,) and v.dtype == np.float32
    # lap 19 carries one lap's more fuel (2 kg x 0.03 s/kg) than lap 20
    assert feature(v, "L-1", "fc_delta_s") == pytest.approx(1.0 - 0.06, abs=1e-5)
    assert feature(v, "L_base", "fc_delta_s") == pytest.approx(-1.0 - 8 * 0.06, abs=1e-5)
    assert feature(v, "L", "fc_delta_s") == 0.0 and feature(v, "L", "lap_time_missing") == 0.0
    assert feature(v, "L", "status_yellow") == 1.0 and feature(v, "L", "status_sc") == 0.0
    assert feature(v, "L-2", "status_sc") == 1.0
    assert feature(v, "L", "compound_medium") == 1.0 and feature(v, "L-5", "compound_soft") == 1.0
    assert feature(v, "L-5", "pit_in") == 1.0 and feature(v, "L-5", "same_stint") == 0.0
    assert feature(v, "L-5", "laps_back") == 5.0 and feature(v, "L_base", "laps_back") == 8.0
    assert feature(v, "L-1", "tyre_life") == 19.0 and feature(v, "L-1", "stint_lap") == 19.0
    assert v[contract.CONTEXT_FEATURES.index("race_progress")] == pytest.approx(20 / 50)


def test_missing_and_repeated_laps_are_flagged_not_zero_fast():
    # Race start: the stack rules repeat lap L in the L-1 / L-2 / L-5 slots; lap L-1 has no time.
    start = context_vector([lap(2), lap(2), lap(2), lap(2), lap(2)], fuel=FUEL, race_laps=50)
    for slot in ("L-1", "L-2", "L-5"):
        assert feature(start, slot, "lap_time_missing") == 1.0 and feature(start, slot, "fc_delta_s") == 0.0
    assert feature(start, "L_base", "lap_time_missing") == 0.0  # the base may be lap L itself
    no_time = context_vector(
        [lap(9), lap(8, None), lap(7, float("nan")), lap(4), lap(3)], fuel=FUEL, race_laps=50
    )
    assert (
        feature(no_time, "L-1", "lap_time_missing") == 1.0
        and feature(no_time, "L-2", "lap_time_missing") == 1.0
    )
    no_l = context_vector([lap(9, None), lap(8), lap(7), lap(4), lap(3)], fuel=FUEL, race_laps=50)
    assert all(feature(no_l, s, "lap_time_missing") == 1.0 for s in contract.LAP_SLOTS)


def test_unknown_compound_is_all_zero():
    v = context_vector(
        [lap(9, compound="TEST_UNKNOWN")] + [lap(n) for n in (8, 7, 4, 3)], fuel=FUEL, race_laps=50
    )
    assert all(feature(v, "L", f"compound_{c.lower()}") == 0.0 for c in contract.COMPOUNDS)


def test_bad_values_name_the_slot_and_field():
    with pytest.raises(StackSizeError, match="exactly 5"):
        context_vector([lap(9)] * 4, fuel=FUEL, race_laps=50)
    with pytest.raises(DataError, match="slot L-2 is lap 12") as err:
        context_vector([lap(9), lap(8), lap(12), lap(4), lap(3)], fuel=FUEL, race_laps=50, where="VER")
    assert err.value.field == "L-2.lap_number" and "VER" in str(err.value)
    with pytest.raises(DataError, match="tyre_life must be >= 0"):
        context_vector([lap(9), lap(8, tyre_life=-1.0), lap(7), lap(4), lap(3)], fuel=FUEL, race_laps=50)
    with pytest.raises(DataError, match="stint_lap"):
        context_vector([lap(9, stint_lap=0)] + [lap(n) for n in (8, 7, 4, 3)], fuel=FUEL, race_laps=50)
    with pytest.raises(DataError, match="race_laps"):
        context_vector([lap(9)] + [lap(n) for n in (8, 7, 4, 3)], fuel=FUEL, race_laps=0)


def test_status_digits_fold_the_period_flags_in():
    assert status_digits("1", sc=True) == "14"
    assert status_digits("12", vsc=True, red=True) == "1256"
    assert status_digits("") == ""


def test_lap_table_timings_and_dataset_rows_share_the_encoder(tmp_path):
    race = read_race(write_synthetic_race(tmp_path / "race"))
    timings = driver_lap_timings(race.driver_laps("BBB"))
    assert timings[5].pit_out and timings[4].pit_in and timings[5].stint == timings[4].stint + 1
    assert timings[5].stint_lap == 1 and timings[6].stint_lap == 2
    assert "6" in timings[6].track_status or "7" in timings[6].track_status  # the VSC lap
    arrays, _, _ = race_samples(race, BuildConfig())
    row = int(np.flatnonzero((arrays["driver"] == "BBB") & (arrays["lap"] == 7))[0])  # predicts lap 7
    context = arrays["context"][row]
    assert feature(context, "L", "status_vsc") == 1.0  # lap L = 6, the VSC lap
    assert feature(context, "L-1", "pit_out") == 1.0 and feature(context, "L-2", "pit_in") == 1.0
    assert np.isfinite(arrays["context"]).all()
    # forecastable: the next lap is an in-lap -> not; the lap after the stop -> yes
    in_lap_row = int(np.flatnonzero((arrays["driver"] == "BBB") & (arrays["lap"] == 4))[0])
    assert not arrays["pace_forecastable"][in_lap_row] and arrays["pace_forecastable"][row]
