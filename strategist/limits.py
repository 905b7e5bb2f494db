"""Input limits: the physical bounds a lap, a neighbour and a lap time must keep, defined once.

The gateway's request schema (server/schemas.py), its binary body (server/binary_format.py) and the
Data Engine (strategist.data.align) read these numbers from here, so a lap the dataset builder
accepts is a lap the gateway accepts and the other way round. A value outside them is a sensor or
client error, never something the model should be asked about.

The check functions below are one rule each, on plain numpy arrays, raising ValueError with a
message that names the channel or index, the sample and the reason. The JSON schema and the binary
decoder call the same functions, so both formats reject the same laps with the same words.

Where the gateway and the Data Engine used to disagree, the Data Engine's physical minimum won: a
raw lap needs MIN_LAP_SAMPLES samples and must span LAP_DISTANCE_RANGE_M[0] metres. Those are the
shortest laps a real timing feed produces (a lap cut short by a missing sample block), and the
model was trained on every lap that passes them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from strategist import contract

# Physical range of each telemetry channel as it may arrive (inclusive). Throttle reads 104 at
# standstill on real FastF1 data (its "unavailable" code), hence the 110 ceiling; the Data Engine
# then clips it to THROTTLE_CLIP (strategist.data.align.clip_throttle).
CHANNEL_LIMITS: dict[str, tuple[float, float]] = {
    "Speed": (0.0, 420.0),
    "Throttle": (0.0, 110.0),
    "Brake": (0.0, 1.0),
    "RPM": (0.0, 20_000.0),
    "nGear": (0.0, 8.0),
}
assert set(CHANNEL_LIMITS) == set(contract.CHANNELS)

THROTTLE_CLIP = 100.0  # the model sees Throttle in 0..100 %; higher readings are the 104 artefact
MAX_GEAR = int(CHANNEL_LIMITS["nGear"][1])

# A real lap has ~300-400 samples at FastF1's ~4 Hz; fewer than 8 is a truncated lap.
MIN_LAP_SAMPLES = 8
MAX_LAP_SAMPLES = 20_000
# A "lap" shorter than 100 m is a timing artefact; the longest circuit (Spa) is 7 km.
LAP_DISTANCE_RANGE_M = (100.0, 10_000.0)
LAP_DURATION_RANGE_S = (10.0, 600.0)  # span of a time-indexed raw lap
LAP_TIME_RANGE_S = (30.0, 600.0)  # the measured lap time of lap L

MAX_GAP_S = 10_000.0  # gaps beyond contract.NO_CAR_GAP_S are accepted and encoded as "no car"
# Largest pace delta a request may carry. The tactical encoding clips it further, to
# contract.MAX_ABS_PACE_DELTA_S: a 45 s delta (a car limping to the pits) is a valid input that
# the model reads as "much slower".
MAX_REQUEST_PACE_DELTA_S = 60.0
assert MAX_REQUEST_PACE_DELTA_S >= contract.MAX_ABS_PACE_DELTA_S

# Cars in one /predict/batch call (the gateway's default STRATEGIST_MAX_BATCH_CARS): each car is two
# model rows (as raced + clean air), so 2 x this must fit the served model's max_batch_size.
MAX_BATCH_CARS = 64

INDEX_UNITS: dict[str, str] = {"distance_m": "m", "time_s": "s"}
# How far an index may fall behind its furthest value so far and still count as sensor noise.
# Real distance-indexed sources (~7.5 Hz) start a lap at -0.04 m and step back to -0.049 m, and a
# car at a standstill wobbles back by centimetres (44.2424 -> 44.2055 m): below a decimetre that is
# noise, repaired by a running maximum and counted (BACKSTEP_COUNTER), never a 422. Time has no
# such noise: a timestamp that goes back is a broken feed.
INDEX_BACKSTEP_TOLERANCE: dict[str, float] = {"distance_m": 0.1, "time_s": 0.0}
BACKSTEP_COUNTER = "index_backstep_repaired"  # the Data Engine's counter of repaired samples


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


# --- channels --------------------------------------------------------------------------------


def check_same_length(channels: Mapping[str, np.ndarray]) -> int:
    """All channels hold the same number of samples; returns that number."""
    lengths = {name: len(values) for name, values in channels.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"all channels need the same number of samples, got {lengths}")
    return next(iter(lengths.values()))


def check_channel_range(name: str, values: np.ndarray) -> None:
    """Every sample of channel `name` lies in its CHANNEL_LIMITS range."""
    low, high = CHANNEL_LIMITS[name]
    outside = (values < low) | (values > high)
    if outside.any():
        i = _first(outside)
        raise ValueError(
            f"{name} value {values[i]:g} at sample {i} is outside the physical range "
            f"{low:g}..{high:g} {contract.CHANNEL_UNITS[name]}"
        )


def check_whole_numbers(name: str, values: np.ndarray) -> None:
    """A discrete channel (contract.DISCRETE_CHANNELS) holds whole numbers only."""
    fractional = values != np.round(values)
    if fractional.any():
        i = _first(fractional)
        raise ValueError(f"{name} value {values[i]:g} at sample {i} is not a whole number")


def check_channel_samples(channels: Mapping[str, np.ndarray]) -> None:
    """The channel rules of one lap, in order: same length, physical range, whole discrete values."""
    check_same_length(channels)
    for name in CHANNEL_LIMITS:
        check_channel_range(name, channels[name])
        if name in contract.DISCRETE_CHANNELS:
            check_whole_numbers(name, channels[name])


# CHANNEL_LIMITS as columns against a block [5, n] in contract.CHANNELS order (channels_within_limits).
_LOW = np.array([CHANNEL_LIMITS[name][0] for name in contract.CHANNELS])  # [5]
_HIGH = np.array([CHANNEL_LIMITS[name][1] for name in contract.CHANNELS])  # [5]
_DISCRETE_ROWS = np.array(
    [i for i, name in enumerate(contract.CHANNELS) if name in contract.DISCRETE_CHANNELS], dtype=np.intp
)


def channels_within_limits(block: np.ndarray) -> bool:
    """True when a lap's finite channel block float64 [5, n] (contract.CHANNELS order) keeps every rule
    of check_channel_samples but the length (a block has one): each row in its CHANNEL_LIMITS range,
    the discrete rows whole. The same comparisons in a few passes over the block instead of ~20
    per-channel calls; False only when check_channel_samples raises, so a caller runs that on False
    to word the error. (np.count_nonzero rather than .any(): the same answer, without the ~1 us a
    method reduction costs; np.rint is what np.round does to floats.)"""
    if block.size == 0:  # no sample breaks a rule (the sample count is checked on its own)
        return True
    if np.count_nonzero(block.min(axis=1) < _LOW) or np.count_nonzero(block.max(axis=1) > _HIGH):
        return False
    discrete = block.take(_DISCRETE_ROWS, axis=0)  # [2, n] Brake, nGear
    return not np.count_nonzero(discrete != np.rint(discrete))


# --- index of a raw lap, and the aligned form ------------------------------------------------


def check_sample_count(n: int) -> None:
    """A raw lap holds MIN_LAP_SAMPLES..MAX_LAP_SAMPLES samples per channel."""
    if not MIN_LAP_SAMPLES <= n <= MAX_LAP_SAMPLES:
        raise ValueError(f"a raw lap needs {MIN_LAP_SAMPLES}..{MAX_LAP_SAMPLES} samples per channel, got {n}")


def check_index_length(index_name: str, index: np.ndarray, n: int) -> None:
    """The index (distance_m or time_s) has one value per channel sample."""
    if index.size != n:
        raise ValueError(f"{index_name} has {index.size} values but the channels have {n}")


def check_not_decreasing(index_name: str, index: np.ndarray) -> None:
    """Repeated values are allowed (a stopped car; FastF1 repeats timestamps), going back is not,
    beyond INDEX_BACKSTEP_TOLERANCE behind the furthest value so far (noise: see
    repair_not_decreasing)."""
    if index.size < 2:
        return
    furthest = np.maximum.accumulate(index)
    backwards = index < furthest - INDEX_BACKSTEP_TOLERANCE.get(index_name, 0.0)
    if np.count_nonzero(backwards):  # .any(), without a method reduction's overhead
        i = _first(backwards)
        raise ValueError(
            f"{index_name} must not decrease: sample {i} goes back to {index[i]:g} after {furthest[i]:g}"
            f" (tolerance {INDEX_BACKSTEP_TOLERANCE.get(index_name, 0.0):g} {INDEX_UNITS[index_name]})"
        )


def repair_not_decreasing(index: np.ndarray) -> tuple[np.ndarray, int]:
    """The index with backward steps (within tolerance, checked first) raised to the furthest value
    so far, and how many samples that changed. Returns the input itself when nothing changed."""
    if index.size < 2:
        return index, 0
    furthest = np.maximum.accumulate(index)
    changed = int(np.count_nonzero(furthest != index))
    return (furthest, changed) if changed else (index, 0)


def check_lap_span(index_name: str, index: np.ndarray) -> None:
    """The index spans a plausible lap: LAP_DISTANCE_RANGE_M or LAP_DURATION_RANGE_S."""
    span = float(index[-1] - index[0])
    low, high = LAP_DISTANCE_RANGE_M if index_name == "distance_m" else LAP_DURATION_RANGE_S
    unit = INDEX_UNITS[index_name]
    if not low <= span <= high:
        raise ValueError(
            f"{index_name} spans {span:g} {unit}, outside the plausible lap {low:g}..{high:g} {unit}"
        )


def check_raw_index(index_name: str, index: np.ndarray, n: int) -> None:
    """The index rules of a raw lap with n samples per channel, in order."""
    check_sample_count(n)
    check_index_length(index_name, index, n)
    check_not_decreasing(index_name, index)
    check_lap_span(index_name, index)


def check_aligned_length(n: int) -> None:
    """An already aligned lap holds exactly contract.N_STEPS values per channel."""
    if n != contract.N_STEPS:
        raise ValueError(f"an aligned lap has exactly {contract.N_STEPS} values per channel, got {n}")
