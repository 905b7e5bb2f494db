"""The forward pass shared by both implementations (plain PyTorch and Hugging Face).

Both models own the same submodules under the same names (see `add_common_modules`) and differ only
in how the lap tokens are encoded (`encode_laps`: a stack of LapAttentionBlock, or a BertEncoder).

    telemetry [B, N, S, C] --normalise--> CNNStem per lap --> [B, N, D] + lap slot embedding, LayerNorm
        --> lap transformer (self-attention over the N laps) --> [B, N, D]
    tactical  [B, T, 2]    --normalise--> TacticalEmbedding --> [B, T, D]
        --> TacticalFusionBlock (queries: lap tokens, keys/values: tactical tokens) --> [B, N, D]
        --> pool: concat(token of lap L, mean of all tokens) [B, 2D]
        --> heads: pace (3 non-crossing quantiles), risk (3 logits), tire (1 logit)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from strategist import contract
from strategist.errors import DataError, StackSizeError
from strategist.model.config import ModelConfig
from strategist.model.layers import (
    CNNStem,
    ContextEncoder,
    InputNormalizer,
    IntervalCalibration,
    MLPHead,
    TacticalEmbedding,
    TacticalFusionBlock,
    TimingPaceHead,
    non_crossing_quantiles,
)


@dataclass
class StrategistOutput:
    """Everything training needs; forward() returns only the exported three."""

    pace_quantiles: torch.Tensor  # [B, 3] seconds, delta to the fuel-corrected time of lap L
    pace_quantiles_norm: torch.Tensor  # [B, 3] the same in normalised units (what the loss sees)
    risk_logits: torch.Tensor  # [B, 3] before softmax (for cross-entropy)
    risk_probs: torch.Tensor  # [B, 3] softmax over contract.RISK_CLASSES
    tire_health: torch.Tensor  # [B, 1] 0..1

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pace_quantiles, self.risk_probs, self.tire_health


def add_common_modules(module: nn.Module, cfg: ModelConfig) -> None:
    """Create every submodule except the lap transformer on `module` (names matter: checkpoints)."""
    module.normalizer = InputNormalizer(cfg)
    module.stem = CNNStem(cfg)
    # One learnt embedding per lap slot (L, L-1, L-2, L-5, L_base): the slots are not evenly spaced in
    # time, so a sinusoidal position code would be wrong. It fixes the stack size: n_lap_context rows.
    module.lap_pos_embedding = nn.Parameter(torch.zeros(cfg.n_lap_context, cfg.d_model))
    nn.init.normal_(module.lap_pos_embedding, std=0.02)
    module.embed_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
    module.embed_dropout = nn.Dropout(cfg.dropout)
    module.tactical_embedding = TacticalEmbedding(cfg)
    if cfg.n_context:
        module.context_encoder = ContextEncoder(cfg)
    module.fusion = TacticalFusionBlock(cfg)
    if cfg.split_pace_head and cfg.racing_head_inputs == "timing":
        module.pace_head = TimingPaceHead(cfg)
    else:
        module.pace_head = MLPHead(cfg.head_in_features, cfg.head_hidden, len(cfg.quantiles))
    module.risk_head = MLPHead(cfg.head_in_features, cfg.head_hidden, cfg.n_risk_classes)
    module.tire_head = MLPHead(cfg.head_in_features, cfg.head_hidden, 1)
    module.interval_calibration = IntervalCalibration(cfg.n_calibration_groups)
    if cfg.split_pace_head:
        module.pace_head_special = MLPHead(cfg.head_in_features, cfg.head_hidden, len(cfg.quantiles))
    if cfg.n_context:
        # Start from "next lap = lap L" (the strongest simple forecast): a zero pace head output is a
        # zero delta up to the normalisation offset, so training can only add what the data supports.
        zero_pace_heads(module)


def pace_heads(module: nn.Module) -> list[MLPHead | TimingPaceHead]:
    """The pace head(s) of a model: one, or two with split_pace_head."""
    names = ("pace_head", "pace_head_special")
    kinds = (MLPHead, TimingPaceHead)
    return [head for name in names if isinstance(head := getattr(module, name, None), kinds)]


def zero_pace_heads(module: nn.Module) -> None:
    for head in pace_heads(module):
        nn.init.zeros_(head.out.weight)
        nn.init.zeros_(head.out.bias)


# Lap L's own flags in the context that make it a "special" lap for the split pace head.
_SPECIAL_LAP_FEATURES = tuple(
    contract.CONTEXT_FEATURES.index(f"{contract.LAP_SLOTS[0]}.{name}")
    for name in ("pit_in", "pit_out", "status_sc", "status_vsc", "status_red")
)


def special_lap_gate(context: torch.Tensor) -> torch.Tensor:
    """[B, K] raw context -> [B, 1]: 1 where lap L is an in/out-lap or neutralised, else 0."""
    return (context[:, list(_SPECIAL_LAP_FEATURES)].amax(dim=1, keepdim=True) > 0.5).to(context.dtype)


def calibration_groups(tactical: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """[B, 2, 2] raw tactical, [B, K] raw context -> [B, 3] one-hot over contract.CALIBRATION_GROUPS."""
    special = special_lap_gate(context)  # [B, 1]
    ahead_gap = tactical[:, 0, 0:1]  # [B, 1] s
    traffic = (ahead_gap < contract.TRAFFIC_GAP_S).to(context.dtype) * (1.0 - special)
    clean = 1.0 - special - traffic
    return torch.cat([clean, traffic, special], dim=1)


def check_inputs(
    cfg: ModelConfig, telemetry: torch.Tensor, tactical: torch.Tensor, context: torch.Tensor | None = None
) -> None:
    """Shape checks only (static under ONNX export): the stack size first, with its own error."""
    if telemetry.dim() != 4:
        raise DataError(
            f"expected [B, {cfg.n_lap_context}, {cfg.n_steps}, {cfg.n_channels}], got shape {tuple(telemetry.shape)}",
            field=contract.INPUT_TELEMETRY,
        )
    if telemetry.shape[1] != cfg.n_lap_context:
        raise StackSizeError(
            f"telemetry stacks {telemetry.shape[1]} laps but this model was built for n_lap_context="
            f"{cfg.n_lap_context} (slots {', '.join(contract.LAP_SLOTS)}); a model's lap stack size is fixed"
        )
    if tuple(telemetry.shape[2:]) != (cfg.n_steps, cfg.n_channels):
        raise DataError(
            f"expected [B, {cfg.n_lap_context}, {cfg.n_steps}, {cfg.n_channels}], got shape {tuple(telemetry.shape)}",
            field=contract.INPUT_TELEMETRY,
        )
    if tactical.dim() != 3 or tuple(tactical.shape[1:]) != (cfg.n_tactical_rows, cfg.n_tactical_cols):
        raise DataError(
            f"expected [B, {cfg.n_tactical_rows}, {cfg.n_tactical_cols}], got shape {tuple(tactical.shape)}",
            field=contract.INPUT_TACTICAL,
        )
    if tactical.shape[0] != telemetry.shape[0]:
        raise DataError(
            f"batch sizes differ: telemetry {telemetry.shape[0]}, tactical {tactical.shape[0]}",
            field=contract.INPUT_TACTICAL,
        )
    if cfg.n_context and context is None:
        raise DataError(
            f"this model reads the timing context: give {contract.INPUT_CONTEXT} [B, {cfg.n_context}]",
            field=contract.INPUT_CONTEXT,
        )
    if not cfg.n_context and context is not None:
        raise DataError(
            "this model was built without a timing context (n_context=0): give telemetry and tactical only",
            field=contract.INPUT_CONTEXT,
        )
    if context is not None:
        if context.dim() != 2 or context.shape[1] != cfg.n_context:
            raise DataError(
                f"expected [B, {cfg.n_context}], got shape {tuple(context.shape)}",
                field=contract.INPUT_CONTEXT,
            )
        if context.shape[0] != telemetry.shape[0]:
            raise DataError(
                f"batch sizes differ: telemetry {telemetry.shape[0]}, context {context.shape[0]}",
                field=contract.INPUT_CONTEXT,
            )


def lap_time_ratios(cfg: ModelConfig, telemetry: torch.Tensor) -> torch.Tensor:
    """[B, N, S, C] physical telemetry -> [B, N] lap time of each slot relative to lap L, in percent.

    Steps are evenly spaced in distance, so a lap's time is proportional to mean(1 / Speed); the
    unknown lap length cancels in the ratio. Slot 0 (lap L) is 0 by construction.
    """
    speed_index = contract.CHANNELS.index("Speed")
    speed = telemetry[..., speed_index].clamp(min=cfg.lap_time_min_speed_kmh)  # [B, N, S] km/h
    pace = (1.0 / speed).mean(dim=-1)  # [B, N], proportional to lap time
    return 100.0 * torch.log(pace / pace[:, :1])


# Either implementation (VirtualStrategist or VirtualStrategistModel): an nn.Module with the
# attributes of StrategistForwardMixin. Typed as Any because nn.Module's __getattr__ defeats mypy.
StrategistModel = Any


class StrategistForwardMixin:
    """forward / forward_train for a module built with add_common_modules and an encode_laps()."""

    model_config: ModelConfig
    normalizer: InputNormalizer
    stem: CNNStem
    lap_pos_embedding: nn.Parameter
    embed_norm: nn.LayerNorm
    embed_dropout: nn.Dropout
    tactical_embedding: TacticalEmbedding
    fusion: TacticalFusionBlock
    pace_head: Any  # MLPHead, or TimingPaceHead (split_pace_head with racing_head_inputs "timing")
    pace_head_special: MLPHead
    risk_head: MLPHead
    tire_head: MLPHead
    interval_calibration: IntervalCalibration
    context_encoder: ContextEncoder

    def encode_laps(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, N, D]
        raise NotImplementedError

    def forward_train(
        self, telemetry: torch.Tensor, tactical: torch.Tensor, context: torch.Tensor | None = None
    ) -> StrategistOutput:
        cfg = self.model_config
        check_inputs(cfg, telemetry, tactical, context)
        batch, n_laps = telemetry.shape[0], telemetry.shape[1]

        laps = self.normalizer.telemetry(telemetry).reshape(batch * n_laps, cfg.n_steps, cfg.n_channels)
        tokens = self.stem(laps).view(batch, n_laps, cfg.d_model)  # [B, N, D]
        context_features = None
        if context is not None:
            slot_offsets, context_features = self.context_encoder(self.normalizer.context(context))
            tokens = tokens + slot_offsets  # [B, N, D]
        tokens = self.embed_dropout(self.embed_norm(tokens + self.lap_pos_embedding))
        tokens = self.encode_laps(tokens)  # [B, N, D]

        tactical_tokens = self.tactical_embedding(self.normalizer.tactical(tactical))  # [B, T, D]
        fused = self.fusion(tokens, tactical_tokens)  # [B, N, D]
        # Slot 0 is lap L, the most recent lap; the mean carries the whole stack.
        pooled = torch.cat([fused[:, 0], fused.mean(dim=1)], dim=-1)  # [B, 2D]
        if cfg.lap_time_features:
            pooled = torch.cat([pooled, lap_time_ratios(cfg, telemetry)], dim=-1)  # [B, 2D + N]
        if context_features is not None:
            pooled = torch.cat([pooled, context_features], dim=-1)  # [..., + H]

        if isinstance(self.pace_head, TimingPaceHead) and context is not None:
            # [B, 3] from the timing alone (normalised context, normalised tactical)
            raw_pace = self.pace_head(self.normalizer.context(context), self.normalizer.tactical(tactical))
        else:
            raw_pace = self.pace_head(pooled)  # [B, 3]
        if cfg.split_pace_head and context is not None:
            gate = special_lap_gate(context)  # [B, 1]
            raw_pace = gate * self.pace_head_special(pooled) + (1.0 - gate) * raw_pace
        groups = None if context is None else calibration_groups(tactical, context)  # [B, G]
        pace_norm = self.interval_calibration(non_crossing_quantiles(raw_pace), groups)  # [B, 3]
        risk_logits = self.risk_head(pooled)  # [B, 3]
        return StrategistOutput(
            pace_quantiles=self.normalizer.pace_to_seconds(pace_norm),
            pace_quantiles_norm=pace_norm,
            risk_logits=risk_logits,
            risk_probs=torch.softmax(risk_logits, dim=-1),
            tire_health=torch.sigmoid(self.tire_head(pooled)),
        )

    def set_stats(self, stats: dict) -> None:
        """Copy dataset statistics (manifest "stats") into the normalisation buffers."""
        self.normalizer.set_stats(stats)
