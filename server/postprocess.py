"""Model outputs -> answers in seconds and named classes (no tensor work left after this)."""

from __future__ import annotations

import numpy as np

from server.backend import ModelOutputs
from server.preprocess import PreparedBatch, fuel_params
from server.schemas import Corridor, PacePrediction, Prediction, Scenario
from strategist import contract
from strategist.data.fuel import FuelModel


def _scenario(
    outputs: ModelOutputs, row: int, reference_fc_s: float, fuel_model: FuelModel, next_lap: int
) -> Scenario:
    delta = outputs.pace_quantiles[row].astype(np.float64)  # [3] s vs fuel-corrected lap L
    fuel_corrected = reference_fc_s + delta
    expected = np.asarray(fuel_model.uncorrect(fuel_corrected, next_lap), dtype=np.float64)
    return Scenario(
        pace=PacePrediction(
            fuel_corrected=Corridor.of(fuel_corrected),
            expected_lap_time=Corridor.of(expected),
            delta_vs_lap_s=Corridor.of(delta),
        ),
        risk={name: float(p) for name, p in zip(contract.RISK_CLASSES, outputs.risk_probs[row], strict=True)},
        tire_health=float(outputs.tire_health[row, 0]),
    )


def postprocess(batch: PreparedBatch, outputs: ModelOutputs) -> list[Prediction]:
    """One Prediction per car: row i as raced, row batch.clean_rows[i] its clean-air counterfactual
    (none when the car did not ask for it)."""
    if outputs.pace_quantiles.shape[0] != batch.n_rows:
        raise ValueError(f"backend returned {outputs.pace_quantiles.shape[0]} rows for {batch.n_rows} sent")
    predictions = []
    for i, request in enumerate(batch.requests):
        next_lap = request.lap_number + 1
        reference = float(batch.reference_fc_s[i])
        fuel = batch.fuel_models[i]
        raced = _scenario(outputs, i, reference, fuel, next_lap)
        clean_row = batch.clean_rows[i]
        clean = None if clean_row is None else _scenario(outputs, clean_row, reference, fuel, next_lap)
        predictions.append(
            Prediction.model_construct(
                # model_construct: every value was built here from validated inputs and model outputs.
                pace=raced.pace,
                risk=raced.risk,
                tire_health=raced.tire_health,
                car=request.car,
                next_lap=next_lap,
                reference_fc_s=reference,
                fuel_model=fuel_params(fuel),
                fuel_model_source=batch.fuel_sources[i],
                clean_air=clean,
                traffic_cost_s=None
                if clean is None
                else raced.pace.fuel_corrected.p50_s - clean.pace.fuel_corrected.p50_s,
            )
        )
    return predictions
