"""Model: shapes, non-crossing quantiles, normalisation buffers, stack-size errors, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.tiny import example_inputs as random_inputs
from helpers.tiny import example_stats, tiny_config

from strategist import contract
from strategist.errors import DataError, StackSizeError, StrategistError
from strategist.model import ModelConfig, build_model
from strategist.model.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("impl", ["torch", "hf"])
def test_forward_contract_shapes_and_ranges(impl):
    model = build_model(tiny_config(impl=impl)).eval()
    telemetry, tactical = random_inputs(batch=7)
    out = model(telemetry, tactical)
    assert isinstance(out, tuple) and len(out) == 3
    pace, risk, tire = out
    assert pace.shape == (7, *contract.OUTPUT_SHAPES[contract.OUTPUT_PACE])
    assert risk.shape == (7, *contract.OUTPUT_SHAPES[contract.OUTPUT_RISK])
    assert tire.shape == (7, *contract.OUTPUT_SHAPES[contract.OUTPUT_TIRE])
    torch.testing.assert_close(risk.sum(dim=1), torch.ones(7))
    assert ((tire >= 0) & (tire <= 1)).all()


def test_default_config_has_design_values():
    cfg = ModelConfig()
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.dropout) == (256, 4, 8, 0.1)
    assert cfg.stem_channels == (16, 32, 64) and cfg.stem_kernel == 5
    assert cfg.n_lap_context == 5 and cfg.quantiles == (0.1, 0.5, 0.9)
    assert cfg.stem_out_steps == 13  # 100 -> 50 -> 25 -> 13
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_config_rejects_bad_values():
    with pytest.raises(StrategistError, match="n_heads"):
        ModelConfig(d_model=30, n_heads=8)
    with pytest.raises(StrategistError, match="impl"):
        ModelConfig(impl="jax")
    with pytest.raises(StrategistError, match="unknown field"):
        ModelConfig.from_dict({"d_model": 32, "n_layer": 2})


def test_quantiles_never_cross_for_random_weights_and_inputs():
    for seed in range(5):
        torch.manual_seed(seed)
        model = build_model(tiny_config()).eval()
        # Scale the pace head's output so its raw values span a wide range (large negative offsets too).
        with torch.no_grad():
            model.pace_head.out.weight.mul_(50.0)
        telemetry, tactical = random_inputs(batch=64)
        pace = model(telemetry * torch.rand(1) * 3, tactical)[0]
        assert (pace[:, 1:] >= pace[:, :-1]).all()


def test_normalisation_buffers_in_state_dict_and_used():
    model = build_model(tiny_config()).eval()
    keys = set(model.state_dict())
    for name in (
        "telemetry_mean",
        "telemetry_std",
        "tactical_mean",
        "tactical_std",
        "pace_delta_mean",
        "pace_delta_std",
    ):
        assert f"normalizer.{name}" in keys
    telemetry, tactical = random_inputs()
    before = model(telemetry, tactical)[0]
    model.set_stats(example_stats())
    torch.testing.assert_close(model.normalizer.telemetry_std, torch.tensor(example_stats()["telemetry_std"]))
    after = model(telemetry, tactical)[0]
    assert not torch.allclose(before, after)
    # Pace comes out in seconds: std and mean of the delta are applied after the head.
    out = model.forward_train(telemetry, tactical)
    torch.testing.assert_close(out.pace_quantiles, out.pace_quantiles_norm * 0.6 + 0.05)


def test_set_stats_rejects_bad_shapes_and_floors_zero_std():
    model = build_model(tiny_config())
    bad = example_stats() | {"telemetry_mean": [0.0, 1.0]}
    with pytest.raises(StrategistError, match="telemetry_mean"):
        model.set_stats(bad)
    with pytest.raises(StrategistError, match="lack"):
        model.set_stats({"telemetry_mean": [0.0] * 5})
    zero = example_stats() | {"telemetry_std": [70.0, 40.0, 0.0, 1500.0, 2.0]}
    model.set_stats(zero)
    assert model.normalizer.telemetry_std[2] == 1.0


@pytest.mark.parametrize("impl", ["torch", "hf"])
def test_wrong_stack_size_tensor_fails_clearly(impl):
    model = build_model(tiny_config(impl=impl)).eval()
    telemetry, tactical = random_inputs(n_laps=4)
    with pytest.raises(StackSizeError, match="n_lap_context=5"):
        model(telemetry, tactical)
    telemetry, _ = random_inputs()
    with pytest.raises(DataError, match="tactical"):
        model(telemetry, torch.zeros(6, 3, 2))


def test_checkpoint_round_trip_identical_outputs(tmp_path):
    model = build_model(tiny_config())
    model.set_stats(example_stats())
    model.eval()
    folder = save_checkpoint(
        model, model.model_config, tmp_path / "ckpt", stats=example_stats(), metrics={"val_loss": 1.5}
    )
    loaded, cfg, meta = load_checkpoint(folder)
    assert cfg == model.model_config and not loaded.training
    assert meta["metrics"]["val_loss"] == 1.5 and meta["stats"] == example_stats()
    assert "code_revision" in meta
    telemetry, tactical = random_inputs()
    for a, b in zip(model(telemetry, tactical), loaded(telemetry, tactical), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_with_other_stack_size_is_refused(tmp_path):
    cfg3 = tiny_config(n_lap_context=3)
    model = build_model(cfg3)
    folder = save_checkpoint(model, cfg3, tmp_path / "ckpt3", stats=example_stats())
    with pytest.raises(StackSizeError, match="n_lap_context=3"):
        load_checkpoint(folder)
    # A config edited to claim 5 slots while the weights hold 3 is refused too.
    config = json.loads((folder / "config.json").read_text())
    config["n_lap_context"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(StackSizeError, match="3 lap slots"):
        load_checkpoint(folder)


def test_load_checkpoint_names_missing_files(tmp_path):
    with pytest.raises(StrategistError, match="config.json missing"):
        load_checkpoint(tmp_path)
