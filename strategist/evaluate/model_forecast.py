"""Run a trained model over an evaluation set, in batches, without gradients."""

from __future__ import annotations

import numpy as np

from strategist.evaluate.predictions import Arrays, Predictions


def model_predictions(model, data: Arrays, batch_size: int = 512) -> Predictions:
    """Model outputs for every sample; pace turned from delta into absolute seconds.

    The model answers pace as a delta to the fuel-corrected time of lap L (pace_ref [n]), so the
    absolute corridor is pace_ref + pace_quantiles [n, 3].
    """
    import torch

    names = model.model_config.input_names  # telemetry, tactical (, context)
    pace, risk, tire = [], [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(data[names[0]]), batch_size):
            stop = start + batch_size
            out_pace, out_risk, out_tire = model(
                *(
                    torch.from_numpy(np.ascontiguousarray(data[k][start:stop], dtype=np.float32))
                    for k in names
                )
            )
            pace.append(out_pace.numpy())
            risk.append(out_risk.numpy())
            tire.append(out_tire.numpy().reshape(-1))
    ref = np.asarray(data["pace_ref"], np.float64)
    return Predictions(
        pace_quantiles=ref[:, None] + np.concatenate(pace).astype(np.float64),
        risk_probs=np.concatenate(risk).astype(np.float64),
        tire_health=np.concatenate(tire).astype(np.float64),
    )
