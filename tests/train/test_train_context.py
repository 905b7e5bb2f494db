"""Training with the timing context: a context model learns, a two-input checkpoint gains the context
(trunk weights kept, fresh encoder and pace heads), unforecastable targets stay out of the pace loss,
and the heads' learning-rate scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny import TINY_CONTEXT, TINY_OVERRIDES
from helpers.training_data import make_synthetic_arrays

from strategist import contract
from strategist.data.dataset_format import write_dataset
from strategist.model import ModelConfig
from strategist.model.checkpoint import load_checkpoint
from strategist.train.config import TrainConfig
from strategist.train.data import load_dataset
from strategist.train.loop import HEAD_PREFIXES, make_optimizer, train

FAST = dict(batch_size=64, progress=False, seed=0, warmup_frac=0.0)
CONTEXT_MODEL = ModelConfig(**{**TINY_OVERRIDES, **TINY_CONTEXT})

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_context_model_learns(datasets, tmp_path):
    train_dir, val_dir = datasets
    train(train_dir, val_dir, tmp_path / "run", CONTEXT_MODEL, TrainConfig(epochs=3, lr=3e-3, **FAST))
    import json

    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["val_pinball"] < metrics[0]["val_pinball"]
    model, cfg, meta = load_checkpoint(tmp_path / "run" / "best")
    assert cfg.n_context == contract.N_CONTEXT and len(meta["stats"]["context_mean"]) == contract.N_CONTEXT


def test_a_two_input_checkpoint_gains_the_context(datasets, tmp_path):
    train_dir, val_dir = datasets
    base = tmp_path / "base"
    train(train_dir, val_dir, base, ModelConfig(**TINY_OVERRIDES), TrainConfig(epochs=1, **FAST))
    tcfg = TrainConfig(epochs=1, lr=1e-3, init_from=str(base / "last"), head_lr_scale=10.0, **FAST)
    train(train_dir, val_dir, tmp_path / "ft", CONTEXT_MODEL, tcfg)
    source, _, source_meta = load_checkpoint(base / "last")
    tuned, cfg, meta = load_checkpoint(tmp_path / "ft" / "last")
    assert cfg.n_context == contract.N_CONTEXT and cfg.split_pace_head and cfg.d_model == 32
    assert hasattr(tuned, "context_encoder") and hasattr(tuned, "pace_head_special")
    # telemetry statistics stay the pre-trained ones; the context's come from the training data
    assert meta["stats"]["telemetry_mean"] == pytest.approx(source_meta["stats"]["telemetry_mean"])
    assert meta["stats"]["context_mean"] == pytest.approx(load_dataset(train_dir).stats["context_mean"])
    # the trunk started from the checkpoint: one epoch at a small learning rate moves it only a little
    a, b = source.state_dict()["stem.proj.weight"], tuned.state_dict()["stem.proj.weight"]
    assert torch.allclose(a, b, atol=0.05) and not torch.equal(a, b)


def test_unforecastable_targets_stay_out_of_the_pace_loss(tmp_path):
    arrays = make_synthetic_arrays(64, seed=3)
    arrays["pace_forecastable"][:10] = False
    write_dataset(tmp_path / "d", arrays, n_shards=1)
    data = load_dataset(tmp_path / "d")
    assert data.missing.pace_unforecastable == 10 and data.missing.pace == 10
    assert torch.isnan(data.pace_delta[:10]).all() and torch.isfinite(data.pace_delta[10:]).all()


def test_heads_learn_faster_by_the_scale():
    from strategist.model import build_model

    model = build_model(CONTEXT_MODEL)
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.01, head_lr_scale=10.0)
    assert len(optimizer.param_groups) == 4
    by_param = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 1e-3 if name.startswith(HEAD_PREFIXES) else 1e-4
        assert by_param[id(p)] == pytest.approx(expected), name
    assert np.isclose(sum(len(g["params"]) for g in optimizer.param_groups), len(list(model.parameters())))
