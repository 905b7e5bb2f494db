"""The pace-head ablation: every variant runs end to end on a tiny dataset, the calibration is
cross-fitted, and the results files carry the command and the machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from helpers.eval_data import synthetic_arrays, write_dataset
from helpers.tiny import example_stats, tiny_config

from strategist import contract
from strategist.model import build_model
from strategist.model.checkpoint import save_checkpoint
from strategist.pipeline import pace_ablation
from strategist.pipeline.pace_ablation import (
    PERSISTENCE,
    SHIPPED,
    TIMING_GBM,
    VARIANTS,
    Variant,
    calibrated_name,
    cross_fitted_calibration,
    training_races,
)


def tiny_base(folder: Path) -> Path:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg)
    model.set_stats(example_stats())
    return save_checkpoint(model.eval(), cfg, folder, stats=example_stats())


def test_every_variant_and_the_calibrated_row_are_scored_and_written(tmp_path: Path) -> None:
    data = write_dataset(synthetic_arrays(n_races=4, n_drivers=3, n_laps=30), tmp_path / "data")
    summary = pace_ablation.run_ablation(
        data, tmp_path / "out", base=tiny_base(tmp_path / "base"), n_folds=2, epochs=1,
        results=tmp_path / "results", command="python -m strategist.pipeline.pace_ablation ...",
    )  # fmt: skip
    names = [PERSISTENCE, TIMING_GBM, *(v.name for v in VARIANTS), calibrated_name(SHIPPED)]
    assert list(summary["table"]) == names
    for row in summary["table"].values():
        for subset in ("clean", "traffic", "racing"):
            assert np.isfinite(row[f"{subset}_mae"]) and 0.0 <= row[f"{subset}_coverage"] <= 1.0
    few = [f["training_races_of_variants"]["3 training races per fold"] for f in summary["folds"]]
    assert all(len(races) <= 3 for races in few)
    written = json.loads((tmp_path / "results" / "pace_ablation.json").read_text())
    assert written["command"].startswith("python -m strategist.pipeline.pace_ablation")
    assert written["machine"]["nproc"] >= 1 and written["seconds"] > 0
    table = (tmp_path / "results" / "pace_ablation.md").read_text()
    assert "clean P10-P90 coverage" in table and calibrated_name(SHIPPED) in table
    assert (tmp_path / "out" / "ablation.md").read_text() == table


def test_few_races_are_a_seeded_subset_of_the_folds_training_races() -> None:
    fold = {"test": ["a"], "val": ["b"], "train": ["c", "d", "e", "f"]}
    few = Variant("few", train_races=3)
    chosen = training_races(few, fold, seed=0, k=1)
    assert len(chosen) == 3 and set(chosen) <= {"b", "c", "d", "e", "f"}
    assert training_races(few, fold, seed=0, k=1) == chosen
    assert training_races(SHIPPED, fold, seed=0, k=1) == ["b", "c", "d", "e", "f"]


def test_a_folds_calibration_never_sees_its_own_rows() -> None:
    rng = np.random.default_rng(0)
    n = 900
    y = rng.normal(0.0, 1.0, n)
    quantiles = np.stack([np.full(n, -0.5), np.zeros(n), np.full(n, 0.5)], 1)  # too narrow
    fold_of = np.arange(n) % 3
    group = rng.integers(0, len(contract.CALIBRATION_GROUPS), n)
    calibrated, scales = cross_fitted_calibration(quantiles, y, group, fold_of)
    inside = (y >= calibrated[:, 0]) & (y <= calibrated[:, 2])
    assert len(scales) == 3 and 0.7 < inside.mean() < 0.9  # widened towards 0.80
    moved = y.copy()
    moved[fold_of == 0] *= 5.0  # fold 0's own targets: its corridor must not change
    again, _ = cross_fitted_calibration(quantiles, moved, group, fold_of)
    assert np.array_equal(again[fold_of == 0], calibrated[fold_of == 0])
    assert not np.array_equal(again[fold_of == 1], calibrated[fold_of == 1])
