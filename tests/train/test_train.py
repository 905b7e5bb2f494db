"""Training: loss, dataset reader, learning, best/last checkpoints, freeze-stem, resume, time limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tiny import TINY_OVERRIDES as TINY
from helpers.training_data import write_synthetic_dataset

from strategist.errors import DataError, StrategistError
from strategist.model import ModelConfig, build_model
from strategist.model.checkpoint import load_checkpoint
from strategist.model.core import StrategistOutput
from strategist.train.data import load_dataset
from strategist.train.distributed import DistInfo
from strategist.train.loop import TrainConfig, evaluate, freeze_stem, train
from strategist.train.loss import joint_loss, pinball_loss

FAST = dict(batch_size=64, progress=False, seed=0, warmup_frac=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_pinball_loss_values():
    q = torch.tensor([0.1, 0.5, 0.9])
    pred = torch.tensor([[0.0, 0.0, 0.0]])
    # y above every quantile by 1: tau * 1 each -> mean(0.1, 0.5, 0.9) = 0.5
    torch.testing.assert_close(pinball_loss(pred, torch.tensor([1.0]), q), torch.tensor([0.5]))
    # y below by 1: (1 - tau) each -> mean(0.9, 0.5, 0.1) = 0.5; below by 2 on the P10 alone
    torch.testing.assert_close(
        pinball_loss(torch.tensor([[1.0, -1.0, -1.0]]), torch.tensor([-1.0]), q), torch.tensor([0.9 * 2 / 3])
    )


def test_joint_loss_leaves_missing_targets_out():
    model = build_model(ModelConfig(**TINY))
    out = StrategistOutput(
        pace_quantiles=torch.zeros(3, 3),
        pace_quantiles_norm=torch.tensor([[-1.0, 0.0, 1.0]] * 3),
        risk_logits=torch.zeros(3, 3),
        risk_probs=torch.full((3, 3), 1 / 3),
        tire_health=torch.full((3, 1), 0.5),
    )
    batch = {
        "pace_delta": torch.tensor([0.0, float("nan"), 0.0]),
        "risk": torch.tensor([0, -1, -1]),
        "tire_health": torch.tensor([float("nan"), float("nan"), 1.0]),
    }
    terms = joint_loss(out, batch, model.normalizer, (0.1, 0.5, 0.9), (1.0, 0.5, 2.0))
    assert (terms.n_pace, terms.n_risk, terms.n_tire) == (2, 1, 1)
    # target 0 in normalised units (mean 0, std 1): rho = (0.1 * 1 + 0 + 0.1 * 1) / 3 per sample
    torch.testing.assert_close(terms.pinball, torch.tensor(0.2 / 3))
    torch.testing.assert_close(terms.ce, torch.log(torch.tensor(3.0)))
    torch.testing.assert_close(terms.mse, torch.tensor(0.25))
    torch.testing.assert_close(terms.total, terms.pinball + 0.5 * terms.ce + 2.0 * terms.mse)


def test_dataset_reader_checks_and_counts(tmp_path):
    folder = write_synthetic_dataset(tmp_path / "d", 20, n_shards=2)
    ds = load_dataset(folder)
    assert len(ds) == 20 and ds[torch.arange(4)]["telemetry"].shape == (4, 5, 100, 5)

    shard = dict(np.load(folder / "shard-00001.npz"))
    shard["tire_health"][0] = np.nan
    shard["risk"][1] = -1
    np.savez(folder / "shard-00001.npz", **shard)
    assert load_dataset(folder).missing.as_dict() == {
        "pace": 0,
        "pace_unforecastable": 0,
        "risk": 1,
        "tire": 1,
    }

    shard["telemetry"][3, 0, 10, 0] = np.nan
    np.savez(folder / "shard-00001.npz", **shard)
    with pytest.raises(DataError, match=r"shard-00001.npz, driver D13, lap 15, field telemetry"):
        load_dataset(folder)

    shard["telemetry"] = shard["telemetry"][:, :4]
    np.savez(folder / "shard-00001.npz", **shard)
    with pytest.raises(DataError, match=r"field telemetry: shape \(10, 4, 100, 5\)"):
        load_dataset(folder)
    with pytest.raises(DataError, match="no manifest.json"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("impl", ["torch", "hf"])
def test_training_reduces_loss_and_keeps_best_and_last(datasets, tmp_path, impl):
    train_dir, val_dir = datasets
    run = tmp_path / "run"
    cfg, tcfg = ModelConfig(impl=impl, **TINY), TrainConfig(epochs=4, lr=3e-3, **FAST)
    torch.manual_seed(tcfg.seed)  # the same initial weights train() will build
    untrained = build_model(cfg)
    untrained.set_stats(load_dataset(train_dir).stats)
    initial = evaluate(untrained, load_dataset(val_dir), DistInfo(0, 1, 0, torch.device("cpu")), tcfg)

    summary = train(train_dir, val_dir, run, cfg, tcfg)
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["val_total"] < 0.7 * initial["total"]
    assert metrics[-1]["val_total"] < metrics[0]["val_total"]
    for key in (
        "train_pinball",
        "train_ce",
        "train_mse",
        "val_pinball",
        "val_ce",
        "val_mse",
        "val_pace_mae_s",
    ):
        assert np.isfinite(metrics[-1][key]), key
    assert summary["best_val_total"] == min(m["val_total"] for m in metrics)
    best, cfg, meta = load_checkpoint(run / "best")
    assert cfg.impl == impl and meta["metrics"]["val_total"] == summary["best_val_total"]
    assert meta["stats"]["pace_delta_std"] == pytest.approx(load_dataset(train_dir).stats["pace_delta_std"])
    assert (run / "last" / "training_state.pt").is_file()


def test_freeze_stem_freezes_only_the_stem():
    model = build_model(ModelConfig(**TINY))
    freeze_stem(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("stem.") for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("stem."))


def test_fine_tune_from_checkpoint_keeps_stem(datasets, tmp_path):
    train_dir, val_dir = datasets
    base_run, ft_run = tmp_path / "base", tmp_path / "ft"
    train(train_dir, val_dir, base_run, ModelConfig(**TINY), TrainConfig(epochs=1, **FAST))
    base, _, _ = load_checkpoint(base_run / "last")
    train(
        train_dir,
        val_dir,
        ft_run,
        ModelConfig(**TINY),
        TrainConfig(epochs=1, lr=1e-3, init_from=str(base_run / "last"), freeze_stem=True, **FAST),
    )
    tuned, _, meta = load_checkpoint(ft_run / "last")
    assert meta["extra"]["freeze_stem"] is True
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    for key in base_state:
        same = torch.equal(base_state[key], tuned_state[key])
        if key.startswith("stem.") or key.startswith("normalizer."):
            assert same, f"{key} changed although frozen"
    assert not torch.equal(base_state["pace_head.out.weight"], tuned_state["pace_head.out.weight"])


def test_resume_continues_where_it_stopped(datasets, tmp_path):
    train_dir, val_dir = datasets
    run = tmp_path / "run"
    first = train(train_dir, val_dir, run, ModelConfig(**TINY), TrainConfig(epochs=2, **FAST))
    state = torch.load(run / "last" / "training_state.pt", weights_only=False)
    assert state["epoch"] == 1 and state["step"] == first["steps"]
    second = train(train_dir, val_dir, run, ModelConfig(**TINY), TrainConfig(epochs=3, resume=True, **FAST))
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert second["steps"] == first["steps"] * 3 // 2
    # The optimizer state came back: Adam's step counters continue from the first run's.
    resumed = torch.load(run / "last" / "training_state.pt", weights_only=False)
    adam_steps = {float(s["step"]) for s in resumed["optimizer"]["state"].values()}
    assert adam_steps == {float(second["steps"])}


@pytest.mark.parametrize("death", ["before_metrics_line", "between_renames", "after_next_epoch_line"])
def test_resume_after_a_death_while_saving(datasets, tmp_path, death):
    """A worker killed at any point of the save leaves a resumable run whose metrics.jsonl ends at
    the snapshot: the line lost before the append is restored, a line past the snapshot is dropped."""
    train_dir, val_dir = datasets
    run = tmp_path / "run"
    train(train_dir, val_dir, run, ModelConfig(**TINY), TrainConfig(epochs=2, **FAST))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    if death == "before_metrics_line":  # epoch 2 snapshotted, its line not yet written
        (run / "metrics.jsonl").write_text(lines[0] + "\n")
    elif death == "between_renames":  # last/ moved aside, last.partial/ not yet renamed
        (run / "last").rename(run / "last.previous")
    else:  # a line for an epoch 3 whose snapshot never landed
        extra = {**json.loads(lines[1]), "epoch": 3}
        (run / "metrics.jsonl").write_text("\n".join([*lines, json.dumps(extra)]) + "\n")
    train(train_dir, val_dir, run, ModelConfig(**TINY), TrainConfig(epochs=3, resume=True, **FAST))
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert json.loads(lines[1])["val_total"] == metrics[1]["val_total"]
    assert load_checkpoint(run / "last")[2]["extra"]["epoch"] == 3
    assert not (run / "last.previous").exists() and not (run / "last.partial").exists()


def test_resume_without_checkpoint_fails_clearly(datasets, tmp_path):
    with pytest.raises(StrategistError, match="no checkpoint to resume"):
        train(*datasets, tmp_path / "empty", ModelConfig(**TINY), TrainConfig(epochs=1, resume=True, **FAST))


def test_max_minutes_stops_and_checkpoints(datasets, tmp_path):
    summary = train(
        *datasets, tmp_path / "run", ModelConfig(**TINY), TrainConfig(epochs=5, max_minutes=0.0, **FAST)
    )
    assert summary["stopped_early"] and summary["epochs_completed"] == 1 and summary["steps"] == 1
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_new_run_refuses_a_used_run_folder(datasets, tmp_path):
    train(
        *datasets, tmp_path / "run", ModelConfig(**TINY), TrainConfig(epochs=1, max_steps_per_epoch=1, **FAST)
    )
    with pytest.raises(StrategistError, match="already holds a run"):
        train(*datasets, tmp_path / "run", ModelConfig(**TINY), TrainConfig(epochs=1, **FAST))


def test_fine_tune_can_switch_implementation(datasets, tmp_path):
    """A torch checkpoint fine-tuned as the HF implementation (weights converted by the mapping)."""
    base_run = tmp_path / "base"
    train(*datasets, base_run, ModelConfig(**TINY), TrainConfig(epochs=1, max_steps_per_epoch=1, **FAST))
    ft_run = tmp_path / "ft"
    train(
        *datasets,
        ft_run,
        ModelConfig(impl="hf", **TINY),
        TrainConfig(
            epochs=1, max_steps_per_epoch=1, init_from=str(base_run / "last"), freeze_stem=True, **FAST
        ),
    )
    base, _, _ = load_checkpoint(base_run / "last")
    tuned, cfg, _ = load_checkpoint(ft_run / "last")
    assert cfg.impl == "hf"
    torch.testing.assert_close(tuned.stem.proj.weight, base.stem.proj.weight, rtol=0, atol=0)


def test_cli_refuses_architecture_options_with_init_from(datasets, tmp_path, capsys):
    from strategist.cli import main

    train_dir, val_dir = datasets
    argv = [
        "train",
        "--train",
        str(train_dir),
        "--val",
        str(val_dir),
        "--out",
        str(tmp_path / "run"),
        "--init-from",
        str(tmp_path),
        "--d-model",
        "64",
    ]
    assert main(argv) == 1
    assert (
        "architecture options ['d_model'] cannot change a model loaded with --init-from"
        in capsys.readouterr().err
    )


def test_cli_trains_tiny_model(datasets, tmp_path, capsys):
    from strategist.cli import main

    train_dir, val_dir = datasets
    run = tmp_path / "run"
    argv = [
        "train",
        "--train",
        str(train_dir),
        "--val",
        str(val_dir),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--no-progress",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
        "--n-fusion-heads",
        "2",
        "--d-ff",
        "32",
        "--head-hidden",
        "8",
        "--stem-channels",
        "4",
        "4",
        "4",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    _, cfg, _ = load_checkpoint(run / "last")
    assert (cfg.d_model, cfg.n_layers, cfg.stem_channels) == (16, 1, (4, 4, 4))
