"""Corridor calibration: fit the P10/P90 widening of a trained model on held-out races.

Pinball loss makes the quantiles calibrated on the races the model was trained on; on other races
the corridor comes out too narrow (the model is more confident than it should be). This step runs
the model over a held-out dataset (the validation races: never the test races, which must stay
unseen) and fits the two scales of `IntervalCalibration`, in normalised pace units:

    lower tail: the share of laps below P10 = median - s_lo * (median - P10) must be tau_lo (0.1)
        -> s_lo = the (1 - tau_lo) quantile of (median - y) / (median - P10)
    upper tail: likewise with (y - median) / (P90 - median) and 1 - tau_hi

The scales are buffers of the model, so the exported ONNX/TensorRT graphs carry them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from strategist.errors import StrategistError

log = logging.getLogger(__name__)

# A scale outside this range means the corridor is degenerate or the held-out set is tiny; clamp
# and say so rather than ship a corridor of zero or absurd width.
SCALE_RANGE = (0.25, 10.0)
MIN_SAMPLES = 200


class TooFewLapsError(StrategistError):
    """The held-out set is too small to fit corridor scales (the checkpoint is left as it was)."""


@torch.no_grad()
def predict_normalised_quantiles(
    model: Any, inputs: dict[str, np.ndarray], batch_size: int = 512
) -> np.ndarray:
    """The model's inputs by contract name ([n, 5, 100, 5], [n, 2, 2] (, [n, K])) -> [n, 3]
    quantiles in normalised pace units."""
    names = model.model_config.input_names
    n = len(inputs[names[0]])
    outputs = []
    for start in range(0, n, batch_size):
        out = model.forward_train(
            *(torch.from_numpy(np.ascontiguousarray(inputs[k][start : start + batch_size])) for k in names)
        )
        outputs.append(out.pace_quantiles_norm.numpy())
    return np.concatenate(outputs)


def fit_interval_scale(
    quantiles_norm: np.ndarray, target_norm: np.ndarray, taus: tuple[float, float] = (0.1, 0.9)
) -> tuple[float, float]:
    """Scales (lower, upper) that make each tail of the corridor hold its nominal share."""
    if len(target_norm) < MIN_SAMPLES:
        raise TooFewLapsError(
            f"corridor calibration needs at least {MIN_SAMPLES} held-out laps, got {len(target_norm)}"
        )
    eps = 1e-6
    median = quantiles_norm[:, 1]
    lower_ratio = (median - target_norm) / np.maximum(median - quantiles_norm[:, 0], eps)
    upper_ratio = (target_norm - median) / np.maximum(quantiles_norm[:, 2] - median, eps)
    scales = (float(np.quantile(lower_ratio, 1.0 - taus[0])), float(np.quantile(upper_ratio, taus[1])))
    clamped = tuple(float(np.clip(s, *SCALE_RANGE)) for s in scales)
    if clamped != scales:
        log.warning("corridor scales %s clamped to %s (range %s)", scales, clamped, SCALE_RANGE)
    return clamped[0], clamped[1]


def calibrate_checkpoint(checkpoint: Path, dataset: Path) -> dict[str, Any]:
    """Fit the corridor scales of `checkpoint` on `dataset` and write them into the checkpoint."""
    from strategist.data.dataset_format import load_arrays
    from strategist.model.checkpoint import load_checkpoint, save_checkpoint
    from strategist.model.core import StrategistModel

    loaded, cfg, meta = load_checkpoint(checkpoint)
    model: StrategistModel = loaded  # the attributes of StrategistForwardMixin
    arrays, _ = load_arrays(dataset, fields=[*cfg.input_names, "pace_ref", "pace_target"])
    keep = np.isfinite(arrays["pace_target"]) & np.isfinite(arrays["pace_ref"])
    inputs = {name: arrays[name][keep] for name in cfg.input_names}
    # Fit on the uncalibrated corridor, so calibrating twice gives the same answer.
    model.interval_calibration.scale.fill_(1.0)
    quantiles_norm = predict_normalised_quantiles(model, inputs)
    normalizer = model.normalizer
    delta = arrays["pace_target"][keep] - arrays["pace_ref"][keep]
    target_norm = (delta - float(normalizer.pace_delta_mean)) / float(normalizer.pace_delta_std)
    lower, upper = fit_interval_scale(quantiles_norm, target_norm)
    before = float(np.mean((target_norm >= quantiles_norm[:, 0]) & (target_norm <= quantiles_norm[:, 2])))
    model.interval_calibration.scale.copy_(torch.tensor([lower, upper]))
    calibrated = predict_normalised_quantiles(model, inputs)
    after = float(np.mean((target_norm >= calibrated[:, 0]) & (target_norm <= calibrated[:, 2])))
    report = {
        "scale_lower": lower,
        "scale_upper": upper,
        "coverage_before": before,
        "coverage_after": after,
        "n_laps": int(keep.sum()),
        "dataset": str(dataset),
    }
    extra = {**meta.get("extra", {}), "interval_calibration": report}
    save_checkpoint(
        model, cfg, checkpoint, stats=meta.get("stats", {}), metrics=meta.get("metrics"), extra=extra
    )
    log.info("calibrated %s on %s: %s", checkpoint, dataset, report)
    return report
