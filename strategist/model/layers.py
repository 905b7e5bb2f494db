"""Building blocks of the Spatio-Temporal Interaction Transformer (plain PyTorch).

Shapes use B = batch, N = lap slots (5), S = distance steps (100), C = telemetry channels (5),
D = d_model, T = tactical tokens (2: ahead, behind).

The attention blocks are post-LayerNorm with separate query/key/value projections, the layout of
a BERT layer, so the Hugging Face implementation (BertEncoder) can load the same weights by
renaming keys (strategist.model.weight_mapping). Attention is written out (matmul + softmax)
rather than through nn.MultiheadAttention: it exports to a plain ONNX graph and matches BERT's
eager attention bit for bit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from strategist.contract import STD_FLOOR
from strategist.errors import StrategistError
from strategist.model.config import ModelConfig

log = logging.getLogger(__name__)

STAT_KEYS = (
    "telemetry_mean",
    "telemetry_std",
    "tactical_mean",
    "tactical_std",
    "pace_delta_mean",
    "pace_delta_std",
)
CONTEXT_STAT_KEYS = ("context_mean", "context_std")
CONTEXT_CLIP = (
    10.0  # normalised context values are clipped to +-this  # only for models with a timing context
)


class InputNormalizer(nn.Module):
    """Dataset statistics as buffers, so the exported graph takes physical units.

    Buffers (all persistent, saved in the state dict / safetensors):
        telemetry_mean, telemetry_std  [C]      per channel
        tactical_mean,  tactical_std   [T, 2]   per row (ahead/behind) and column (gap, pace delta)
        pace_delta_mean, pace_delta_std []      of pace_target - pace_ref, seconds
        context_mean,   context_std    [K]      per context feature (models with n_context = K > 0)
    Defaults (0 / 1) make an untrained model well defined; set_stats() copies the training data's.
    """

    telemetry_mean: torch.Tensor
    telemetry_std: torch.Tensor
    tactical_mean: torch.Tensor
    tactical_std: torch.Tensor
    pace_delta_mean: torch.Tensor
    pace_delta_std: torch.Tensor
    context_mean: torch.Tensor
    context_std: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stat_keys = STAT_KEYS + (CONTEXT_STAT_KEYS if cfg.n_context else ())
        self.register_buffer("telemetry_mean", torch.zeros(cfg.n_channels))
        self.register_buffer("telemetry_std", torch.ones(cfg.n_channels))
        self.register_buffer("tactical_mean", torch.zeros(cfg.n_tactical_rows, cfg.n_tactical_cols))
        self.register_buffer("tactical_std", torch.ones(cfg.n_tactical_rows, cfg.n_tactical_cols))
        self.register_buffer("pace_delta_mean", torch.zeros(()))
        self.register_buffer("pace_delta_std", torch.ones(()))
        if cfg.n_context:
            self.register_buffer("context_mean", torch.zeros(cfg.n_context))
            self.register_buffer("context_std", torch.ones(cfg.n_context))

    @torch.no_grad()
    def set_stats(self, stats: Mapping[str, Any]) -> None:
        """Copy dataset statistics (manifest.json "stats") into the buffers, checking each one."""
        missing = [k for k in self.stat_keys if k not in stats]
        if missing:
            raise StrategistError(f"dataset stats lack {missing} (have {sorted(stats)})")
        for key in self.stat_keys:
            buffer: torch.Tensor = getattr(self, key)
            value = torch.as_tensor(stats[key], dtype=torch.float32)
            if value.shape != buffer.shape:
                raise StrategistError(
                    f"dataset stats field {key}: shape {tuple(value.shape)}, model expects {tuple(buffer.shape)}"
                )
            if not torch.isfinite(value).all():
                raise StrategistError(f"dataset stats field {key}: non-finite value {value.tolist()}")
            if key.endswith("_std"):
                small = value < STD_FLOOR
                if small.any():
                    log.warning(
                        "stats %s: %d entr(y/ies) below %g set to 1.0 (constant feature)",
                        key,
                        int(small.sum()),
                        STD_FLOOR,
                    )
                    value = torch.where(small, torch.ones_like(value), value)
            buffer.copy_(value)

    def stats(self) -> dict[str, Any]:
        """The buffers as plain lists/floats, in the manifest's "stats" layout."""
        return {k: getattr(self, k).tolist() for k in self.stat_keys}

    def telemetry(self, x: torch.Tensor) -> torch.Tensor:  # [..., C] -> [..., C]
        return (x - self.telemetry_mean) / self.telemetry_std

    def tactical(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 2] -> [B, T, 2]
        return (x - self.tactical_mean) / self.tactical_std

    def context(self, x: torch.Tensor) -> torch.Tensor:  # [B, K] -> [B, K]
        # Robust scales (median / MAD) put racing-lap deltas near +-1; a pit or SC lap's 20-60 s
        # would land at +-100 and swamp the first layer. asinh is linear near 0 and logarithmic in
        # the tails, so a 2 s traffic loss still reads larger than a 1 s one (measured better than
        # clipping at +-10 on held-out real races).
        z = (x - self.context_mean) / self.context_std
        # asinh(z), written out: the ONNX exporter has no aten::asinh at opset 17
        return torch.sign(z) * torch.log(z.abs() + torch.sqrt(z * z + 1.0))

    def pace_to_seconds(self, z: torch.Tensor) -> torch.Tensor:  # normalised delta -> seconds
        return z * self.pace_delta_std + self.pace_delta_mean

    def pace_to_normalised(self, seconds: torch.Tensor) -> torch.Tensor:
        return (seconds - self.pace_delta_mean) / self.pace_delta_std


class CNNStem(nn.Module):
    """One lap's [S, C] telemetry -> one D-dim token. Applied to every lap with the same weights.

    Conv1d stack over the distance axis (channels 16, 32, 64, kernel 5, stride 2: 100 -> 50 -> 25 -> 13
    steps), then the [64 x 13] map is flattened and projected to D. Flattening rather than pooling
    keeps *where* on the lap a feature occurs (a slow corner exit is not a slow straight).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = cfg.n_channels
        for out_ch in cfg.stem_channels:
            layers += [
                nn.Conv1d(
                    in_ch, out_ch, cfg.stem_kernel, stride=cfg.stem_stride, padding=cfg.stem_kernel // 2
                ),
                nn.GELU(),
            ]
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(in_ch * cfg.stem_out_steps, cfg.d_model)

    def forward(self, laps: torch.Tensor) -> torch.Tensor:
        # laps: [B*N, S, C] normalised -> Conv1d wants channels first: [B*N, C, S]
        h = self.convs(laps.transpose(1, 2))  # [B*N, 64, S']
        return self.proj(h.flatten(1))  # [B*N, D]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with separate q/k/v projections (BERT's parameter layout)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.attn_dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, H, L, D/H]
        b, length, _ = x.shape
        return x.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x: [B, Lq, D] queries; context: [B, Lk, D] keys/values (context is x for self-attention)
        q, k, v = self._split(self.query(x)), self._split(self.key(context)), self._split(self.value(context))
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)  # [B, H, Lq, Lk]
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, v)  # [B, H, Lq, D/H]
        return out.transpose(1, 2).reshape(x.shape)  # [B, Lq, D]


class _PostNormBlock(nn.Module):
    """Attention + feed-forward, each with dropout, residual and LayerNorm after (BERT layer layout)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.attn_out = nn.Linear(d_model, d_model)
        self.attn_norm = nn.LayerNorm(d_model, eps=eps)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = nn.LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn_out(self.attn(x, context))))
        return self.ff_norm(x + self.dropout(self.ff_out(F.gelu(self.ff_in(x)))))


class LapAttentionBlock(_PostNormBlock):
    """Self-attention across the N lap tokens: [B, N, D] -> [B, N, D]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, x)


class TacticalEmbedding(nn.Module):
    """Normalised tactical [B, T, 2] -> T tokens [B, T, D]: shared projection + a learnt row embedding
    that tells "car ahead" from "car behind" (the same gap means different things on either side)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.n_tactical_cols, cfg.d_model)
        self.row_embedding = nn.Parameter(torch.zeros(cfg.n_tactical_rows, cfg.d_model))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        nn.init.normal_(self.row_embedding, std=0.02)

    def forward(self, tactical: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tactical) + self.row_embedding)


class TacticalFusionBlock(_PostNormBlock):
    """Cross-attention: Query = lap tokens [B, N, D], Keys/Values = tactical tokens [B, T, D]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.d_model, cfg.n_fusion_heads, cfg.d_ff, cfg.dropout, cfg.layer_norm_eps)


class ContextEncoder(nn.Module):
    """Normalised timing context [B, K] -> (per-slot token offsets [B, N, D], head features [B, H]).

    The first N x F entries are one block of F features per lap slot (contract.CONTEXT_FEATURES):
    each block is projected (shared weights) plus nothing else onto its slot's token, so the lap
    transformer sees which laps were SC, pit or slow laps. The whole vector goes through a small
    MLP to the heads, where the exact lap-time history is most directly useful.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_slots = cfg.n_lap_context
        self.n_slot_features = cfg.n_context_slot_features
        self.slot_proj = nn.Linear(self.n_slot_features, cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_context, cfg.context_hidden),
            nn.GELU(),
            nn.Linear(cfg.context_hidden, cfg.context_hidden),
            nn.GELU(),
        )

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = context.shape[0]
        slots = context[:, : self.n_slots * self.n_slot_features].reshape(
            batch, self.n_slots, self.n_slot_features
        )  # [B, N, F]
        return self.slot_proj(slots), self.mlp(context)  # [B, N, D], [B, H]


class TimingPaceHead(nn.Module):
    """Pace of the next lap after a green racing lap L, from the timing alone:
    [normalised context [B, K], normalised tactical [B, T*2]] -> raw (median, a, b) [B, 3].

    Two GELU layers of context_hidden. Measured on held-out real races: the telemetry tokens (as
    pre-trained on simulated seasons) made this forecast worse, not better; the lap-time history,
    tyre state and gaps carry what the telemetry would add (docs/evaluation.md, ablation)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = cfg.n_context + cfg.n_tactical_rows * cfg.n_tactical_cols
        self.hidden = nn.Linear(width, cfg.context_hidden)
        self.hidden2 = nn.Linear(cfg.context_hidden, cfg.context_hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.context_hidden, len(cfg.quantiles))

    def forward(self, context: torch.Tensor, tactical: torch.Tensor) -> torch.Tensor:
        x = torch.cat([context, tactical.flatten(1)], dim=1)  # [B, K + T*2]
        return self.out(F.gelu(self.hidden2(self.dropout(F.gelu(self.hidden(x))))))


class MLPHead(nn.Module):
    """Linear -> GELU -> Linear on the pooled representation [B, 2D] -> [B, n_out] (raw)."""

    def __init__(self, d_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.hidden(x)))


def non_crossing_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """[B, 3] raw head output -> [B, 3] (lower, median, upper), non-decreasing by construction.

    raw = (median, a, b): lower = median - softplus(a), upper = median + softplus(b). softplus >= 0,
    so no input can make the quantiles cross, and no sort (non-differentiable ties) is needed.
    """
    median = raw[:, 1:2]
    lower = median - F.softplus(raw[:, 0:1])
    upper = median + F.softplus(raw[:, 2:3])
    return torch.cat([lower, median, upper], dim=1)


class IntervalCalibration(nn.Module):
    """Post-hoc widening (or narrowing) of the P10-P90 corridor around the median.

    Pinball training calibrates the quantiles on the training races; on races it has not seen the
    corridor is usually too narrow. `scale` (lower, upper) multiplies the distance of P10 and P90
    from P50, fitted on held-out races by strategist.train.calibrate so that each tail holds its
    nominal share of laps. Scales are positive, so the quantiles stay ordered. Ones = no change (how
    every model starts and trains).

    One pair for all laps ([2], two-input models) or one pair per calibration group ([G, 2], groups
    of contract.CALIBRATION_GROUPS chosen per sample from the inputs): a corridor calibrated on all
    laps at once is too wide in free air and too narrow in traffic.
    """

    scale: torch.Tensor

    def __init__(self, n_groups: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(2) if n_groups == 1 else torch.ones(n_groups, 2))

    def forward(self, quantiles: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        # quantiles [B, 3]; groups [B, G] one-hot (grouped scales only) -> [B, 3]
        if groups is None:
            low, high = self.scale[0], self.scale[1]  # scalars
        else:
            per_row = groups @ self.scale  # [B, 2]
            low, high = per_row[:, 0:1], per_row[:, 1:2]  # [B, 1] each
        median = quantiles[:, 1:2]
        lower = median - low * (median - quantiles[:, 0:1])
        upper = median + high * (quantiles[:, 2:3] - median)
        return torch.cat([lower, median, upper], dim=1)
