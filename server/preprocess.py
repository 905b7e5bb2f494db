"""Requests -> model input tensors, through the Data Engine (the same code the dataset builder runs).

Batch layout sent to the backend, for N cars: rows 0..N-1 are the cars as raced (their real
neighbours), rows N..2N-1 the same stacks in clean air (no car ahead or behind, the contract's
NO_CAR encoding). One backend call therefore answers both the prediction and its counterfactual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from server.schemas import CarGap, FuelParams, LapTelemetry, PredictRequest
from strategist import contract
from strategist.data.engine import AlignedLap, RawLap, build_model_inputs
from strategist.data.fuel import FuelModel
from strategist.data.tactical import Neighbour, tactical_tensor


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for N cars (2N rows) and what postprocessing needs to turn deltas into seconds."""

    telemetry: np.ndarray  # float32 [2N, 5, 100, 5]
    tactical: np.ndarray  # float32 [2N, 2, 2]
    reference_fc_s: np.ndarray  # float64 [N] fuel-corrected time of lap L
    fuel_models: list[FuelModel]  # [N]
    fuel_sources: list[str]  # [N] "request", "race_laps" or "default"
    requests: Sequence[PredictRequest]

    @property
    def n_cars(self) -> int:
        return len(self.requests)


def lap_input(lap: LapTelemetry, where: str) -> RawLap | AlignedLap:
    """A validated lap as the Data Engine takes it: a RawLap to align, or an AlignedLap whose
    100 steps get the same per-sample corrections (Throttle clip) as an aligned raw lap."""
    if lap.aligned:
        return AlignedLap(channels=lap.channels, where=where)
    return RawLap(channels=lap.channels, distance_m=lap.distance_m, time_s=lap.time_s, where=where)


def neighbour(gap: CarGap | None) -> Neighbour | None:
    return None if gap is None else (gap.gap_s, gap.pace_delta_s)


def fuel_model_for(request: PredictRequest, default_race_laps: int) -> tuple[FuelModel, str]:
    if request.fuel is not None:
        fuel = request.fuel
        return FuelModel(
            fuel.start_mass_kg, fuel.consumption_kg_per_lap, fuel.sensitivity_s_per_kg
        ), "request"
    if request.race_laps is not None:
        return FuelModel.for_race(request.race_laps), "race_laps"
    return FuelModel.for_race(default_race_laps), "default"


def preprocess(requests: Sequence[PredictRequest], *, default_race_laps: int) -> PreparedBatch:
    """Align, stack and encode every car. Raises DataError naming the car, lap slot and field."""
    clean_air = tactical_tensor(None, None)
    telemetry, tactical, clean_tactical = [], [], []
    reference, fuel_models, sources = [], [], []
    for car_index, request in enumerate(requests):
        prefix = f"cars[{car_index}]." if len(requests) > 1 else ""
        laps = [
            lap_input(lap, f"{prefix}laps[{slot_index}] (lap {slot})")
            for slot_index, (slot, lap) in enumerate(zip(contract.LAP_SLOTS, request.laps, strict=True))
        ]
        stack, tac = build_model_inputs(laps, neighbour(request.ahead), neighbour(request.behind))
        telemetry.append(stack)
        tactical.append(tac)
        clean_tactical.append(clean_air)
        fuel, source = fuel_model_for(request, default_race_laps)
        fuel_models.append(fuel)
        sources.append(source)
        reference.append(fuel.correct(request.lap_time_s, request.lap_number))
    return PreparedBatch(
        telemetry=np.stack(telemetry + telemetry).astype(np.float32, copy=False),
        tactical=np.stack(tactical + clean_tactical).astype(np.float32, copy=False),
        reference_fc_s=np.asarray(reference, dtype=np.float64),
        fuel_models=fuel_models,
        fuel_sources=sources,
        requests=requests,
    )


def fuel_params(model: FuelModel) -> FuelParams:
    return FuelParams(
        start_mass_kg=model.start_mass_kg,
        consumption_kg_per_lap=model.consumption_kg_per_lap,
        sensitivity_s_per_kg=model.sensitivity_s_per_kg,
    )
