"""Hugging Face implementation: the same model as a transformers PreTrainedModel.

The lap transformer is a stock `BertEncoder` (post-LayerNorm BERT layers, no token embeddings);
stem, tactical fusion, heads and normalisation are the shared modules of strategist.model.core,
so the two implementations differ only in the lap transformer's parameter names. The mapping
between them is strategist.model.weight_mapping.

    cfg = VirtualStrategistConfig(d_model=256, ...)      # every ModelConfig field, same defaults
    model = VirtualStrategistModel(cfg)
    model.save_pretrained(folder); VirtualStrategistModel.from_pretrained(folder)
    pace_q, risk_p, tire = model(telemetry, tactical)    # the same tuple contract as the torch model

Training with transformers' Trainer goes through strategist.train.hf_trainer.StrategistTrainer,
which computes the joint loss from forward_train (forward keeps the exported tuple contract).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, PretrainedConfig, PreTrainedModel
from transformers.models.bert.modeling_bert import BertEncoder

from strategist.model.config import MODEL_TYPE, ModelConfig
from strategist.model.core import StrategistForwardMixin, add_common_modules, zero_pace_heads
from strategist.model.layers import InputNormalizer, TacticalEmbedding

_FIELDS = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "impl"]
_DEFAULTS = ModelConfig()


class VirtualStrategistConfig(PretrainedConfig):
    """transformers config carrying every ModelConfig field (same names, same defaults).

    Args: see strategist.model.config.ModelConfig; `initializer_range` (0.02) is the std of the
    normal init transformers applies to Linear/Conv weights in post_init().
    """

    model_type = MODEL_TYPE

    def __init__(self, initializer_range: float = 0.02, **kwargs: Any) -> None:
        for name in _FIELDS:
            value = kwargs.pop(name, getattr(_DEFAULTS, name))
            setattr(self, name, list(value) if isinstance(value, tuple) else value)
        kwargs.pop("impl", None)  # always "hf" for this class
        self.impl = "hf"
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, cfg: ModelConfig) -> VirtualStrategistConfig:
        return cls(**{name: getattr(cfg, name) for name in _FIELDS})

    def to_model_config(self) -> ModelConfig:
        return ModelConfig(impl="hf", **{name: getattr(self, name) for name in _FIELDS})


def bert_config(cfg: ModelConfig) -> BertConfig:
    """The BertConfig of the lap transformer: same widths, dropout and LayerNorm epsilon as the torch
    LapAttentionBlock; exact GELU; eager attention (plain matmul + softmax, like the torch block)."""
    config = BertConfig(
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        intermediate_size=cfg.d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        layer_norm_eps=cfg.layer_norm_eps,
    )
    config._attn_implementation = "eager"
    return config


class VirtualStrategistModel(StrategistForwardMixin, PreTrainedModel):
    """Spatio-Temporal Interaction Transformer with a BertEncoder lap transformer."""

    config_class = VirtualStrategistConfig
    base_model_prefix = "strategist"
    main_input_name = "telemetry"

    def __init__(self, config: VirtualStrategistConfig) -> None:
        super().__init__(config)
        self.model_config = config.to_model_config()
        add_common_modules(self, self.model_config)
        self.encoder = BertEncoder(bert_config(self.model_config))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # Parameters and buffers the generic init does not know about.
        if module is self:
            nn.init.normal_(self.lap_pos_embedding, std=0.02)
            if self.model_config.n_context:  # start from persistence, as the plain implementation does
                zero_pace_heads(self)
        elif isinstance(module, TacticalEmbedding):
            nn.init.normal_(module.row_embedding, std=0.02)
        elif isinstance(module, InputNormalizer):
            for name, buffer in module.named_buffers():
                nn.init.ones_(buffer) if name.endswith("_std") else nn.init.zeros_(buffer)

    def encode_laps(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens).last_hidden_state

    def forward(
        self, telemetry: torch.Tensor, tactical: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_train(telemetry, tactical, context).as_tuple()
