"""Corridor calibration: scales that give each tail its nominal share, written into the checkpoint."""

import numpy as np
import pytest
import torch
from helpers.tiny import example_inputs, example_stats, tiny_config
from helpers.training_data import write_synthetic_dataset

from strategist.errors import StrategistError
from strategist.model import build_model
from strategist.model.checkpoint import load_checkpoint, save_checkpoint
from strategist.train.calibrate import calibrate_checkpoint, fit_interval_scale


def test_too_narrow_corridor_is_widened_to_nominal_coverage():
    rng = np.random.default_rng(0)
    y = rng.normal(size=20_000)
    # A corridor half as wide as the true 10/90 % quantiles (+-1.2816): scales must come out ~2.
    quantiles = np.tile([-0.6408, 0.0, 0.6408], (len(y), 1))
    lower, upper = fit_interval_scale(quantiles, y)
    assert lower == pytest.approx(2.0, abs=0.06) and upper == pytest.approx(2.0, abs=0.06)
    lo, hi = -lower * 0.6408, upper * 0.6408
    assert np.mean(y < lo) == pytest.approx(0.1, abs=0.005)
    assert np.mean(y > hi) == pytest.approx(0.1, abs=0.005)


def test_too_few_laps_is_refused():
    with pytest.raises(StrategistError, match="at least"):
        fit_interval_scale(np.zeros((10, 3)), np.zeros(10))


def test_calibration_is_stored_applied_and_idempotent(tmp_path):
    cfg = tiny_config()
    model = build_model(cfg)
    model.set_stats(example_stats())
    ckpt = save_checkpoint(model, cfg, tmp_path / "ckpt", stats=example_stats())
    data = write_synthetic_dataset(tmp_path / "val", 400)

    first = calibrate_checkpoint(ckpt, data)
    assert abs(first["coverage_after"] - 0.8) < 0.03
    loaded, _, meta = load_checkpoint(ckpt)
    scale = loaded.interval_calibration.scale
    assert torch.allclose(scale, torch.tensor([first["scale_lower"], first["scale_upper"]]))
    assert meta["extra"]["interval_calibration"]["n_laps"] == first["n_laps"]

    # Quantiles stay ordered and the median does not move.
    telemetry, tactical = example_inputs(8)
    pace, _, _ = loaded(telemetry, tactical)
    pace_uncal, _, _ = model.eval()(telemetry, tactical)
    assert torch.all(pace[:, 0] <= pace[:, 1]) and torch.all(pace[:, 1] <= pace[:, 2])
    assert torch.allclose(pace[:, 1], pace_uncal[:, 1], atol=1e-5)

    second = calibrate_checkpoint(ckpt, data)
    assert second["scale_lower"] == pytest.approx(first["scale_lower"], rel=1e-5)
    assert second["scale_upper"] == pytest.approx(first["scale_upper"], rel=1e-5)
