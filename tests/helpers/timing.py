"""Timing contexts for synthetic samples, built by the Data Engine's own encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strategist import contract
from strategist.data.context import LapTiming, context_vector
from strategist.data.fuel import FuelModel

RACE_LAPS = 60
FUEL = FuelModel.for_race(RACE_LAPS)


def stack_context(
    lap: int, lap_times: Sequence[float], tyre_life: float, *, compound: str = "MEDIUM"
) -> np.ndarray:
    """float32 [N_CONTEXT] for lap L = `lap` whose slots [L, L-1, L-2, L-5, L_base] took `lap_times`
    (measured, s); green laps of one stint, the base lap 5 laps into it."""
    numbers = [lap, lap - 1, lap - 2, lap - 5, min(lap, max(1, lap - int(tyre_life) + 2))]
    numbers = [max(1, n) for n in numbers]
    slots = [
        LapTiming(
            lap_number=n,
            lap_time_s=float(t),
            tyre_life=max(1.0, tyre_life - (lap - n)),
            stint=1,
            stint_lap=max(1, int(tyre_life) - (lap - n)),
            compound=compound,
        )
        for n, t in zip(numbers, lap_times, strict=True)
    ]
    return context_vector(slots, fuel=FUEL, race_laps=RACE_LAPS)


def contexts(laps: np.ndarray, lap_times: np.ndarray, tyre_life: np.ndarray) -> np.ndarray:
    """[n, N_CONTEXT] float32 from lap numbers [n], slot lap times [n, 5] and tyre lives [n]."""
    if len(laps) == 0:
        return np.zeros((0, contract.N_CONTEXT), np.float32)
    return np.stack(
        [stack_context(int(a), b, float(c)) for a, b, c in zip(laps, lap_times, tyre_life, strict=True)]
    )
