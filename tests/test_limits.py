"""One table of input limits (strategist.limits) for the gateway's JSON and binary bodies and the
Data Engine: the same laps pass everywhere, and aligned laps get the raw laps' Throttle clip."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from server import binary_format
from server.preprocess import preprocess
from server.schemas import PredictRequest
from strategist import contract, limits
from strategist.data.align import align_lap, prepare_aligned_lap
from strategist.data.engine import AlignedLap, build_model_inputs
from strategist.errors import DataError


def short_raw_lap(n: int, length_m: float) -> dict:
    """A raw lap of n samples spread evenly over length_m metres at 200 km/h, 60 % throttle."""
    channels = {"Speed": [200.0] * n, "Throttle": [60.0] * n, "Brake": [0.0] * n}
    channels |= {"RPM": [11_000.0] * n, "nGear": [7.0] * n}
    return {"distance_m": np.linspace(0.0, length_m, n).tolist(), "channels": channels}


def aligned_lap(throttle: float) -> dict:
    channels = {name: [0.0] * contract.N_STEPS for name in contract.CHANNELS}
    channels["Speed"] = [150.0] * contract.N_STEPS
    channels["Throttle"] = [throttle] * contract.N_STEPS
    return {"aligned": True, "channels": channels}


def request_with(lap: dict) -> dict:
    return {"laps": [lap] + [aligned_lap(50.0)] * 4, "lap_number": 10, "lap_time_s": 90.0, "race_laps": 50}


def test_gateway_accepts_the_shortest_lap_the_data_engine_accepts():
    n, length = limits.MIN_LAP_SAMPLES, limits.LAP_DISTANCE_RANGE_M[0]
    PredictRequest.model_validate(request_with(short_raw_lap(n, length)))
    lap = short_raw_lap(n, length)
    align_lap(lap["channels"], distance_m=lap["distance_m"])  # no DataError either


@pytest.mark.parametrize(
    ("n", "length", "reason"),
    [
        (limits.MIN_LAP_SAMPLES - 1, 1000.0, f"a raw lap needs {limits.MIN_LAP_SAMPLES}..20000 samples"),
        (limits.MIN_LAP_SAMPLES, 99.0, "distance_m spans 99 m, outside the plausible lap 100..10000 m"),
    ],
)
def test_json_and_binary_reject_below_the_shared_minimum_with_one_message(n, length, reason):
    body = request_with(short_raw_lap(n, length))
    with pytest.raises(ValidationError, match=reason):
        PredictRequest.model_validate(body)
    with pytest.raises(binary_format.BinaryFormatError, match=reason):
        binary_format.decode(binary_format.encode(body))
    lap = short_raw_lap(n, length)
    with pytest.raises(DataError, match="need at least"):  # and the Data Engine refuses it too
        align_lap(lap["channels"], distance_m=lap["distance_m"])


def test_aligned_lap_gets_the_raw_laps_throttle_clip_and_counter():
    counters: Counter[str] = Counter()
    lap = aligned_lap(104.0)  # FastF1's "unavailable" reading
    out = prepare_aligned_lap(lap["channels"], counters=counters)
    assert out.shape == (contract.N_STEPS, len(contract.CHANNELS)) and out.dtype == np.float32
    assert (out[:, contract.CHANNELS.index("Throttle")] == limits.THROTTLE_CLIP).all()
    assert counters["throttle_clipped"] == contract.N_STEPS

    raw_counters: Counter[str] = Counter()
    raw = short_raw_lap(400, 5000.0)
    raw["channels"]["Throttle"] = [104.0] * 400
    align_lap(raw["channels"], distance_m=raw["distance_m"], counters=raw_counters)
    assert raw_counters["throttle_clipped"] == 400

    engine_counters: Counter[str] = Counter()
    telemetry, _ = build_model_inputs(
        [AlignedLap(lap["channels"])] * contract.N_LAP_CONTEXT, None, None, counters=engine_counters
    )
    assert telemetry[..., contract.CHANNELS.index("Throttle")].max() == limits.THROTTLE_CLIP
    assert engine_counters["throttle_clipped"] == contract.N_LAP_CONTEXT * contract.N_STEPS


def test_gateway_gives_an_aligned_104_throttle_the_tensor_of_100():
    clipped = PredictRequest.model_validate(request_with(aligned_lap(104.0)))
    exact = PredictRequest.model_validate(request_with(aligned_lap(100.0)))
    batch_clipped = preprocess([clipped], default_race_laps=50)
    batch_exact = preprocess([exact], default_race_laps=50)
    np.testing.assert_array_equal(batch_clipped.telemetry, batch_exact.telemetry)


def test_request_pace_delta_beyond_the_encoding_clip_is_accepted_and_clipped():
    body = request_with(aligned_lap(50.0)) | {"ahead": {"gap_s": 1.0, "pace_delta_s": 45.0}}
    request = PredictRequest.model_validate(body)
    batch = preprocess([request], default_race_laps=50)
    assert batch.tactical[0, 0, 1] == contract.MAX_ABS_PACE_DELTA_S
    too_far = request_with(aligned_lap(50.0)) | {"ahead": {"gap_s": 1.0, "pace_delta_s": 61.0}}
    with pytest.raises(ValidationError, match="less than or equal to 60"):
        PredictRequest.model_validate(too_far)


def noisy_distance_lap(backsteps: dict[int, float]) -> dict:
    """A 400-sample lap over 5 km whose distance steps back by `backsteps[i]` metres at sample i."""
    lap = short_raw_lap(400, 5000.0)
    distance = np.array(lap["distance_m"]) - 0.04  # a real source starts the lap at -0.04 m
    for i, back in backsteps.items():
        distance[i] = distance[i - 1] - back
    lap["distance_m"] = distance.tolist()
    return lap


def test_sub_decimetre_distance_noise_is_repaired_and_counted_everywhere():
    # 9 mm (lap start), 37 mm (standstill wobble): the real sensor noise, below the tolerance.
    lap = noisy_distance_lap({1: 0.009, 200: 0.0369, 201: 0.01})
    limits.check_not_decreasing("distance_m", np.array(lap["distance_m"]))  # no ValueError
    request = PredictRequest.model_validate(request_with(lap))
    binary_format.decode(binary_format.encode(request_with(lap)))  # the binary body accepts it too
    counters: Counter[str] = Counter()
    align_lap(lap["channels"], distance_m=lap["distance_m"], counters=counters)
    assert counters[limits.BACKSTEP_COUNTER] == 3
    batch = preprocess([request], default_race_laps=50)
    assert batch.corrections[limits.BACKSTEP_COUNTER] == 3


def test_repair_is_a_running_maximum():
    index = np.array([0.0, 1.0, 0.95, 0.97, 2.0])
    repaired, changed = limits.repair_not_decreasing(index)
    np.testing.assert_array_equal(repaired, [0.0, 1.0, 1.0, 1.0, 2.0])
    assert changed == 2
    same, none = limits.repair_not_decreasing(np.array([0.0, 0.0, 1.0]))
    assert none == 0 and same.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "backsteps",
    [
        {100: 0.5},  # half a metre back: not noise
        {100: 0.06, 101: 0.06},  # two small steps add up to 12 cm behind the furthest point
    ],
)
def test_distance_further_back_than_the_tolerance_is_still_rejected(backsteps):
    lap = noisy_distance_lap(backsteps)
    with pytest.raises(ValidationError, match="distance_m must not decrease"):
        PredictRequest.model_validate(request_with(lap))
    with pytest.raises(binary_format.BinaryFormatError, match="distance_m must not decrease"):
        binary_format.decode(binary_format.encode(request_with(lap)))
    with pytest.raises(DataError, match="distance_m must not decrease"):
        align_lap(lap["channels"], distance_m=lap["distance_m"])


def test_time_going_back_at_all_is_rejected():
    with pytest.raises(ValueError, match="time_s must not decrease"):
        limits.check_not_decreasing("time_s", np.array([0.0, 1.0, 0.999, 2.0]))


def _check_raises(block: np.ndarray) -> bool:
    try:
        limits.check_channel_samples(dict(zip(contract.CHANNELS, block, strict=True)))
    except ValueError:
        return True
    return False


def test_the_vectorised_channel_check_agrees_with_the_per_channel_rules():
    """channels_within_limits (one pass over the [5, n] block) is False exactly when
    check_channel_samples raises: at each bound, just past it, fractional gears and brakes, -0.0."""
    rng = np.random.default_rng(0)
    n = 50
    valid = np.stack(
        [
            rng.uniform(0.0, 420.0, n),
            rng.uniform(0.0, 110.0, n),
            rng.integers(0, 2, n).astype(np.float64),
            rng.uniform(0.0, 20_000.0, n),
            rng.integers(0, 9, n).astype(np.float64),
        ]
    )
    assert limits.channels_within_limits(valid) and not _check_raises(valid)
    edits = []
    for row, name in enumerate(contract.CHANNELS):
        low, high = limits.CHANNEL_LIMITS[name]
        edits += [(row, low), (row, high), (row, -0.0), (row, np.nextafter(low, -1.0))]
        edits += [(row, np.nextafter(high, np.inf)), (row, high + 1.0), (row, low + 0.5)]
    for row, value in edits:
        block = valid.copy()
        block[row, int(rng.integers(n))] = value
        assert limits.channels_within_limits(block) == (not _check_raises(block)), (row, value)
    assert limits.channels_within_limits(np.empty((5, 0)))
