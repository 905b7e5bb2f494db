"""Tiny models that read the timing context (three inputs), for export and serving tests.

A freshly built context model starts from persistence: its pace head's output layer is zero, so the
pace corridor is the same for every input and a parity check on it would prove nothing. These
models give that layer random weights, as training would, so every output depends on every input.
"""

from __future__ import annotations

from pathlib import Path

import torch

from export.sample_inputs import realistic_stats
from helpers.tiny import TINY_CONTEXT, tiny_config
from strategist import contract
from strategist.model import build_model
from strategist.model.checkpoint import save_checkpoint
from strategist.model.core import pace_heads

THREE_INPUTS = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL, contract.INPUT_CONTEXT)


def context_model(seed: int = 0) -> torch.nn.Module:
    """A tiny torch-impl model with n_context = contract.N_CONTEXT, realistic statistics, eval mode."""
    torch.manual_seed(seed)
    model = build_model(tiny_config(**TINY_CONTEXT, dropout=0.0))
    model.set_stats(realistic_stats(64))
    with torch.no_grad():  # the pace heads start at zero (persistence); parity needs them to vary
        for head in pace_heads(model):
            torch.nn.init.normal_(head.out.weight, std=0.3)
            torch.nn.init.normal_(head.out.bias, std=0.1)
    return model.eval()


def context_checkpoint(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """(model, checkpoint folder) of `context_model(seed)` saved with save_checkpoint."""
    model = context_model(seed)
    path = save_checkpoint(model, model.model_config, folder, stats=realistic_stats(64))
    return model, path
