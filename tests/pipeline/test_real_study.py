"""The real-race study's pieces: folds by race, the row subsets, scoring, targets and the report."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.eval_data import synthetic_arrays

from strategist import contract
from strategist.evaluate.predictions import Predictions
from strategist.pipeline.real_study import (
    MODEL,
    PERSISTENCE,
    TIMING_GBM,
    check_targets,
    fold_plan,
    markdown,
    per_race,
    restart,
    score,
    tire_checks,
)

RACES = [f"{i:02d}_race" for i in range(13)]


def test_every_race_is_tested_once_and_never_trained_on_in_its_fold():
    folds = fold_plan(RACES, 4, seed=0)
    tested = [r for f in folds for r in f["test"]]
    assert sorted(tested) == RACES
    for f in folds:
        assert not set(f["test"]) & set(f["train"]) and not set(f["val"]) & set(f["test"] + f["train"])
        assert len(f["val"]) == 1 and len(f["train"]) + len(f["test"]) + 1 == len(RACES)
    assert fold_plan(RACES, 4, seed=0) == folds and fold_plan(RACES, 4, seed=1) != folds
    with pytest.raises(ValueError, match="n_folds"):
        fold_plan(RACES[:3], 3, seed=0)


def set_context(data: dict, slot: str, name: str, rows: np.ndarray) -> None:
    data["context"][rows, contract.CONTEXT_FEATURES.index(f"{slot}.{name}")] = 1.0


def test_restart_laps_are_racing_laps_after_a_neutralised_slot():
    data = synthetic_arrays(n_races=1, n_drivers=2, n_laps=12)
    n = len(data["regime"])
    set_context(data, "L-2", "status_sc", np.arange(n) < 4)
    data["regime"][1] = "sc"
    mask = restart(data)
    assert mask[[0, 2, 3]].all() and not mask[1] and not mask[4:].any()


def forecasts(data: dict, noise: float) -> dict[str, Predictions]:
    rng = np.random.default_rng(0)
    target = np.asarray(data["pace_target"], np.float64)
    ref = np.asarray(data["pace_ref"], np.float64)

    def corridor(p50: np.ndarray, half: float) -> np.ndarray:
        return np.stack([p50 - half, p50, p50 + half], 1)

    n = len(target)
    risk = np.tile([0.8, 0.15, 0.05], (n, 1))
    return {
        MODEL: Predictions(corridor(target + rng.normal(0, noise, n), 0.5), risk, np.linspace(1, 0, n)),
        PERSISTENCE: Predictions(corridor(ref, 0.6)),
        TIMING_GBM: Predictions(corridor(target + rng.normal(0, 2 * noise, n), 0.5)),
    }


def test_scores_targets_and_report_name_every_subset_and_race():
    data = synthetic_arrays(n_races=3, n_drivers=3, n_laps=20)
    pred = forecasts(data, noise=0.05)
    scores = score(pred, data)
    assert {"racing", "clean", "traffic", "all"} <= set(scores[MODEL]["pace"])
    assert scores[MODEL]["pace"]["clean"]["mae_p50"] < scores[PERSISTENCE]["pace"]["clean"]["mae_p50"]
    races = per_race(pred, data, "clean")
    assert sorted(races) == ["race_0", "race_1", "race_2"]
    checks = {c["target"]: c for c in check_targets(scores, races)}
    assert checks["clean P50 MAE / persistence, pooled"]["reached"]
    assert checks["racing mean pinball / timing gbm"]["reached"]
    summary = {
        "plan": {"seed": 0},
        "races": sorted(races),
        "folds": [{}, {}],
        "scores": scores,
        "per_race_clean": races,
        "per_race_traffic": per_race(pred, data, "traffic"),
        "tire_checks": {},
        "targets": list(checks.values()),
    }
    report = markdown(summary)
    assert "race_1" in report and "timing gbm" in report and "reached" in report


def test_tire_checks_see_rises_within_a_stint():
    data = synthetic_arrays(n_races=1, n_drivers=1, n_laps=15)
    n = len(data["lap"])
    for name in ("tyre_life", "stint_lap"):
        data["context"][:, contract.CONTEXT_FEATURES.index(f"L.{name}")] = np.arange(n) + 1
    falling = tire_checks(data, np.linspace(1.0, 0.5, n))
    assert falling["rise_share_within_stint"] == 0.0 and falling["spearman_vs_tyre_life"] < -0.99
    rising = tire_checks(data, np.linspace(0.5, 1.0, n) ** 2 * 3)
    assert rising["rise_share_within_stint"] > 0.5
