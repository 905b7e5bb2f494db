"""The one path from one car's raw data to model inputs, shared by the gateway and dataset building.

    telemetry, tactical = build_model_inputs(laps, ahead, behind)

`laps` holds the five laps of the stack in LAP_SLOTS order [L, L-1, L-2, L-5, L_base]; each is
one of
- a RawLap (raw time- or distance-sampled channels, aligned here);
- an AlignedLap (a client's channels already on the N_STEPS distance steps: they get align_lap's
  per-sample corrections, the Throttle clip and its counter included);
- a float32 [N_STEPS, 5] array this engine aligned before (the dataset builder aligns each lap once
  and passes the cached array), used as it is.
All callers share the stacking, checks and tactical encoding below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from strategist.contract import LAP_SLOTS, N_LAP_CONTEXT, N_STEPS
from strategist.data.align import align_lap, prepare_aligned_lap
from strategist.data.stack import stack_laps
from strategist.data.tactical import Neighbour, tactical_tensor
from strategist.errors import StackSizeError


@dataclass
class RawLap:
    """One lap of raw car data: channel name -> samples, placed by distance_m or time_s."""

    channels: Mapping[str, ArrayLike]
    distance_m: ArrayLike | None = None
    time_s: ArrayLike | None = None
    where: str = ""  # file/driver/lap for error messages
    extra: dict[str, object] = field(default_factory=dict)
    validated: bool = False  # passed the gateway's input limits (align_lap's `validated`)


@dataclass
class AlignedLap:
    """One lap whose channels already hold the N_STEPS distance steps: channel name -> values."""

    channels: Mapping[str, ArrayLike]
    where: str = ""  # file/driver/lap for error messages
    validated: bool = False  # passed the gateway's input limits (prepare_aligned_lap's `validated`)


def align_raw_lap(
    lap: RawLap,
    *,
    n_steps: int = N_STEPS,
    segment: tuple[float, float] | None = None,
    counters: Counter[str] | None = None,
) -> np.ndarray:
    """align_lap on a RawLap: float32 [n_steps, 5]."""
    return align_lap(
        lap.channels,
        distance_m=lap.distance_m,
        time_s=lap.time_s,
        n_steps=n_steps,
        segment=segment,
        where=lap.where,
        counters=counters,
        validated=lap.validated,
    )


def align_slot(
    lap: RawLap | AlignedLap | np.ndarray,
    segment: tuple[float, float] | None = None,
    counters: Counter[str] | None = None,
) -> np.ndarray:
    """One slot's float32 [N_STEPS, 5] (an ndarray is taken as already aligned)."""
    if isinstance(lap, np.ndarray):
        return lap
    if isinstance(lap, AlignedLap):
        return prepare_aligned_lap(lap.channels, where=lap.where, counters=counters, validated=lap.validated)
    return align_raw_lap(lap, segment=segment, counters=counters)


def build_model_inputs(
    laps: Sequence[RawLap | AlignedLap | np.ndarray],
    ahead: Neighbour | None,
    behind: Neighbour | None,
    *,
    segment: tuple[float, float] | None = None,
    counters: Counter[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(telemetry float32 [5, N_STEPS, 5], tactical float32 [2, 2]) for one car.

    ahead / behind: (gap s, pace delta s) of the car ahead / behind on track at the end of lap L, or
    None when there is none. Raises StackSizeError for a stack of the wrong size and DataError for
    bad laps or neighbours.
    """
    if len(laps) != N_LAP_CONTEXT:  # before aligning anything: a wrong stack size is a caller error
        raise StackSizeError(
            f"a lap stack needs exactly {N_LAP_CONTEXT} laps {list(LAP_SLOTS)}, got {len(laps)}"
        )
    aligned = [align_slot(lap, segment, counters) for lap in laps]
    return stack_laps(aligned), tactical_tensor(ahead, behind)
