"""Tactical tensor: who is around the car on track at the end of lap L, and how fast they are.

Shape float32 [2, 2]: rows (car ahead, car behind) x columns (gap s, pace delta s).

- "On track" means physical order at the timing line, not race classification: the car ahead is
  the car that crossed the line most recently *before* us (it may be a lapped car or a leader about
  to lap us); the car behind is the next car to cross *after* us. The gap is the difference of the
  crossing times, always >= 0.
- Pace delta = their last completed lap time minus our lap L time: negative means they are faster.
- No car (leader on the road, last car, or a gap of NO_CAR_GAP_S or more): gap NO_CAR_GAP_S and pace
  delta NO_CAR_PACE_DELTA_S (see strategist.contract for why). Gaps are clipped to
  [0, NO_CAR_GAP_S], pace deltas to +-MAX_ABS_PACE_DELTA_S. A neighbour whose last lap time is
  unknown gets pace delta 0.
"""

from __future__ import annotations

import math

import numpy as np

from strategist.contract import MAX_ABS_PACE_DELTA_S, NO_CAR_GAP_S, NO_CAR_PACE_DELTA_S
from strategist.errors import DataError

Neighbour = tuple[float, float]  # (gap s, pace delta s)


def _row(neighbour: Neighbour | None, which: str) -> tuple[float, float]:
    if neighbour is None:
        return NO_CAR_GAP_S, NO_CAR_PACE_DELTA_S
    try:
        gap, delta = (float(v) for v in neighbour)
    except (TypeError, ValueError) as exc:
        raise DataError(f"car {which} must be (gap_s, pace_delta_s), got {neighbour!r}", field=which) from exc
    # math, not numpy: two Python floats (numpy's scalar calls cost more than the whole row)
    if math.isnan(gap) or gap < 0:
        raise DataError(f"car {which} gap must be >= 0 s, got {gap}", field=f"{which}.gap_s")
    if gap >= NO_CAR_GAP_S:  # includes +inf: too far away to interact = no car
        return NO_CAR_GAP_S, NO_CAR_PACE_DELTA_S
    if not math.isfinite(delta):
        if math.isnan(delta):
            delta = NO_CAR_PACE_DELTA_S  # unknown lap time of the neighbour
        else:
            raise DataError(f"car {which} pace delta is {delta}", field=f"{which}.pace_delta_s")
    return gap, min(max(delta, -MAX_ABS_PACE_DELTA_S), MAX_ABS_PACE_DELTA_S)  # np.clip of a finite float


def tactical_tensor(ahead: Neighbour | None, behind: Neighbour | None) -> np.ndarray:
    """[2, 2] float32: [[gap_ahead, pace_delta_ahead], [gap_behind, pace_delta_behind]]."""
    return np.array([_row(ahead, "ahead"), _row(behind, "behind")], dtype=np.float32)
