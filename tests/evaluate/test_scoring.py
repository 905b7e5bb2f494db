"""Target checks and the simulator references."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.eval_data import synthetic_arrays

from strategist.evaluate.scoring import ORACLE, check_targets, oracle_predictions, score_noise_floor


def _pace(pinball_mean: float, mae: float = 0.5, coverage: float = 0.8) -> dict:
    return {"pinball_mean": pinball_mean, "mae_p50": mae, "coverage_p10_p90": coverage}


def test_pinball_gain_is_against_the_best_baseline_only():
    results = {
        "model": {"pace": {"all": _pace(0.18, mae=0.48, coverage=0.79)}},
        "persistence": {"pace": {"all": _pace(0.30)}},
        "gbm": {"pace": {"all": _pace(0.20)}},
        "noise floor": {"pace": {"all": _pace(0.10, mae=0.40)}},
        ORACLE: {"pace": {"all": _pace(0.05)}},  # knows the hidden state: never "the best baseline"
    }
    checks = {c["target"]: c for c in check_targets(results, "model")}
    assert checks["mean pinball gain vs best baseline"]["value"] == pytest.approx(1 - 0.18 / 0.20)
    assert checks["mean pinball gain vs best baseline"]["reached"] is True
    assert checks["P50 MAE / noise-floor MAE"]["value"] == pytest.approx(0.48 / 0.40)
    assert checks["P50 MAE / noise-floor MAE"]["reached"] is False
    assert checks["P10-P90 coverage"]["reached"] is True


def test_oracle_and_floor_exist_only_with_simulator_truth():
    sim = synthetic_arrays(n_races=1, n_drivers=2, n_laps=10)
    oracle = oracle_predictions(sim)
    np.testing.assert_allclose(oracle.pace_quantiles[:, 1], sim["clean_target"])
    assert score_noise_floor(sim)["pace"]["all"]["n"] == len(sim["pace_ref"])
    real = dict(
        sim,
        clean_target=np.full_like(sim["clean_target"], np.nan),
        noise_sigma=np.full_like(sim["noise_sigma"], np.nan),
    )
    assert oracle_predictions(real) is None and score_noise_floor(real) is None
