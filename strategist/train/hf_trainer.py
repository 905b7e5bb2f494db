"""Training the Hugging Face implementation with transformers' `Trainer`.

The model's forward keeps the exported tuple contract, so the joint loss is computed here from
forward_train. Batches are the dicts StrategistDataset yields per sample, stacked by the default
collator; keep `remove_unused_columns=False` (the targets are not forward() arguments).

    args = TrainingArguments(output_dir=..., remove_unused_columns=False, report_to=[], ...)
    StrategistTrainer(model=VirtualStrategistModel(cfg), args=args, train_dataset=dataset).train()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer

from strategist.train.config import LOSS_WEIGHTS
from strategist.train.loss import joint_loss


class StrategistTrainer(Trainer):
    """transformers.Trainer with the joint loss (pinball + cross-entropy + tire MSE)."""

    def __init__(
        self, *args: Any, loss_weights: tuple[float, float, float] = LOSS_WEIGHTS, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_weights = loss_weights

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        core: Any = model.module if hasattr(model, "module") else model  # DataParallel on multi-GPU hosts
        out = core.forward_train(*(inputs[name] for name in core.model_config.input_names))
        terms = joint_loss(out, inputs, core.normalizer, core.model_config.quantiles, self.loss_weights)
        return (terms.total, out.as_tuple()) if return_outputs else terms.total
