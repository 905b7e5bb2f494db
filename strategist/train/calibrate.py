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
MIN_GROUP_SAMPLES = 50  # per calibration group (grouped models); fewer: the group takes the pooled pair


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
    quantiles_norm: np.ndarray,
    target_norm: np.ndarray,
    taus: tuple[float, float] = (0.1, 0.9),
    *,
    min_samples: int = MIN_SAMPLES,
) -> tuple[float, float]:
    """Scales (lower, upper) that make each tail of the corridor hold its nominal share."""
    if len(target_norm) < min_samples:
        raise TooFewLapsError(
            f"corridor calibration needs at least {min_samples} held-out laps, got {len(target_norm)}"
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


def calibrate_model(model: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fit the corridor scales of `model` (in place) on held-out samples; returns the report.

    arrays: the model's inputs, pace_ref, pace_target (and pace_forecastable when the dataset has
    it: laps whose next lap is an in-lap or the start of a neutralisation are left out, as in
    training). Grouped models fit one pair of scales per contract.CALIBRATION_GROUPS group; a group
    with fewer than MIN_GROUP_SAMPLES laps takes the pooled pair (and the report says so)."""
    from strategist import contract
    from strategist.model.core import calibration_groups

    cfg = model.model_config
    keep = np.isfinite(arrays["pace_target"]) & np.isfinite(arrays["pace_ref"])
    if "pace_forecastable" in arrays:
        keep &= arrays["pace_forecastable"].astype(bool)
    inputs = {name: arrays[name][keep] for name in cfg.input_names}
    # Fit on the uncalibrated corridor, so calibrating twice gives the same answer.
    model.interval_calibration.scale.fill_(1.0)
    quantiles_norm = predict_normalised_quantiles(model, inputs)
    normalizer = model.normalizer
    delta = arrays["pace_target"][keep] - arrays["pace_ref"][keep]
    target_norm = (delta - float(normalizer.pace_delta_mean)) / float(normalizer.pace_delta_std)
    pooled = fit_interval_scale(quantiles_norm, target_norm)
    report: dict[str, Any] = {"n_laps": int(keep.sum())}
    if cfg.n_calibration_groups == 1:
        scales = torch.tensor(pooled)
        report.update(scale_lower=pooled[0], scale_upper=pooled[1])
    else:
        onehot = calibration_groups(
            torch.from_numpy(inputs[contract.INPUT_TACTICAL]),
            torch.from_numpy(inputs[contract.INPUT_CONTEXT]),
        ).numpy()
        rows = []
        for g, name in enumerate(contract.CALIBRATION_GROUPS):
            member = onehot[:, g] > 0.5
            enough = int(member.sum()) >= MIN_GROUP_SAMPLES
            pair = (
                fit_interval_scale(quantiles_norm[member], target_norm[member], min_samples=MIN_GROUP_SAMPLES)
                if enough
                else pooled
            )
            rows.append(pair)
            report[name] = {
                "scale_lower": pair[0],
                "scale_upper": pair[1],
                "n_laps": int(member.sum()),
                "pooled": not enough,
            }
        scales = torch.tensor(rows)
    report["coverage_before"] = float(
        np.mean((target_norm >= quantiles_norm[:, 0]) & (target_norm <= quantiles_norm[:, 2]))
    )
    model.interval_calibration.scale.copy_(scales.reshape(model.interval_calibration.scale.shape))
    calibrated = predict_normalised_quantiles(model, inputs)
    report["coverage_after"] = float(
        np.mean((target_norm >= calibrated[:, 0]) & (target_norm <= calibrated[:, 2]))
    )
    return report


def calibrate_checkpoint(checkpoint: Path, dataset: Path) -> dict[str, Any]:
    """Fit the corridor scales of `checkpoint` on `dataset` and write them into the checkpoint."""
    from strategist.data.dataset_format import ARRAY_SPECS, load_arrays
    from strategist.model.checkpoint import load_checkpoint, save_checkpoint

    model, cfg, meta = load_checkpoint(checkpoint)
    fields = [*cfg.input_names, "pace_ref", "pace_target"]
    arrays, _ = load_arrays(
        dataset, fields=[*fields, "pace_forecastable"] if "pace_forecastable" in ARRAY_SPECS else fields
    )
    report = {**calibrate_model(model, arrays), "dataset": str(dataset)}
    extra = {**meta.get("extra", {}), "interval_calibration": report}
    save_checkpoint(
        model, cfg, checkpoint, stats=meta.get("stats", {}), metrics=meta.get("metrics"), extra=extra
    )
    log.info("calibrated %s on %s: %s", checkpoint, dataset, report)
    return report
