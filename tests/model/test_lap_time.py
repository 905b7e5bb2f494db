"""Lap-time features: relative pace of the stacked laps, computed from Speed inside the model."""

import json

import torch
from helpers.tiny import example_inputs, tiny_config

from strategist.model import ModelConfig, build_model
from strategist.model.core import lap_time_ratios


def test_ratio_of_a_uniformly_slower_lap_is_its_time_ratio():
    cfg = ModelConfig()
    telemetry = torch.zeros(1, 5, 100, 5)
    telemetry[..., 0] = 200.0  # lap L at 200 km/h everywhere
    telemetry[:, 1, :, 0] = 200.0 / 1.02  # L-1: 2 % slower everywhere -> 2 % more time
    ratios = lap_time_ratios(cfg, telemetry)
    assert ratios.shape == (1, 5)
    assert ratios[0, 0] == 0.0
    assert abs(ratios[0, 1].item() - 100 * torch.log(torch.tensor(1.02)).item()) < 1e-4
    assert torch.allclose(ratios[0, 2:], torch.zeros(3), atol=1e-5)


def test_standing_car_does_not_explode():
    cfg = ModelConfig()
    telemetry = torch.full((2, 5, 100, 5), 150.0)
    telemetry[:, 3, :10, 0] = 0.0  # a pit stop in L-5
    ratios = lap_time_ratios(cfg, telemetry)
    assert torch.isfinite(ratios).all()
    assert (ratios[:, 3] > 0).all()


def test_heads_read_the_ratios_and_old_configs_load_without_them(tmp_path):
    cfg = tiny_config()
    assert cfg.lap_time_features
    model = build_model(cfg)
    assert model.pace_head.hidden.in_features == 2 * cfg.d_model + cfg.n_lap_context
    telemetry, tactical = example_inputs(3)
    pace, risk, tire = model(telemetry, tactical)
    assert pace.shape == (3, 3) and risk.shape == (3, 3) and tire.shape == (3, 1)

    old = cfg.to_dict()
    del old["lap_time_features"]
    legacy = ModelConfig.from_dict(json.loads(json.dumps(old)))
    assert not legacy.lap_time_features
    assert build_model(legacy).pace_head.hidden.in_features == 2 * cfg.d_model
