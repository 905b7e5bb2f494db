"""Weight mapping between the plain-PyTorch and the Hugging Face implementation.

Only the lap transformer's parameter names differ; every other key (stem, normaliser buffers, lap
slot embedding, tactical fusion, heads) is identical. Per layer i:

    torch: lap_blocks.{i}.<name>           hf: encoder.layer.{i}.<name>
        attn.query / attn.key / attn.value     attention.self.query / .key / .value
        attn_out                               attention.output.dense
        attn_norm                              attention.output.LayerNorm
        ff_in                                  intermediate.dense
        ff_out                                 output.dense
        ff_norm                                output.LayerNorm

(each with .weight and .bias). Shapes are identical, so conversion is a pure renaming.
"""

from __future__ import annotations

import re

import torch

from strategist.errors import StrategistError

_TORCH_TO_HF = {
    "attn.query": "attention.self.query",
    "attn.key": "attention.self.key",
    "attn.value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ff_in": "intermediate.dense",
    "ff_out": "output.dense",
    "ff_norm": "output.LayerNorm",
}
_HF_TO_TORCH = {v: k for k, v in _TORCH_TO_HF.items()}
_TORCH_KEY = re.compile(r"^lap_blocks\.(\d+)\.(.+)\.(weight|bias)$")
_HF_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def _rename(
    state: dict[str, torch.Tensor], pattern: re.Pattern[str], names: dict[str, str], prefix: str, source: str
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match is None:
            if key.startswith(("lap_blocks.", "encoder.")):
                raise StrategistError(f"weight mapping: unexpected {source} lap-transformer key {key!r}")
            out[key] = value
            continue
        layer, name, kind = match.groups()
        if name not in names:
            raise StrategistError(f"weight mapping: unknown {source} parameter {key!r}")
        out[f"{prefix}.{layer}.{names[name]}.{kind}"] = value
    return out


def torch_to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of VirtualStrategist -> state dict loadable by VirtualStrategistModel."""
    return _rename(state, _TORCH_KEY, _TORCH_TO_HF, "encoder.layer", "torch")


def hf_to_torch_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of VirtualStrategistModel -> state dict loadable by VirtualStrategist."""
    return _rename(state, _HF_KEY, _HF_TO_TORCH, "lap_blocks", "hf")
