"""Spatial alignment: one lap of time-sampled car data -> N distance-aligned micro-sectors.

Raw FastF1 car_data arrives at about 4 Hz with jitter, repeated timestamps and gaps, so two laps are
only comparable after putting them on a common *distance* axis. Choices:

- Distance: taken from `distance_m` when given, else integrated from Speed over `time_s` with the
  trapezoid rule (km/h -> m/s). Repeated timestamps add no distance; a gap is bridged linearly.
- Axis: the lap (or the `segment` of it, given as fractions (start, end) of the lap distance) is cut
  into `n_steps` equal micro-sectors; each channel is read at the step *centres*
  (start + (i + 0.5) / n_steps * (end - start)). Using the lap's own integrated length (not the
  official length) keeps laps with a few percent integration error aligned corner to corner.
- Continuous channels (Speed, Throttle, RPM): linear interpolation in distance. At 4 Hz and ~55 m a
  micro-sector there is about one sample per step, so bin averages would mostly be empty bins.
- Discrete channels (Brake, nGear): the nearest sample in distance, so they keep their values
  (0/1 and integer gears; never 0.5 or 4.3).
- Throttle above 100 (104 is FastF1's "unavailable", mostly at standstill) is clipped to 100 and
  counted in `counters["throttle_clipped"]` (`clip_throttle`; laps that arrive already aligned get
  the same clip and count through `prepare_aligned_lap`). Brake as booleans or 0/1 (or 0-100 from older FastF1)
  becomes 0/1 (any value > 0 is 1).
- A distance index that steps back by less than limits.INDEX_BACKSTEP_TOLERANCE (sensor noise of
  real ~7.5 Hz sources) is raised to its running maximum and counted in
  `counters["index_backstep_repaired"]`; further back is an error.
- Bad input raises DataError naming `where` (file/driver/lap as the caller knows them) and the
  field: NaN/inf values, time or distance going backwards, too few samples, a lap of no length,
  negative speeds, gears outside 0-8. The minimum sample count and lap length are the shared input
  limits of strategist.limits, the same the gateway enforces.

Output: float32 [n_steps, 5] in `strategist.contract.CHANNELS` order, physical units.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from strategist.contract import CHANNELS, DISCRETE_CHANNELS, N_STEPS
from strategist.errors import DataError
from strategist.limits import (
    BACKSTEP_COUNTER,
    LAP_DISTANCE_RANGE_M,
    MAX_GEAR,
    MIN_LAP_SAMPLES,
    THROTTLE_CLIP,
    check_not_decreasing,
    repair_not_decreasing,
)

MIN_LAP_DISTANCE_M = LAP_DISTANCE_RANGE_M[0]


def _fail(where: str, message: str, field: str | None = None) -> DataError:
    prefix = f"{where}: " if where else ""
    suffix = f" (field {field})" if field else ""
    return DataError(f"{prefix}{message}{suffix}", field=field)


def _as_1d(values: ArrayLike, field: str, n: int | None, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"values are not numeric: {exc}", field) from exc
    if arr.ndim != 1:
        raise _fail(where, f"expected a 1-D array, got shape {arr.shape}", field)
    if n is not None and arr.shape[0] != n:
        raise _fail(where, f"has {arr.shape[0]} samples, Speed has {n}", field)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, f"non-finite value {arr[i]} at sample {i} ({int(bad.sum())} in all)", field)
    return arr


def _samples(values: ArrayLike, field: str, n: int | None, where: str, validated: bool) -> np.ndarray:
    """_as_1d, or for a lap the gateway validated (align_lap) just the float64 array."""
    if validated:
        return np.asarray(values, dtype=np.float64)
    return _as_1d(values, field, n, where)


def _check_non_decreasing(arr: np.ndarray, field: str, where: str) -> None:
    steps = np.diff(arr)
    if (steps < 0).any():
        i = int(np.argmax(steps < 0))
        raise _fail(where, f"goes backwards at sample {i + 1}: {arr[i]:.3f} -> {arr[i + 1]:.3f}", field)


def integrate_distance(speed_kmh: np.ndarray, time_s: np.ndarray) -> np.ndarray:
    """Cumulative distance [m] from speed [km/h] sampled at times [s] (trapezoid), starting at 0."""
    v = np.asarray(speed_kmh) / 3.6
    t = np.asarray(time_s)
    steps = 0.5 * (v[1:] + v[:-1]) * (t[1:] - t[:-1])  # [n - 1] metres; t[1:] - t[:-1] is np.diff(t)
    # [0.0, *cumsum]: what np.concatenate([[0.0], np.cumsum(steps)]) gives, without its list round trip.
    out = np.zeros(steps.shape[0] + 1, dtype=np.result_type(np.float64, steps.dtype))
    out[1:] = np.cumsum(steps)
    return out


def step_centres(n_steps: int, segment: tuple[float, float] | None = None) -> np.ndarray:
    """Positions of the step centres as fractions of the lap distance, shape [n_steps]."""
    start, end = segment if segment is not None else (0.0, 1.0)
    return start + (np.arange(n_steps) + 0.5) / n_steps * (end - start)


@functools.lru_cache(maxsize=8)
def _whole_lap_centres(n_steps: int) -> np.ndarray:
    """step_centres(n_steps) computed once for align_lap (every whole lap asks for the same 100
    centres); read-only, as it is shared."""
    centres = step_centres(n_steps)
    centres.setflags(write=False)
    return centres


def clip_throttle(values: np.ndarray, counters: Counter[str] | None = None) -> np.ndarray:
    """Throttle readings above THROTTLE_CLIP (FastF1's 104 "unavailable") -> THROTTLE_CLIP, counted
    in counters["throttle_clipped"]. Returns a new array when anything was clipped."""
    over = np.count_nonzero(values > THROTTLE_CLIP)
    if over:
        if counters is not None:
            counters["throttle_clipped"] += over
        values = np.minimum(values, THROTTLE_CLIP)
    return values


def prepare_aligned_lap(
    channels: Mapping[str, ArrayLike],
    *,
    where: str = "",
    counters: Counter[str] | None = None,
    validated: bool = False,
) -> np.ndarray:
    """A lap whose channels already hold the N_STEPS distance steps -> float32 [N_STEPS, 5].

    The per-sample corrections of align_lap apply here too (Throttle clipped and counted, Brake to
    0/1), so an aligned lap and the raw lap it came from give the model the same tensor.
    validated: as in align_lap (the gateway checked finite samples, N_STEPS of them per channel).
    """
    missing = [name for name in CHANNELS if name not in channels]
    if missing:
        raise _fail(where, f"missing channel(s) {missing}; need {list(CHANNELS)}", missing[0])
    out = np.empty((N_STEPS, len(CHANNELS)), dtype=np.float32)
    for col, name in enumerate(CHANNELS):
        values = _samples(channels[name], name, None, where, validated)
        if not validated and values.shape[0] != N_STEPS:
            raise _fail(
                where, f"an aligned lap has {N_STEPS} values per channel, got {values.shape[0]}", name
            )
        if name == "Throttle":
            values = clip_throttle(values, counters)
        elif name == "Brake":
            values = (values > 0).astype(np.float64)
        out[:, col] = values
    return out


def align_lap(
    channels: Mapping[str, ArrayLike],
    *,
    distance_m: ArrayLike | None = None,
    time_s: ArrayLike | None = None,
    n_steps: int = N_STEPS,
    segment: tuple[float, float] | None = None,
    where: str = "",
    counters: Counter[str] | None = None,
    validated: bool = False,
) -> np.ndarray:
    """Resample one lap of raw car data onto `n_steps` distance-aligned steps.

    channels: the five CHANNELS (extra keys such as DRS are ignored), each 1-D with the same length.
    distance_m / time_s: give one (distance wins when both are given); same length as the channels.
    segment: (start, end) fractions of the lap distance, 0 <= start < end <= 1; default the whole lap.
    counters: optional Counter that receives counts of corrected artefacts (throttle_clipped).
    validated: the lap has passed the gateway's input limits (strategist.limits, through
      server/schemas.py or server/lap_block.py): finite 1-D samples of one length, at least
      MIN_LAP_SAMPLES of them, every channel in its physical range, whole gears, and an index that
      goes back no further than its tolerance. The checks that prove those rules again are then
      skipped (they were a third of the gateway's alignment time); every correction (Throttle clip,
      Brake to 0/1, the distance repair, with their counters) and the lap-length check (a time-indexed
      lap's distance is integrated here) still run, so the tensor is the same bit for bit. A lap that
      did not pass those limits must not claim it: it could give a wrong tensor instead of a DataError.
    Returns float32 [n_steps, len(CHANNELS)].
    """
    if n_steps < 1:
        raise _fail(where, f"n_steps must be >= 1, got {n_steps}", "n_steps")
    if segment is not None:
        start, end = segment
        if not (0.0 <= start < end <= 1.0):
            raise _fail(where, f"segment must satisfy 0 <= start < end <= 1, got {segment}", "segment")
    missing = [name for name in CHANNELS if name not in channels]
    if missing:
        raise _fail(where, f"missing channel(s) {missing}; need {list(CHANNELS)}", missing[0])

    speed = _samples(channels["Speed"], "Speed", None, where, validated)
    n = speed.shape[0]
    if not validated:
        if n < MIN_LAP_SAMPLES:
            raise _fail(where, f"lap has {n} samples, need at least {MIN_LAP_SAMPLES}", "Speed")
        if (speed < 0).any():
            raise _fail(where, f"negative speed {speed.min()} km/h", "Speed")

    if distance_m is not None:
        dist = _samples(distance_m, "Distance", n, where, validated)
        # Sub-decimetre backward steps are sensor noise (strategist.limits): repaired and counted.
        # (A validated lap passed this very check in the gateway, limits.check_raw_index.)
        if not validated:
            try:
                check_not_decreasing("distance_m", dist)
            except ValueError as exc:
                raise _fail(where, str(exc), "Distance") from None
        dist, repaired = repair_not_decreasing(dist)
        if repaired and counters is not None:
            counters[BACKSTEP_COUNTER] += repaired
        dist = dist - dist[0]
    elif time_s is not None:
        t = _samples(time_s, "Time", n, where, validated)
        if not validated:  # the gateway's check_not_decreasing("time_s") allows no step back either
            _check_non_decreasing(t, "Time", where)
        dist = integrate_distance(speed, t)
    else:
        raise _fail(where, "give distance_m or time_s to place the samples along the lap", "Distance")

    lap_length = float(dist[-1])
    if lap_length < MIN_LAP_DISTANCE_M:
        raise _fail(
            where, f"lap covers {lap_length:.1f} m, need at least {MIN_LAP_DISTANCE_M:.0f} m", "Distance"
        )

    centres = _whole_lap_centres(n_steps) if segment is None else step_centres(n_steps, segment)
    targets = centres * lap_length  # [n_steps] metres from the lap start
    # Nearest-sample index for discrete channels: searchsorted gives the right neighbour.
    right = np.clip(np.searchsorted(dist, targets), 1, n - 1)
    left = right - 1
    nearest = np.where(targets - dist[left] <= dist[right] - targets, left, right)

    out = np.empty((n_steps, len(CHANNELS)), dtype=np.float32)
    for col, name in enumerate(CHANNELS):
        values = speed if name == "Speed" else _samples(channels[name], name, n, where, validated)
        # The range checks below are the gateway's CHANNEL_LIMITS for a validated lap.
        if name == "Throttle":
            values = clip_throttle(values, counters)
            if not validated and (values < 0).any():
                raise _fail(where, f"negative throttle {values.min()}", name)
        elif name == "Brake":
            values = (values > 0).astype(np.float64)
        elif name == "nGear" and not validated:
            if (values < 0).any() or (values > MAX_GEAR).any() or (values != np.round(values)).any():
                bad = values[(values < 0) | (values > MAX_GEAR) | (values != np.round(values))][0]
                raise _fail(where, f"gear {bad} outside the integers 0-{MAX_GEAR}", name)
        elif name == "RPM" and not validated and (values < 0).any():
            raise _fail(where, f"negative RPM {values.min()}", name)

        if name in DISCRETE_CHANNELS:
            out[:, col] = values[nearest]
        else:
            out[:, col] = np.interp(targets, dist, values)
    return out
