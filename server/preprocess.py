"""Requests -> model input tensors, through the Data Engine (the same code the dataset builder runs).

Batch layout sent to the backend, for N cars of which C ask for the counterfactual (the default):
rows 0..N-1 are the cars as raced (their real neighbours), rows N..N+C-1 the same stacks of those C
cars in clean air (no car ahead or behind, the contract's NO_CAR encoding), in car order
(`PreparedBatch.clean_rows`). One backend call therefore answers both the prediction and its
counterfactual; a car with `counterfactual: false` costs one row instead of two.

For a model that reads the timing context, each car's context [N_CONTEXT] is built from the request's
per-lap `timing`, its fuel model and race length by strategist.data.context.context_vector (the
dataset builder's encoder); the clean-air row carries the same context (only tactical differs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.schemas import TIMING_FIELDS, CarGap, FuelParams, LapTelemetry, PredictRequest, TimingRecord
from strategist import contract
from strategist.data.context import LapTiming, context_vector
from strategist.data.engine import AlignedLap, RawLap, align_slot, build_model_inputs
from strategist.data.fuel import FuelModel
from strategist.data.tactical import Neighbour, tactical_tensor
from strategist.errors import DataError


class RequestErrors(ValueError):
    """What preprocessing found wrong in a request; `errors` are pydantic-style {"loc", "msg",
    "type"} entries, loc relative to the body (the gateway answers 422)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class TimingRequired(RequestErrors):
    """The served model reads the timing context and laps lack `timing`."""


def lap_field_loc(lap: LapTelemetry, engine_field: str | None) -> tuple[str, ...]:
    """Where in the request lap a Data Engine error belongs. The engine names its own fields:
    "Distance" is `distance_m` when the lap gives it, else the distance integrated from Speed over
    time_s (a lap whose Speed is all 0 covers 0 m: its Speed is what is wrong); "Time" is `time_s`."""
    if engine_field is None:
        return ()
    if engine_field == "Distance":
        return ("distance_m",) if lap.distance_m is not None else ("channels", "Speed")
    if engine_field == "Time":
        return ("time_s",)
    if engine_field in contract.CHANNELS:
        return ("channels", engine_field)
    return ()


def _align_lap(
    lap: LapTelemetry, where: str, loc: tuple[str | int, ...], counters: Counter[str]
) -> np.ndarray:
    """One request lap -> float32 [N_STEPS, 5]; a DataError becomes a 422 entry at the lap's field."""
    try:
        return align_slot(lap_input(lap, where), counters=counters)
    except DataError as exc:
        # DataError wraps its message as "field F: <where>: <reason> (field F)": loc says the field.
        message = str(exc)
        if exc.field:
            message = message.removeprefix(f"field {exc.field}: ").removesuffix(f" (field {exc.field})")
        raise RequestErrors(
            [{"loc": (*loc, *lap_field_loc(lap, exc.field)), "msg": message, "type": "data_error"}]
        ) from None


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for N cars (2N rows) and what postprocessing needs to turn deltas into seconds."""

    telemetry: np.ndarray  # float32 [N + C, 5, 100, 5]
    tactical: np.ndarray  # float32 [N + C, 2, 2]
    context: np.ndarray | None  # float32 [N + C, N_CONTEXT]; None when not built (see preprocess)
    reference_fc_s: np.ndarray  # float64 [N] fuel-corrected time of lap L
    fuel_models: list[FuelModel]  # [N]
    fuel_sources: list[str]  # [N] "request", "race_laps" or "default"
    requests: Sequence[PredictRequest]
    clean_rows: list[int | None]  # [N] row of each car's clean-air counterfactual; None = not asked
    # What the Data Engine repaired on the way (throttle_clipped, index_backstep_repaired): samples.
    corrections: Counter[str] = field(default_factory=Counter)

    @property
    def n_cars(self) -> int:
        return len(self.requests)

    @property
    def n_rows(self) -> int:
        return int(self.telemetry.shape[0])

    def model_inputs(self, input_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The arrays the model reads, by input name (input_names: the served model's inputs)."""
        arrays = {contract.INPUT_TELEMETRY: self.telemetry, contract.INPUT_TACTICAL: self.tactical}
        if self.context is not None:
            arrays[contract.INPUT_CONTEXT] = self.context
        missing = [name for name in input_names if name not in arrays]
        if missing:
            raise ValueError(f"the batch was prepared without the model input(s) {missing}")
        return {name: arrays[name] for name in input_names}


def lap_input(lap: LapTelemetry, where: str) -> RawLap | AlignedLap:
    """A validated lap as the Data Engine takes it: a RawLap to align, or an AlignedLap whose
    100 steps get the same per-sample corrections (Throttle clip) as an aligned raw lap.

    `validated`: every LapTelemetry the gateway holds passed strategist.limits, through the schema's
    validators (server/schemas.py) or the fast decoders' server/lap_block.py (the same rules), so the
    Data Engine skips proving them again and only corrects (strategist.data.align.align_lap)."""
    if lap.aligned:
        return AlignedLap(channels=lap.channels, where=where, validated=True)
    return RawLap(
        channels=lap.channels, distance_m=lap.distance_m, time_s=lap.time_s, where=where, validated=True
    )


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


def lap_timing(record: TimingRecord) -> LapTiming:
    """A request lap's timing as the context encoder takes it (field for field)."""
    return LapTiming(**{name: getattr(record, name) for name in TIMING_FIELDS})


def missing_timing(requests: Sequence[PredictRequest]) -> list[dict[str, Any]]:
    """One 422 entry per lap without `timing` (loc laps.<i>.timing, or cars.<c>.laps.<i>.timing)."""
    errors = []
    fields = ", ".join(TIMING_FIELDS)
    for car_index, request in enumerate(requests):
        car_loc: tuple[str | int, ...] = ("cars", car_index) if len(requests) > 1 else ()
        for lap_index, lap in enumerate(request.laps):
            if lap.timing is None:
                errors.append(
                    {
                        "loc": (*car_loc, "laps", lap_index, "timing"),
                        "msg": "the served model reads the timing context: every lap needs `timing` "
                        f"{{{fields}}} (lap_number, tyre_life, stint and stint_lap required)",
                        "type": "missing",
                    }
                )
    return errors


def preprocess(
    requests: Sequence[PredictRequest],
    *,
    default_race_laps: int,
    input_names: Sequence[str] | None = None,
) -> PreparedBatch:
    """Align, stack and encode every car. Raises DataError naming the car, lap slot and field.

    input_names: the served model's inputs. With the context among them every lap must carry
    `timing` (TimingRequired otherwise); without it the timing is not read. None: the context is
    built when every lap of every car carries timing (what a caller that only prepares data wants).
    """
    if input_names is None:
        with_context = not missing_timing(requests)
    else:
        with_context = contract.INPUT_CONTEXT in input_names
        if with_context and (errors := missing_timing(requests)):
            raise TimingRequired(errors)
    clean_air = tactical_tensor(None, None)
    telemetry, tactical, contexts = [], [], []
    reference, fuel_models, sources = [], [], []
    corrections: Counter[str] = Counter()
    for car_index, request in enumerate(requests):
        prefix = f"cars[{car_index}]." if len(requests) > 1 else ""
        car_loc: tuple[str | int, ...] = ("cars", car_index) if len(requests) > 1 else ()
        laps = [
            _align_lap(
                lap, f"{prefix}laps[{slot_index}] (lap {slot})", (*car_loc, "laps", slot_index), corrections
            )
            for slot_index, (slot, lap) in enumerate(zip(contract.LAP_SLOTS, request.laps, strict=True))
        ]
        stack, tac = build_model_inputs(laps, neighbour(request.ahead), neighbour(request.behind))
        telemetry.append(stack)
        tactical.append(tac)
        fuel, source = fuel_model_for(request, default_race_laps)
        fuel_models.append(fuel)
        sources.append(source)
        reference.append(fuel.correct(request.lap_time_s, request.lap_number))
        if with_context:
            slots = [lap_timing(lap.timing) for lap in request.laps if lap.timing is not None]
            contexts.append(
                context_vector(
                    slots,
                    fuel=fuel,
                    race_laps=request.race_laps or default_race_laps,
                    where=f"{prefix}laps[*].timing",
                )
            )
    asked = [i for i, request in enumerate(requests) if request.counterfactual]
    clean_rows: list[int | None] = [None] * len(requests)
    for row, car in enumerate(asked, start=len(requests)):
        clean_rows[car] = row
    return PreparedBatch(
        telemetry=np.stack(telemetry + [telemetry[i] for i in asked]).astype(np.float32, copy=False),
        tactical=np.stack(tactical + [clean_air] * len(asked)).astype(np.float32, copy=False),
        # The clean-air rows keep the car's own timing: only the neighbours change.
        context=np.stack(contexts + [contexts[i] for i in asked]).astype(np.float32, copy=False)
        if with_context
        else None,
        clean_rows=clean_rows,
        reference_fc_s=np.asarray(reference, dtype=np.float64),
        fuel_models=fuel_models,
        fuel_sources=sources,
        requests=requests,
        corrections=corrections,
    )


def fuel_params(model: FuelModel) -> FuelParams:
    return FuelParams(
        start_mass_kg=model.start_mass_kg,
        consumption_kg_per_lap=model.consumption_kg_per_lap,
        sensitivity_s_per_kg=model.sensitivity_s_per_kg,
    )
