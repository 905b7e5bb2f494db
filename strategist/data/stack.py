"""The lap stack: which past laps the model sees, and stacking their aligned telemetry.

For a sample that predicts lap L+1 the stack holds the laps [L, L-1, L-2, L-5, L_base]
(strategist.contract.LAP_SLOTS). Rules, applied to one driver's laps:

- L must exist and have telemetry (otherwise there is no sample).
- L-1, L-2, L-5 are literally those laps, whatever they were (in-lap, out-lap, SC/VSC lap): they are
  what the car did, and the sample's `regime` says what kind of laps are involved.
- A slot whose lap does not exist (before lap 1, at the start of the race) or has no usable
  telemetry takes the lap of the next more recent slot: L-1 <- L, L-2 <- (lap used for L-1),
  L-5 <- (lap used for L-2). At lap 1 all four slots are lap 1. Such slots are marked
  `substituted` and their fuel-corrected time in the dataset (`fc_laps`) is NaN, so a model or a
  baseline can tell a repeated lap from a real one.
- L_base is the pace reference of the current tires: the first *clean* lap of the stint of lap L,
  at or before L. Clean = not lap 1, not an in-lap or out-lap, no SC/VSC/red flag, telemetry usable.
  If the stint has no clean lap yet (L is the out-lap or the stint runs under SC), L_base is the
  most recent clean lap before L in an earlier stint; if the race has none at all, it is L itself
  (substituted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from strategist.contract import CHANNELS, LAP_OFFSETS, LAP_SLOTS, N_LAP_CONTEXT, N_STEPS
from strategist.errors import DataError, StackSizeError


@dataclass(frozen=True)
class LapInfo:
    """What the stack rules need to know about one lap of one driver."""

    number: int
    stint: int
    is_pit_in: bool = False
    is_pit_out: bool = False
    is_neutralised: bool = False  # SC, VSC or red flag at any time in the lap
    has_telemetry: bool = True

    @property
    def is_clean(self) -> bool:
        return (
            self.number > 1
            and not self.is_pit_in
            and not self.is_pit_out
            and not self.is_neutralised
            and self.has_telemetry
        )


@dataclass(frozen=True)
class StackChoice:
    """The lap number used for each slot of LAP_SLOTS, and whether it stands in for a missing lap."""

    laps: tuple[int, ...]
    substituted: tuple[bool, ...]


def choose_stack_laps(lap: int, laps: Iterable[LapInfo], *, driver: str = "") -> StackChoice:
    """Apply the slot rules (module docstring) for current lap `lap` over one driver's `laps`."""
    by_number = {info.number: info for info in laps}
    current = by_number.get(lap)
    if current is None:
        raise DataError(f"lap {lap} is not among the driver's laps", driver=driver or None, lap=lap)
    if not current.has_telemetry:
        raise DataError(
            "lap L has no usable telemetry, no stack can be built", driver=driver or None, lap=lap
        )

    chosen: list[int] = []
    substituted: list[bool] = []
    for offset in LAP_OFFSETS:
        info = by_number.get(lap - offset)
        if info is not None and info.has_telemetry:
            chosen.append(info.number)
            substituted.append(False)
        else:  # offset 0 always succeeds above, so chosen[-1] exists here
            chosen.append(chosen[-1])
            substituted.append(True)

    stint_clean = [
        n for n, info in by_number.items() if n <= lap and info.stint == current.stint and info.is_clean
    ]
    earlier_clean = [n for n, info in by_number.items() if n < lap and info.is_clean]
    if stint_clean:
        chosen.append(min(stint_clean))
        substituted.append(False)
    elif earlier_clean:
        chosen.append(max(earlier_clean))
        substituted.append(False)
    else:
        chosen.append(lap)
        substituted.append(True)
    assert len(chosen) == len(LAP_SLOTS)
    return StackChoice(tuple(chosen), tuple(substituted))


def stack_laps(aligned: Sequence[np.ndarray]) -> np.ndarray:
    """Stack N_LAP_CONTEXT aligned laps ([N_STEPS, 5] each, LAP_SLOTS order) into [5, N_STEPS, 5] float32."""
    if len(aligned) != N_LAP_CONTEXT:
        raise StackSizeError(
            f"a lap stack needs exactly {N_LAP_CONTEXT} laps {list(LAP_SLOTS)}, got {len(aligned)}"
        )
    expected = (N_STEPS, len(CHANNELS))
    for slot, arr in zip(LAP_SLOTS, aligned, strict=True):
        shape = np.shape(arr)
        if shape != expected:
            raise DataError(f"aligned lap for slot {slot} has shape {shape}, expected {expected}", field=slot)
        if np.count_nonzero(np.isfinite(arr)) != np.size(arr):  # .all(), without its method overhead
            raise DataError(f"aligned lap for slot {slot} has non-finite values", field=slot)
    return np.stack([np.asarray(a, dtype=np.float32) for a in aligned])
