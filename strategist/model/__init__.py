"""The Spatio-Temporal Interaction Transformer: ModelConfig, build_model and the two implementations.

from strategist.model import ModelConfig, build_model
model = build_model(ModelConfig())          # plain PyTorch; ModelConfig(impl="hf") for transformers
pace_q, risk_p, tire = model(telemetry, tactical)
"""

from __future__ import annotations

from torch import nn

from strategist.model.config import ModelConfig
from strategist.model.core import StrategistOutput
from strategist.model.torch_model import VirtualStrategist

__all__ = ["ModelConfig", "StrategistOutput", "VirtualStrategist", "build_model", "count_parameters"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model for `cfg` (training mode; normalisation buffers at 0 / 1)."""
    cfg.validate()
    if cfg.impl == "hf":
        from strategist.model.hf_model import VirtualStrategistConfig, VirtualStrategistModel

        return VirtualStrategistModel(VirtualStrategistConfig.from_model_config(cfg))
    return VirtualStrategist(cfg)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
