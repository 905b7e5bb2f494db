"""Lap-stack slot rules at the edges, stacking checks, the tactical encoding and the fuel model."""

from __future__ import annotations

import numpy as np
import pytest

from strategist.contract import MAX_ABS_PACE_DELTA_S, NO_CAR_GAP_S, NO_CAR_PACE_DELTA_S
from strategist.data.engine import RawLap, build_model_inputs
from strategist.data.fuel import FuelModel
from strategist.data.stack import LapInfo, choose_stack_laps, stack_laps
from strategist.data.tactical import tactical_tensor
from strategist.errors import DataError, StackSizeError


def laps(n: int = 20, pit_in: int | None = None, sc: tuple[int, ...] = (), no_tel: tuple[int, ...] = ()):
    out = []
    for k in range(1, n + 1):
        stint = 2 if pit_in is not None and k > pit_in else 1
        out.append(
            LapInfo(
                number=k,
                stint=stint,
                is_pit_in=k == pit_in,
                is_pit_out=pit_in is not None and k == pit_in + 1,
                is_neutralised=k in sc,
                has_telemetry=k not in no_tel,
            )
        )
    return out


@pytest.mark.parametrize(
    ("lap", "expected", "substituted"),
    [
        # lap 1: every slot is lap 1; L_base has no clean lap anywhere -> L itself (substituted)
        (1, (1, 1, 1, 1, 1), (False, True, True, True, True)),
        (2, (2, 1, 1, 1, 2), (False, False, True, True, False)),
        (3, (3, 2, 1, 1, 2), (False, False, False, True, False)),
        (5, (5, 4, 3, 3, 2), (False, False, False, True, False)),
        (6, (6, 5, 4, 1, 2), (False,) * 5),  # first lap where L-5 exists; lap 1 is never L_base
        (7, (7, 6, 5, 2, 2), (False,) * 5),
    ],
)
def test_slots_at_race_start(lap, expected, substituted):
    choice = choose_stack_laps(lap, laps())
    assert choice.laps == expected
    assert choice.substituted == substituted


def test_base_lap_is_first_clean_lap_of_the_current_stint():
    history = laps(pit_in=10)  # in-lap 10, out-lap 11 (stint 2)
    assert choose_stack_laps(9, history).laps[-1] == 2
    # L = out-lap: stint 2 has no clean lap yet -> most recent clean lap of an earlier stint (9)
    assert choose_stack_laps(11, history).laps == (11, 10, 9, 6, 9)
    # first clean lap of stint 2 is 12
    assert choose_stack_laps(12, history).laps == (12, 11, 10, 7, 12)
    assert choose_stack_laps(16, history).laps == (16, 15, 14, 11, 12)


def test_sc_laps_stay_in_their_slots_but_are_never_the_base():
    history = laps(pit_in=10, sc=(11, 12, 13))
    choice = choose_stack_laps(13, history)
    assert choice.laps == (13, 12, 11, 8, 9)  # stint 2 clean laps start at 14
    assert choose_stack_laps(15, history).laps[-1] == 14


def test_missing_telemetry_is_substituted_by_the_next_more_recent_slot():
    choice = choose_stack_laps(10, laps(no_tel=(9, 5, 2, 3)))
    assert choice.laps == (10, 10, 8, 8, 4)
    assert choice.substituted == (False, True, False, True, False)
    with pytest.raises(DataError, match="lap L has no usable telemetry"):
        choose_stack_laps(9, laps(no_tel=(9,)), driver="VER")
    with pytest.raises(DataError, match="not among the driver's laps") as err:
        choose_stack_laps(30, laps(), driver="VER")
    assert err.value.driver == "VER" and err.value.lap == 30


def test_stack_laps_checks_size_shape_and_values():
    lap = np.ones((100, 5), dtype=np.float32)
    out = stack_laps([lap * k for k in range(5)])
    assert out.shape == (5, 100, 5) and out.dtype == np.float32 and out[3, 0, 0] == 3
    with pytest.raises(StackSizeError, match="exactly 5 laps"):
        stack_laps([lap] * 4)
    with pytest.raises(DataError, match="slot L-2 has shape"):
        stack_laps([lap, lap, np.ones((99, 5)), lap, lap])
    bad = lap.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="slot L_base has non-finite"):
        stack_laps([lap] * 4 + [bad])


def test_tactical_encoding():
    out = tactical_tensor((1.2, -0.4), None)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, [[1.2, -0.4], [NO_CAR_GAP_S, NO_CAR_PACE_DELTA_S]], rtol=1e-6)
    # beyond interaction range is "no car"; deltas are clipped; unknown delta -> 0
    far = tactical_tensor((NO_CAR_GAP_S + 5, 3.0), (2.0, 99.0))
    np.testing.assert_allclose(far, [[NO_CAR_GAP_S, 0.0], [2.0, MAX_ABS_PACE_DELTA_S]])
    np.testing.assert_allclose(
        tactical_tensor((0.5, float("nan")), (float("inf"), 1.0)), [[0.5, 0.0], [NO_CAR_GAP_S, 0.0]]
    )
    with pytest.raises(DataError, match="ahead gap must be"):
        tactical_tensor((-1.0, 0.0), None)
    with pytest.raises(DataError, match="behind gap must be"):
        tactical_tensor(None, (float("nan"), 0.0))
    with pytest.raises(DataError, match="must be \\(gap_s, pace_delta_s\\)"):
        tactical_tensor((1.0,), None)


def test_fuel_model_defaults_and_round_trip():
    fuel = FuelModel.for_race(55)
    assert fuel.start_mass_kg == 110.0 and fuel.consumption_kg_per_lap == pytest.approx(2.0)
    assert fuel.sensitivity_s_per_kg == 0.031
    assert fuel.mass_at_lap_start(1) == 110.0
    assert fuel.mass_at_lap_start(11) == pytest.approx(90.0)
    assert fuel.mass_at_lap_start(200) == 0.0  # never negative
    assert fuel.correct(95.0, 1) == pytest.approx(95.0 - 110 * 0.031)
    laps_ = np.arange(1, 56)
    times = np.full(55, 93.0)
    np.testing.assert_allclose(fuel.uncorrect(fuel.correct(times, laps_), laps_), times)
    # a car that runs at constant fuel-corrected pace gets 2 kg x 0.031 s/kg faster per lap
    np.testing.assert_allclose(np.diff(fuel.uncorrect(np.full(55, 90.0), laps_)), -0.062)
    assert FuelModel.from_mapping(fuel.to_dict()) == fuel
    with pytest.raises(DataError, match="lacks 'sensitivity_s_per_kg'"):
        FuelModel.from_mapping({"start_mass_kg": 1, "consumption_kg_per_lap": 1}, file="sim_meta.json")
    with pytest.raises(DataError, match="consumption_kg_per_lap must be"):
        FuelModel(100.0, -1.0, 0.03)
    with pytest.raises(DataError, match="total laps"):
        FuelModel.for_race(0)


def test_build_model_inputs_accepts_raw_and_aligned_laps():
    t = np.linspace(0, 80, 320)
    speed = 200 + 60 * np.cos(2 * np.pi * t / 80)
    raw = RawLap(
        channels={
            "Speed": speed,
            "Throttle": np.full(320, 104.0),
            "Brake": speed < 170,
            "RPM": 30 * speed,
            "nGear": np.full(320, 6),
        },
        time_s=t,
        where="request car 44 lap L",
    )
    aligned = np.zeros((100, 5), dtype=np.float32)
    telemetry, tactical = build_model_inputs([raw, aligned, aligned, raw, aligned], (0.8, -0.2), None)
    assert telemetry.shape == (5, 100, 5) and tactical.shape == (2, 2)
    assert telemetry[0, :, 1].max() == 100.0 and telemetry[1].sum() == 0
    np.testing.assert_array_equal(telemetry[0], telemetry[3])
    with pytest.raises(StackSizeError):
        build_model_inputs([raw] * 6, None, None)
    with pytest.raises(DataError, match="request car 44 lap L"):
        build_model_inputs(
            [RawLap(channels=raw.channels, time_s=t[::-1], where="request car 44 lap L")] + [aligned] * 4,
            None,
            None,
        )


def test_scalar_fuel_arithmetic_is_the_array_path_bit_for_bit():
    """FuelModel's plain-float path (one lap time, the gateway's case) gives numpy's float64 answer,
    an empty tank (0, or past the race distance) included."""
    rng = np.random.default_rng(0)
    models = [FuelModel.for_race(57), FuelModel(110.0, 1.9528, 0.021), FuelModel(100, 2, 0.03)]
    models += [FuelModel(float(m), float(c), float(s)) for m, c, s in rng.uniform(0.01, 3.0, (20, 3)) * 50]
    for fuel in models:
        for lap_number in [1, 2, 20, 50, 56, 57, 58, 200, *rng.integers(1, 120, 10).tolist()]:
            for lap_time in [30.0, 104.724, 90, float(rng.uniform(30, 600))]:
                array_mass = fuel.mass_at_lap_start(np.array([lap_number]))[0]
                assert np.float64(fuel.mass_at_lap_start(lap_number)).tobytes() == array_mass.tobytes()
                array = fuel.correct(np.array([lap_time]), np.array([lap_number]))[0]
                plain = fuel.correct(lap_time, lap_number)
                assert type(plain) is float and np.float64(plain).tobytes() == array.tobytes()


def test_tactical_clip_matches_numpy():
    for delta in [-45.0, -MAX_ABS_PACE_DELTA_S, -29.999, -0.0, 0.0, 1.491, MAX_ABS_PACE_DELTA_S, 61.0]:
        row = tactical_tensor((1.0, delta), None)[0]
        expected = np.float32(np.clip(delta, -MAX_ABS_PACE_DELTA_S, MAX_ABS_PACE_DELTA_S))
        assert row[1].tobytes() == expected.tobytes(), delta
