"""Tiny model configurations and example inputs for tests (seconds on a CPU); test-only, not shipped.

from helpers.tiny import tiny_config, example_inputs, example_stats
model = build_model(tiny_config()); model.set_stats(example_stats())
outputs = model(*example_inputs(batch=4))
model, folder = save_tiny_checkpoint(tmp_path / "tiny", seed=1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from strategist import contract
from strategist.model.config import ModelConfig

# ~33 k parameters; every structural feature of the full model (stem depth, lap slots, fusion, heads).
# Two inputs (the seed's design) unless a test asks for the timing context with TINY_CONTEXT.
TINY_OVERRIDES: dict[str, Any] = dict(
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_fusion_heads=2,
    d_ff=64,
    head_hidden=16,
    stem_channels=(4, 8, 8),
    n_context=0,
    split_pace_head=False,
)
TINY_CONTEXT: dict[str, Any] = dict(n_context=contract.N_CONTEXT, context_hidden=16, split_pace_head=True)


def tiny_config(**changes: Any) -> ModelConfig:
    """ModelConfig with TINY_OVERRIDES, then `changes` (e.g. impl="hf", n_lap_context=3)."""
    return ModelConfig(**{**TINY_OVERRIDES, **changes})


def save_tiny_checkpoint(folder: Path, *, seed: int = 0) -> tuple[nn.Module, Path]:
    """(model in eval mode, checkpoint folder) of a freshly initialised tiny model (torch seed
    `seed`, no dataset statistics: the normaliser's 0 / 1 defaults)."""
    from strategist.model import build_model
    from strategist.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    return model, save_checkpoint(model, cfg, folder, stats={})


def example_inputs(
    batch: int = 6, n_laps: int = contract.N_LAP_CONTEXT, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (telemetry [B, n_laps, 100, 5], tactical [B, 2, 2]) in physical ranges."""
    g = torch.Generator().manual_seed(seed)
    telemetry = torch.rand(batch, n_laps, contract.N_STEPS, len(contract.CHANNELS), generator=g)
    telemetry = telemetry * torch.tensor(
        [330.0, 100.0, 1.0, 12000.0, 8.0]
    )  # Speed, Throttle, Brake, RPM, nGear
    tactical = torch.rand(batch, 2, 2, generator=g) * torch.tensor([contract.NO_CAR_GAP_S, 4.0])
    tactical = tactical - torch.tensor([0.0, 2.0])  # pace deltas in -2..2 s
    return telemetry, tactical


def example_context(batch: int = 6, seed: int = 0) -> torch.Tensor:
    """Timing contexts [B, N_CONTEXT] of plausible laps, built by the Data Engine's own encoder."""
    from export.sample_inputs import realistic_context

    return torch.from_numpy(realistic_context(batch, seed))


def example_stats(n_context: int = 0) -> dict[str, Any]:
    """Plausible dataset statistics in the manifest "stats" layout (context ones with n_context)."""
    context = {"context_mean": [0.0] * n_context, "context_std": [1.0] * n_context} if n_context else {}
    return {
        **context,
        "telemetry_mean": [200.0, 60.0, 0.2, 10000.0, 5.0],
        "telemetry_std": [70.0, 40.0, 0.4, 1500.0, 2.0],
        "tactical_mean": [[8.0, 0.1], [8.0, -0.1]],
        "tactical_std": [[9.0, 0.8], [9.0, 0.8]],
        "pace_delta_mean": 0.05,
        "pace_delta_std": 0.6,
    }
