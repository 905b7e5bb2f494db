"""Joint loss: L = w_pace * pinball(0.1, 0.5, 0.9) + w_risk * cross-entropy + w_tire * MSE(tire health).

Pinball is computed on the normalised pace delta ((delta - mean) / std, the scale the pace head
works in), so its weight does not depend on a circuit's lap-time spread. Each term averages over the
samples that have that target; a batch with none contributes 0 for that term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from strategist.data.dataset_format import RISK_UNKNOWN
from strategist.model.core import StrategistOutput
from strategist.model.layers import InputNormalizer
from strategist.train.config import LOSS_WEIGHTS


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Mean over quantiles of rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)); per sample: [b].

    pred [b, Q], target [b], quantiles [Q].
    """
    diff = target.unsqueeze(1) - pred  # [b, Q]
    return torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean(dim=1)


@dataclass
class LossTerms:
    total: torch.Tensor  # scalar, what is back-propagated
    pinball: torch.Tensor  # scalar, mean over samples with a pace target (normalised units)
    ce: torch.Tensor  # scalar, mean over samples with a known risk class
    mse: torch.Tensor  # scalar, mean over samples with a tire target
    n_pace: int
    n_risk: int
    n_tire: int


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    count = int(mask.sum())
    if count == 0:
        return values.sum() * 0.0, 0  # keeps the graph connected (DDP needs every head to get a grad)
    return values[mask].mean(), count


def joint_loss(
    out: StrategistOutput,
    batch: dict[str, torch.Tensor],
    normalizer: InputNormalizer,
    quantiles: tuple[float, ...],
    weights: tuple[float, float, float] = LOSS_WEIGHTS,
) -> LossTerms:
    """Loss terms for one batch (batch dict as StrategistDataset returns it)."""
    pace_delta = batch["pace_delta"]
    pace_mask = torch.isfinite(pace_delta)
    target_norm = normalizer.pace_to_normalised(torch.nan_to_num(pace_delta))
    q = torch.tensor(quantiles, dtype=out.pace_quantiles_norm.dtype, device=pace_delta.device)
    pinball, n_pace = _masked_mean(
        pinball_loss(out.pace_quantiles_norm.float(), target_norm, q.float()), pace_mask
    )

    risk = batch["risk"]
    risk_mask = risk != RISK_UNKNOWN
    ce_all = F.cross_entropy(out.risk_logits.float(), risk.clamp(min=0), reduction="none")
    ce, n_risk = _masked_mean(ce_all, risk_mask)

    tire = batch["tire_health"]
    tire_mask = torch.isfinite(tire)
    mse_all = (out.tire_health.float().squeeze(1) - torch.nan_to_num(tire)) ** 2
    mse, n_tire = _masked_mean(mse_all, tire_mask)

    w_pace, w_risk, w_tire = weights
    total = w_pace * pinball + w_risk * ce + w_tire * mse
    return LossTerms(total, pinball, ce, mse, n_pace, n_risk, n_tire)
