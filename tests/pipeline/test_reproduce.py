"""`strategist reproduce` end to end at toy size: simulate, build, train, evaluate, card, ship."""

from __future__ import annotations

import json

import pytest

from strategist.model.config import ModelConfig
from strategist.pipeline.reproduce import SHIPPED_FILES, ReproducePlan, reproduce
from strategist.train.config import TrainConfig

TINY_MODEL = ModelConfig(d_model=16, n_layers=1, n_heads=2, n_fusion_heads=2, d_ff=32)


@pytest.fixture(scope="module")
def tiny_reproduce(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    plan = ReproducePlan(
        seed=0,
        circuits=["Synthetic-1", "Synthetic-2"],
        n_test_circuits=1,
        n_train_races=1,
        n_val_races=1,
        n_test_races=1,
        n_cars=3,
        n_laps=6,
        epochs=1,
        gbm_estimators=5,
        train=TrainConfig(progress=False),
        model=TINY_MODEL,
    )
    summary = reproduce(plan, root / "run", ship_to=root / "asset", images_to=root / "img")
    return plan, root, summary


def test_reproduce_ships_a_loadable_checkpoint_with_card(tiny_reproduce):
    from strategist.model.checkpoint import load_checkpoint

    plan, root, summary = tiny_reproduce
    asset = root / "asset"
    assert sorted(p.name for p in asset.iterdir()) == sorted(SHIPPED_FILES)
    model, cfg, meta = load_checkpoint(asset)
    assert cfg.d_model == 16 and meta["stats"]
    card = (asset / "model_card.md").read_text()
    assert plan.command() in card and "--circuits Synthetic-1 Synthetic-2" in card
    assert "--train-arg=--d-model=16" in card and "--train-arg=--no-progress" in card
    assert "| persistence |" in card and "| noise floor |" in card
    assert (root / "img" / "eval_base_corridor.png").is_file()
    assert set(summary["timings"]) >= {"simulate train", "dataset train", "train", "evaluate"}


def test_reproduce_holds_out_circuits_and_races(tiny_reproduce):
    from strategist.data.dataset_format import load_arrays

    _plan, root, _summary = tiny_reproduce
    split = json.loads((root / "asset" / "split.json").read_text())
    assert set(split["train"]).isdisjoint(split["test"])
    races, tracks = {}, {}
    for name in ("train", "val", "test"):
        arrays, _ = load_arrays(root / "run" / "data" / name, fields=["race", "track"])
        races[name], tracks[name] = set(arrays["race"].tolist()), set(arrays["track"].tolist())
    assert races["train"].isdisjoint(races["val"]) and races["train"].isdisjoint(races["test"])
    assert races["val"].isdisjoint(races["test"])
    assert tracks["test"].isdisjoint(tracks["train"] | tracks["val"])


def test_era_transfer_compares_finetuned_scratch_and_base(tiny_reproduce, tmp_path):
    from strategist.pipeline.experiments import FinetunePlan, era_transfer

    _plan, root, _summary = tiny_reproduce
    plan = FinetunePlan(base=root / "asset", epochs=1, train_minutes=1.0, gbm_estimators=5)
    payload = era_transfer(plan, tmp_path / "transfer", n_train_races=1, n_test_races=1, n_cars=3, n_laps=6)
    results = payload["results"]
    assert {"base + fine-tune", "scratch", "base, no fine-tune", "persistence", "gbm"} <= set(results)
    # the scratch arm has the base's architecture, so the comparison is like for like
    from strategist.model.checkpoint import read_model_config

    assert read_model_config(tmp_path / "transfer" / "scratch" / "best").d_model == 16
    tracks = json.loads((tmp_path / "transfer" / "split.json").read_text())
    assert set(tracks["test"]) == set(json.loads((root / "asset" / "split.json").read_text())["test"])


def test_the_packaged_base_checkpoint_holds_exactly_the_shipped_files():
    from strategist.paths import BASE_CHECKPOINT_DIR

    assert sorted(p.name for p in BASE_CHECKPOINT_DIR.iterdir()) == sorted(SHIPPED_FILES)


def test_the_printed_command_rebuilds_the_plan(monkeypatch, tmp_path):
    import shlex

    from strategist.cli import main
    from strategist.pipeline import reproduce as pipeline

    plans = []
    monkeypatch.setattr(
        pipeline,
        "reproduce",
        lambda plan, out, **kw: plans.append(plan) or {"targets": [], "shipped_to": None},
    )
    plan = ReproducePlan(
        seed=3,
        era="2022",
        n_cars=8,
        n_laps=12,
        epochs=2,
        train_minutes=5.0,
        circuits=["Synthetic-1", "Synthetic-2"],
        train=TrainConfig(progress=False, lr=1e-3),
        model=TINY_MODEL,
    )
    argv = shlex.split(plan.command())[1:] + ["--out", str(tmp_path), "--no-ship"]
    assert main(argv) == 0 and main(["reproduce", "--out", str(tmp_path), "--no-ship"]) == 0
    assert plans[0] == plan
    assert plans[1] == ReproducePlan(model=plans[1].model)  # no flags: the plan's defaults
