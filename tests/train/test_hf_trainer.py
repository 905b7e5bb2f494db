"""The Hugging Face implementation trains with transformers' Trainer."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny import TINY_OVERRIDES as TINY
from helpers.training_data import write_synthetic_dataset
from transformers import TrainingArguments

from strategist.model import ModelConfig, build_model
from strategist.train.data import load_dataset
from strategist.train.hf_trainer import StrategistTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_hf_trainer_runs_steps_with_joint_loss(tmp_path):
    dataset = load_dataset(write_synthetic_dataset(tmp_path / "train", 48, seed=0))
    model = build_model(ModelConfig(impl="hf", **TINY))
    model.set_stats(dataset.stats)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-run"),
        max_steps=3,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        disable_tqdm=True,
    )
    result = StrategistTrainer(model=model, args=args, train_dataset=dataset).train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    after = model.state_dict()
    assert not torch.equal(before["pace_head.out.weight"], after["pace_head.out.weight"])
    assert not torch.equal(
        before["encoder.layer.0.attention.self.query.weight"],
        after["encoder.layer.0.attention.self.query.weight"],
    )
    torch.testing.assert_close(
        before["normalizer.telemetry_std"], after["normalizer.telemetry_std"]
    )  # buffers untouched
