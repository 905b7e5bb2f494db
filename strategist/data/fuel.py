"""Fuel model: how much of a lap time is the fuel on board, so lap times can be compared across a race.

A car burns fuel at a constant rate, so it gets lighter and faster every lap. Pace targets are
*fuel-corrected*: the time the lap would have taken with an empty tank,

    corrected = lap_time - mass_at_lap_start(lap) * sensitivity_s_per_kg
    mass_at_lap_start(lap) = max(start_mass_kg - (lap - 1) * consumption_kg_per_lap, 0)

The mass at the *start* of the lap is used (as the TUM race simulation does, and as the simulator's
truth.csv `FuelMass` records). Defaults for real 2023 races: 110 kg at the start, consumption =
start mass / race laps, 0.031 s/kg (TUM median over 121 races 2014-2019). Simulated races carry their
own model in sim_meta.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from strategist.errors import DataError

DEFAULT_START_MASS_KG = 110.0  # 2023 regulations: 110 kg maximum race fuel
DEFAULT_SENSITIVITY_S_PER_KG = 0.031  # TUM race-params median (range 0.017-0.045)


@dataclass(frozen=True)
class FuelModel:
    start_mass_kg: float
    consumption_kg_per_lap: float
    sensitivity_s_per_kg: float = DEFAULT_SENSITIVITY_S_PER_KG

    def __post_init__(self) -> None:
        for name, value in ((f.name, getattr(self, f.name)) for f in fields(self)):
            if not np.isfinite(value) or value < 0:
                raise DataError(f"fuel model {name} must be a finite number >= 0, got {value!r}", field=name)

    @classmethod
    def for_race(cls, total_laps: int, start_mass_kg: float = DEFAULT_START_MASS_KG) -> FuelModel:
        """The default model for a real race of `total_laps` laps: the tank runs out at the flag."""
        if total_laps < 1:
            raise DataError(
                f"total laps must be >= 1 to size the fuel model, got {total_laps}", field="LapNumber"
            )
        return cls(start_mass_kg, start_mass_kg / total_laps, DEFAULT_SENSITIVITY_S_PER_KG)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, file: str | None = None) -> FuelModel:
        """From a dict with the field names (manifest.json, sim_meta.json's `fuel_model`)."""
        try:
            return cls(
                float(values["start_mass_kg"]),
                float(values["consumption_kg_per_lap"]),
                float(values["sensitivity_s_per_kg"]),
            )
        except KeyError as exc:
            raise DataError(f"fuel model lacks {exc.args[0]!r} (has {sorted(values)})", file=file) from exc
        except (TypeError, ValueError) as exc:
            raise DataError(f"fuel model has a non-numeric value: {exc}", file=file) from exc

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def _plain(self, *values: Any) -> bool:
        """Every operand a Python int or float (not bool): then Python's float arithmetic performs the
        same IEEE double operations as numpy's float64 path, without its 0-d array overhead (the
        gateway corrects one lap time at a time, ~6 per car)."""
        operands = (self.start_mass_kg, self.consumption_kg_per_lap, self.sensitivity_s_per_kg, *values)
        return all(type(v) is float or type(v) is int for v in operands)

    def mass_at_lap_start(self, lap_number: Any) -> Any:
        """Fuel on board [kg] when lap `lap_number` (1-based) starts; scalar or array in, same out."""
        if self._plain(lap_number):
            left = self.start_mass_kg - (float(lap_number) - 1.0) * self.consumption_kg_per_lap
            # np.maximum's own answer where the tank is empty (0, -0.0 or NaN), the value itself above
            return float(left) if left > 0.0 else float(np.maximum(left, 0.0))
        laps = np.asarray(lap_number, dtype=np.float64)
        mass = np.maximum(self.start_mass_kg - (laps - 1.0) * self.consumption_kg_per_lap, 0.0)
        return float(mass) if mass.ndim == 0 else mass

    def correct(self, lap_time_s: Any, lap_number: Any) -> Any:
        """Lap time with the fuel effect removed (what the lap would take on an empty tank)."""
        if self._plain(lap_time_s, lap_number):
            return float(lap_time_s - self.mass_at_lap_start(lap_number) * self.sensitivity_s_per_kg)
        out = (
            np.asarray(lap_time_s, dtype=np.float64)
            - np.asarray(self.mass_at_lap_start(lap_number)) * self.sensitivity_s_per_kg
        )
        return float(out) if out.ndim == 0 else out

    def uncorrect(self, corrected_s: Any, lap_number: Any) -> Any:
        """Inverse of `correct`: the lap time with the fuel of lap `lap_number` on board."""
        out = (
            np.asarray(corrected_s, dtype=np.float64)
            + np.asarray(self.mass_at_lap_start(lap_number)) * self.sensitivity_s_per_kg
        )
        return float(out) if out.ndim == 0 else out
