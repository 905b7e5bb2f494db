"""Each metric against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strategist.evaluate import metrics


def test_pinball_by_hand():
    # y - q = [+2, -1]: tau 0.1 -> (0.1*2 + 0.9*1)/2 = 0.55; tau 0.9 -> (0.9*2 + 0.1*1)/2 = 0.95
    y, q = np.array([3.0, 1.0]), np.array([1.0, 2.0])
    assert metrics.pinball(y, q, 0.1) == pytest.approx(0.55)
    assert metrics.pinball(y, q, 0.9) == pytest.approx(0.95)
    assert metrics.pinball(y, q, 0.5) == pytest.approx(0.75)  # half the MAE


def test_pace_metrics_coverage_width_crossings():
    y = np.array([0.0, 1.0, 5.0, 2.0])
    q = np.array(
        [
            [-1.0, 0.0, 1.0],  # covered, width 2
            [0.0, 0.5, 2.0],  # covered, width 2
            [0.0, 1.0, 2.0],  # above P90, width 2
            [3.0, 2.0, 4.0],  # crossed (P10 > P50), below P10, width 1
        ]
    )
    m = metrics.pace_metrics(y, q)
    assert m["n"] == 4
    assert m["coverage_p10_p90"] == pytest.approx(0.5)
    assert m["above_p90"] == pytest.approx(0.25)
    assert m["below_p10"] == pytest.approx(0.25)
    assert m["width_p10_p90"] == pytest.approx(7.0 / 4)
    assert m["crossing_rate"] == pytest.approx(0.25)
    assert m["mae_p50"] == pytest.approx((0 + 0.5 + 4 + 0) / 4)
    # P50 pinball is MAE / 2; the mean is the average of the three taus.
    assert m["pinball_p50"] == pytest.approx(m["mae_p50"] / 2)
    assert m["pinball_mean"] == pytest.approx((m["pinball_p10"] + m["pinball_p50"] + m["pinball_p90"]) / 3)


def test_pace_metrics_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"pace quantiles must be \[n, 3\]"):
        metrics.pace_metrics(np.zeros(4), np.zeros((4, 2)))


def test_gaussian_floor_values():
    floor = metrics.gaussian_floor(np.array([0.5, 1.5]))  # mean sigma 1
    assert floor["mae_p50"] == pytest.approx(math.sqrt(2 / math.pi))
    assert floor["pinball_p50"] == pytest.approx(0.398942, abs=1e-5)
    assert floor["pinball_p10"] == pytest.approx(0.175498, abs=1e-5)
    assert floor["pinball_mean"] == pytest.approx(0.25, abs=1e-3)
    with pytest.raises(ValueError, match="noise_sigma"):
        metrics.gaussian_floor(np.array([np.nan]))


def test_roc_auc_by_hand():
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts half
    assert metrics.roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(metrics.roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_pr_auc_by_hand():
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 0.5*1 + 0.5*(2/3)
    labels = np.array([1, 0, 1])
    assert metrics.pr_auc(labels, np.array([0.9, 0.8, 0.7])) == pytest.approx(0.5 + 1 / 3)


def test_ece_by_hand():
    # bin [0.2,0.3): two laps predicted 0.2, one bad -> |0.5-0.2| = 0.3; bin [0.8,0.9): two laps 0.8, both bad -> 0.2
    labels = np.array([1, 0, 1, 1])
    probs = np.array([0.2, 0.2, 0.8, 0.8])
    assert metrics.expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(
        0.5 * 0.3 + 0.5 * 0.2
    )
    bins = metrics.reliability_bins(labels, probs, n_bins=10)
    assert bins["count"][2] == 2 and bins["count"][8] == 2
    assert metrics.expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(0.0)


def test_risk_metrics_brier_skill_and_per_class_auc():
    risk = np.array([0, 0, 0, 1, 2])
    # p_bad = 1 - p_none = [0, 0.5, 0.2, 1, 0.6]
    probs = np.array(
        [[1.0, 0.0, 0.0], [0.5, 0.25, 0.25], [0.8, 0.1, 0.1], [0.0, 0.9, 0.1], [0.4, 0.2, 0.4]],
    )
    m = metrics.risk_metrics(risk, probs)
    bad = np.array([0, 0, 0, 1, 1.0])
    p_bad = np.array([0, 0.5, 0.2, 1, 0.6])
    brier = np.mean((p_bad - bad) ** 2)
    assert m["base_rate"] == pytest.approx(0.4)
    assert m["brier"] == pytest.approx(brier)
    assert m["brier_skill"] == pytest.approx(1 - brier / (0.4 * 0.6))
    assert m["roc_auc"] == pytest.approx(1.0)
    expected_log_loss = -np.mean(np.log([1.0, 0.5, 0.8, 0.9, 0.4]))
    assert m["log_loss"] == pytest.approx(expected_log_loss, rel=1e-6)
    # overtaken one-vs-rest: positive 0.4 vs negatives [0, .25, .1, .1] -> 1.0
    assert m["roc_auc_overtaken"] == pytest.approx(1.0)
    # constant forecast at the base rate has zero skill
    flat = np.tile([0.6, 0.2, 0.2], (5, 1))
    assert metrics.risk_metrics(risk, flat)["brier_skill"] == pytest.approx(0.0, abs=1e-12)


def test_risk_metrics_rejects_bad_labels():
    with pytest.raises(ValueError, match="risk labels"):
        metrics.risk_metrics(np.array([0, 3]), np.full((2, 3), 1 / 3))


def test_tire_metrics_skips_unknown_truth():
    m = metrics.tire_metrics(np.array([1.0, 0.5, np.nan]), np.array([0.9, 0.8, 0.1]))
    assert m["n"] == 2
    assert m["mae"] == pytest.approx(0.2)
    assert m["rmse"] == pytest.approx(math.sqrt((0.01 + 0.09) / 2))
