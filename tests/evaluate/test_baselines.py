"""Baselines on a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.eval_data import synthetic_arrays

from strategist.evaluate import baselines, metrics


@pytest.fixture(scope="module")
def train():
    return synthetic_arrays(n_races=3, seed=0)


@pytest.fixture(scope="module")
def test_set():
    return synthetic_arrays(n_races=1, seed=1)


def test_persistence_reproduces_last_lap(train, test_set):
    pred = baselines.Persistence().fit(train).predict(test_set)
    np.testing.assert_array_equal(pred.pace_quantiles[:, 1], test_set["pace_ref"].astype(np.float64))
    residual = train["pace_target"].astype(np.float64) - train["pace_ref"]
    lo, hi = np.quantile(residual, [0.1, 0.9])
    np.testing.assert_allclose(pred.pace_quantiles[:, 0] - test_set["pace_ref"], lo, atol=1e-5)
    np.testing.assert_allclose(pred.pace_quantiles[:, 2] - test_set["pace_ref"], hi, atol=1e-5)


def test_stint_trend_extrapolates_a_straight_line():
    laps = np.array([[np.nan, np.nan, 90.0, 90.1, 90.2, 90.3], [np.nan] * 5 + [91.0], [np.nan] * 6])
    point = baselines.stint_trend_point(laps)
    assert point[0] == pytest.approx(90.4)
    assert point[1] == pytest.approx(91.0)  # one lap: the lap itself
    assert np.isnan(point[2])


def test_stint_trend_band_uses_training_residual_sd(train, test_set):
    model = baselines.StintTrend().fit(train)
    pred = model.predict(test_set)
    width = pred.pace_quantiles[:, 2] - pred.pace_quantiles[:, 0]
    np.testing.assert_allclose(width, 2 * 1.2815515655446004 * model.sigma)
    # tire health is a line in tire age, and the synthetic truth is exactly such a line
    np.testing.assert_allclose(pred.tire_health, test_set["tire_health"], atol=1e-4)


def test_climatology_is_training_class_frequency(train, test_set):
    pred = baselines.Climatology().fit(train).predict(test_set)
    expected = np.bincount(train["risk"], minlength=3) / len(train["risk"])
    np.testing.assert_allclose(pred.risk_probs, np.tile(expected, (len(test_set["risk"]), 1)))


def test_gbm_fits_and_beats_persistence_on_trend(train, test_set):
    gbm = baselines.GradientBoosting(n_estimators=40).fit(train)
    pred = gbm.predict(test_set)
    assert pred.pace_quantiles.shape == (len(test_set["pace_ref"]), 3)
    np.testing.assert_allclose(pred.risk_probs.sum(axis=1), 1.0, atol=1e-6)
    assert pred.tire_health.min() >= 0.0 and pred.tire_health.max() <= 1.0
    persistence = baselines.Persistence().fit(train).predict(test_set)
    y = test_set["pace_target"]
    assert (
        metrics.pace_metrics(y, pred.pace_quantiles)["pinball_mean"]
        < metrics.pace_metrics(y, persistence.pace_quantiles)["pinball_mean"]
    )


def test_baseline_names_missing_arrays(train):
    partial = {k: v for k, v in train.items() if k != "stint_fc_laps"}
    with pytest.raises(ValueError, match="stint_fc_laps"):
        baselines.StintTrend().fit(partial)
