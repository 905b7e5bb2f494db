"""Plain-PyTorch implementation: the one exported to ONNX / TensorRT."""

from __future__ import annotations

import torch
from torch import nn

from strategist.model.config import ModelConfig
from strategist.model.core import StrategistForwardMixin, add_common_modules
from strategist.model.layers import LapAttentionBlock


class VirtualStrategist(StrategistForwardMixin, nn.Module):
    """Spatio-Temporal Interaction Transformer.

    forward(telemetry [B, 5, 100, 5], tactical [B, 2, 2], context [B, K] when n_context = K > 0)
    -> (pace_quantiles [B, 3] s,
    risk_probs [B, 3], tire_health [B, 1]): the tensor contract, physical units in and out.
    forward_train() returns a StrategistOutput with the logits the loss needs.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.model_config = cfg
        add_common_modules(self, cfg)
        self.lap_blocks = nn.ModuleList([LapAttentionBlock(cfg) for _ in range(cfg.n_layers)])

    def encode_laps(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.lap_blocks:
            tokens = block(tokens)
        return tokens

    def forward(
        self, telemetry: torch.Tensor, tactical: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_train(telemetry, tactical, context).as_tuple()
