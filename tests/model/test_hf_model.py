"""Hugging Face implementation: parity with the torch model through the weight mapping, save/load."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny import TINY_OVERRIDES as TINY
from helpers.tiny import example_inputs as random_inputs
from helpers.tiny import example_stats

from strategist.errors import StrategistError
from strategist.model import ModelConfig, build_model
from strategist.model.checkpoint import load_checkpoint, save_checkpoint
from strategist.model.hf_model import VirtualStrategistConfig, VirtualStrategistModel
from strategist.model.weight_mapping import hf_to_torch_state_dict, torch_to_hf_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_round_trips_model_config():
    cfg = ModelConfig(impl="hf", **TINY)
    hf_cfg = VirtualStrategistConfig.from_model_config(cfg)
    assert hf_cfg.to_model_config() == cfg
    assert VirtualStrategistConfig.from_dict(hf_cfg.to_dict()).to_model_config() == cfg


def test_torch_and_hf_give_same_outputs_through_weight_mapping():
    torch.manual_seed(0)
    torch_model = build_model(ModelConfig(**TINY))
    torch_model.set_stats(example_stats())
    torch_model.eval()
    hf_model = build_model(ModelConfig(impl="hf", **TINY)).eval()

    hf_model.load_state_dict(torch_to_hf_state_dict(torch_model.state_dict()), strict=True)
    telemetry, tactical = random_inputs()
    for a, b in zip(torch_model(telemetry, tactical), hf_model(telemetry, tactical), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    # ... and back: the mapping is a bijection on the keys.
    back = hf_to_torch_state_dict(hf_model.state_dict())
    assert set(back) == set(torch_model.state_dict())
    for key, value in torch_model.state_dict().items():
        assert torch.equal(back[key], value), key


def test_mapping_refuses_unknown_lap_transformer_keys():
    with pytest.raises(StrategistError, match="unknown torch parameter"):
        torch_to_hf_state_dict({"lap_blocks.0.mystery.weight": torch.zeros(1)})


def test_save_pretrained_from_pretrained_and_load_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = build_model(ModelConfig(impl="hf", **TINY))
    model.set_stats(example_stats())
    model.eval()
    folder = save_checkpoint(model, model.model_config, tmp_path / "hf", stats=example_stats())
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()

    telemetry, tactical = random_inputs()
    expected = model(telemetry, tactical)
    via_hf = VirtualStrategistModel.from_pretrained(folder).eval()
    loaded, cfg, meta = load_checkpoint(folder)
    assert cfg.impl == "hf" and meta["impl"] == "hf" and isinstance(loaded, VirtualStrategistModel)
    for other in (via_hf, loaded):
        for a, b in zip(expected, other(telemetry, tactical), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
