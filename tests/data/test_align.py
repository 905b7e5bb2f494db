"""Spatial alignment: analytic traces with known answers, and every bad-input error."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from strategist.contract import CHANNELS, N_STEPS
from strategist.data.align import align_lap, integrate_distance, step_centres
from strategist.errors import DataError

SPEED, THROTTLE, BRAKE, RPM, GEAR = range(5)


def analytic_lap(n: int = 400, lap_s: float = 80.0, mean_kmh: float = 200.0, amp_kmh: float = 60.0):
    """Speed v(t) = mean + amp*cos(2 pi t / T) [km/h]: exact distance s(t) = (mean t + amp T/(2pi) sin)/3.6."""
    t = np.linspace(0.0, lap_s, n)
    speed = mean_kmh + amp_kmh * np.cos(2 * np.pi * t / lap_s)
    dist = (mean_kmh * t + amp_kmh * lap_s / (2 * np.pi) * np.sin(2 * np.pi * t / lap_s)) / 3.6
    channels = {
        "Speed": speed,
        "Throttle": np.clip(speed / 3.0, 0, 100),
        "Brake": (np.sin(2 * np.pi * t / lap_s) > 0.5),
        "RPM": 4000 + 35 * speed,
        "nGear": np.clip(np.ceil(speed / 40), 1, 8),
        "DRS": np.zeros(n),  # extra channels are ignored
    }
    return t, dist, channels


def test_integrated_distance_matches_exact_length():
    t, dist, ch = analytic_lap(n=2000)
    integrated = integrate_distance(ch["Speed"], t)
    assert integrated[-1] == pytest.approx(dist[-1], rel=1e-5)  # 200 km/h for 80 s = 4444.4 m
    assert dist[-1] == pytest.approx(200 / 3.6 * 80)


def test_output_shape_dtype_units_and_step_centres():
    t, dist, ch = analytic_lap()
    out = align_lap(ch, distance_m=dist)
    assert out.shape == (N_STEPS, len(CHANNELS)) and out.dtype == np.float32
    # Speed at step centres equals the analytic speed at the time where s(t) = centre.
    centres = step_centres(N_STEPS) * dist[-1]
    t_at = np.interp(centres, dist, t)
    expected = 200 + 60 * np.cos(2 * np.pi * t_at / 80.0)
    np.testing.assert_allclose(out[:, SPEED], expected, atol=0.2)  # km/h, not m/s
    np.testing.assert_allclose(out[:, RPM], 4000 + 35 * out[:, SPEED], rtol=1e-3)
    assert step_centres(4).tolist() == [0.125, 0.375, 0.625, 0.875]


def test_discrete_channels_stay_discrete():
    t, dist, ch = analytic_lap(n=137)
    out = align_lap(ch, time_s=t)
    assert set(np.unique(out[:, BRAKE])) <= {0.0, 1.0}
    assert set(np.unique(out[:, BRAKE])) == {0.0, 1.0}
    gears = out[:, GEAR]
    assert np.array_equal(gears, np.round(gears)) and gears.min() >= 1 and gears.max() <= 8


def test_time_and_distance_indexed_inputs_agree():
    t, dist, ch = analytic_lap(n=3000)
    by_time = align_lap(ch, time_s=t)
    by_dist = align_lap(ch, distance_m=dist)
    np.testing.assert_allclose(
        by_time[:, [SPEED, THROTTLE, RPM]], by_dist[:, [SPEED, THROTTLE, RPM]], rtol=1e-3
    )
    assert (by_time[:, GEAR] != by_dist[:, GEAR]).sum() <= 1  # may differ only right at a shift point


def test_irregular_sampling_with_repeats_and_gaps():
    rng = np.random.default_rng(0)
    t, dist, ch = analytic_lap(n=4000)
    keep = np.sort(rng.choice(4000, 350, replace=False))
    keep = np.insert(keep, 100, keep[100])  # a repeated timestamp
    keep = np.concatenate([keep[:150], keep[158:]])  # a gap of ~2 s
    keep[0], keep[-1] = 0, 3999
    sub = {k: v[keep] for k, v in ch.items()}
    out = align_lap(sub, time_s=t[keep])
    ref = align_lap(ch, time_s=t)
    np.testing.assert_allclose(out[:, SPEED], ref[:, SPEED], atol=3.0)


def test_segment_covers_part_of_the_lap():
    t, dist, ch = analytic_lap(n=2000)
    first_half = align_lap(ch, distance_m=dist, n_steps=50, segment=(0.0, 0.5))
    whole = align_lap(ch, distance_m=dist, n_steps=100)
    # 50 steps over half the lap have the same centres as the first 50 of 100 over the whole lap
    np.testing.assert_allclose(first_half, whole[:50], atol=1e-3)


def test_throttle_104_is_clipped_and_counted():
    t, dist, ch = analytic_lap()
    ch["Throttle"] = np.full(len(t), 104.0)
    counts: Counter[str] = Counter()
    out = align_lap(ch, time_s=t, counters=counts)
    assert out[:, THROTTLE].max() == 100.0
    assert counts["throttle_clipped"] == len(t)


def test_brake_given_as_percent_becomes_binary():
    t, dist, ch = analytic_lap()
    ch["Brake"] = np.where(ch["Brake"], 37.0, 0.0)
    assert set(np.unique(align_lap(ch, time_s=t)[:, BRAKE])) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda t, d, c: c["Speed"].__setitem__(10, np.nan), "Speed", "non-finite value nan at sample 10"),
        (lambda t, d, c: c["RPM"].__setitem__(5, np.inf), "RPM", "non-finite value inf"),
        (lambda t, d, c: t.__setitem__(50, t[48]), "Time", "goes backwards at sample 50"),
        (lambda t, d, c: c.pop("nGear"), "nGear", "missing channel"),
        (lambda t, d, c: c["nGear"].__setitem__(3, 9), "nGear", "gear 9.0 outside"),
        (lambda t, d, c: c["Speed"].__setitem__(3, -5), "Speed", "negative speed"),
        (lambda t, d, c: c.__setitem__("Throttle", c["Throttle"][:-1]), "Throttle", "has 399 samples"),
    ],
)
def test_bad_input_raises_data_error_naming_field(mutate, field, message):
    t, dist, ch = analytic_lap()
    ch = {k: np.array(v, dtype=float) for k, v in ch.items()}
    mutate(t, dist, ch)
    with pytest.raises(DataError, match=message) as err:
        align_lap(ch, time_s=t, where="race X, driver VER, lap 7")
    assert err.value.field == field
    assert "driver VER, lap 7" in str(err.value)


def test_too_short_and_empty_laps():
    t, dist, ch = analytic_lap(n=5)
    with pytest.raises(DataError, match="5 samples, need at least 8"):
        align_lap(ch, time_s=t)
    t, dist, ch = analytic_lap(n=20, lap_s=1.0)  # 55 m
    with pytest.raises(DataError, match="lap covers .* m, need at least 100 m"):
        align_lap(ch, time_s=t)
    t, dist, ch = analytic_lap(n=0)
    with pytest.raises(DataError, match="0 samples"):
        align_lap(ch, time_s=t)


def test_needs_a_position_axis_and_valid_segment():
    t, dist, ch = analytic_lap()
    with pytest.raises(DataError, match="give distance_m or time_s"):
        align_lap(ch)
    with pytest.raises(DataError, match="segment"):
        align_lap(ch, time_s=t, segment=(0.5, 0.2))
    with pytest.raises(DataError, match="Distance"):
        align_lap(ch, distance_m=dist[::-1])


def _real_shaped_laps():
    """The example request's laps (time-indexed, as the gateway decodes them) and distance-indexed laps
    as a real ~7.5 Hz source sends them: starting at -0.04 m, stepping back by centimetres (repaired and
    counted), Throttle 104 at standstill (clipped and counted), Brake as booleans."""
    import json

    from strategist.paths import PROJECT_ROOT

    body = json.loads((PROJECT_ROOT / "examples" / "predict_request.json").read_text())
    laps = [
        ({k: np.asarray(v) for k, v in lap["channels"].items()}, {"time_s": np.asarray(lap["time_s"])})
        for lap in body["laps"]
    ]
    for seed, n in ((0, 137), (1, 400), (2, 2000)):
        rng = np.random.default_rng(seed)
        t, dist, ch = analytic_lap(n=n)
        dist = dist - 0.04
        for i in rng.choice(np.arange(2, n), 3, replace=False):
            dist[i] = dist[i - 1] - rng.uniform(0.001, 0.05)
        ch["Throttle"] = np.where(rng.random(n) < 0.1, 104.0, ch["Throttle"])
        laps.append((ch, {"distance_m": dist}))
        laps.append((ch, {"time_s": t}))
    return laps


def test_a_validated_lap_gives_the_same_tensor_and_counters_bit_for_bit():
    """align_lap(validated=True) skips the checks the gateway's limits already made, nothing else."""
    total: Counter[str] = Counter()
    for channels, index in _real_shaped_laps():
        checked: Counter[str] = Counter()
        trusted: Counter[str] = Counter()
        expected = align_lap(channels, **index, counters=checked)
        got = align_lap(channels, **index, counters=trusted, validated=True)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))  # -0.0 too
        assert trusted == checked
        total += checked
    assert total["throttle_clipped"] > 0 and total["index_backstep_repaired"] == 9  # 3 in each of 3 laps


def test_a_validated_aligned_lap_gives_the_same_tensor():
    from strategist.data.align import prepare_aligned_lap

    rng = np.random.default_rng(3)
    channels = {name: rng.uniform(0, 8, N_STEPS).round() for name in CHANNELS}
    channels["Throttle"] = np.where(rng.random(N_STEPS) < 0.2, 104.0, 50.0)
    checked: Counter[str] = Counter()
    trusted: Counter[str] = Counter()
    expected = prepare_aligned_lap(channels, counters=checked)
    got = prepare_aligned_lap(channels, counters=trusted, validated=True)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert trusted == checked and checked["throttle_clipped"] > 0


def test_a_validated_lap_still_needs_its_length():
    """A time-indexed lap's distance is integrated here (the gateway cannot check it): a lap whose
    Speed is all 0 covers 0 m and is refused either way."""
    t, _, ch = analytic_lap()
    ch["Speed"] = np.zeros(len(t))
    with pytest.raises(DataError, match="lap covers 0.0 m"):
        align_lap(ch, time_s=t, validated=True)


def test_integrated_distance_is_the_concatenated_cumsum_bit_for_bit():
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.uniform(0.0, 0.4, 500))  # jittered, with near-repeats
    speed = rng.uniform(0.0, 340.0, 500)
    v = speed / 3.6
    expected = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
    got = integrate_distance(speed, t)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))
    assert integrate_distance(speed[:1], t[:1]).tolist() == [0.0]
