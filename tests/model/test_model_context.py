"""The timing context as the model's third input: shapes, errors, the split pace head, corridor groups,
old two-input checkpoints, and the same maths in both implementations."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny import TINY_CONTEXT, example_context, example_inputs, example_stats, tiny_config

from strategist import contract
from strategist.errors import DataError
from strategist.model import ModelConfig, build_model
from strategist.model.checkpoint import load_checkpoint, save_checkpoint
from strategist.model.core import calibration_groups, pace_heads, special_lap_gate
from strategist.model.weight_mapping import torch_to_hf_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def context_model(impl: str = "torch", **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(tiny_config(**{**TINY_CONTEXT, "impl": impl, **changes}))
    model.set_stats(example_stats(contract.N_CONTEXT))
    return model.eval()


def set_flag(context: torch.Tensor, slot: str, name: str, value: float = 1.0) -> torch.Tensor:
    out = context.clone()
    out[:, contract.CONTEXT_FEATURES.index(f"{slot}.{name}")] = value
    return out


def test_the_default_model_reads_the_context_and_the_seed_design_is_a_switch():
    assert ModelConfig().n_context == contract.N_CONTEXT and ModelConfig().split_pace_head
    assert ModelConfig().input_names == (
        contract.INPUT_TELEMETRY,
        contract.INPUT_TACTICAL,
        contract.INPUT_CONTEXT,
    )
    two = ModelConfig(n_context=0)
    assert two.input_names == (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL) and not two.split_pace_head
    # A config written before the context existed is a two-input model with one pace head.
    old = {
        k: v
        for k, v in ModelConfig().to_dict().items()
        if k not in ("n_context", "split_pace_head", "racing_head_inputs")
    }
    loaded = ModelConfig.from_dict(old)
    assert loaded.n_context == 0 and not loaded.split_pace_head and loaded.racing_head_inputs == "pooled"
    with pytest.raises(Exception, match="n_context"):
        ModelConfig(n_context=7)


@pytest.mark.parametrize("impl", ["torch", "hf"])
def test_three_inputs_give_the_contract_outputs(impl):
    model = context_model(impl)
    telemetry, tactical = example_inputs(batch=5)
    pace, risk, tire = model(telemetry, tactical, example_context(5))
    assert pace.shape == (5, 3) and risk.shape == (5, 3) and tire.shape == (5, 1)
    assert (pace[:, 0] <= pace[:, 1]).all() and (pace[:, 1] <= pace[:, 2]).all()


def test_missing_or_unexpected_context_is_a_clear_error():
    telemetry, tactical = example_inputs(batch=2)
    with pytest.raises(DataError, match="reads the timing context") as err:
        context_model()(telemetry, tactical)
    assert err.value.field == contract.INPUT_CONTEXT
    with pytest.raises(DataError, match=r"expected \[B, 86\]"):
        context_model()(telemetry, tactical, torch.zeros(2, 10))
    with pytest.raises(DataError, match="batch sizes differ"):
        context_model()(telemetry, tactical, example_context(3))
    two = build_model(tiny_config()).eval()
    with pytest.raises(DataError, match="without a timing context"):
        two(telemetry, tactical, example_context(2))


def test_a_fresh_context_model_starts_from_persistence():
    """Zero pace-head outputs: the median is the normalisation offset, whatever the inputs."""
    model = context_model()
    telemetry, tactical = example_inputs(batch=4, seed=3)
    pace = model(telemetry, tactical, example_context(4, seed=3))[0]
    offset = float(example_stats()["pace_delta_mean"])
    torch.testing.assert_close(pace[:, 1], torch.full((4,), offset))


def test_the_special_head_answers_for_pit_and_neutralised_laps_only():
    model = context_model()
    with torch.no_grad():
        for head in pace_heads(model):
            torch.nn.init.normal_(head.out.weight, std=0.5)
        model.pace_head_special.out.bias.fill_(20.0)  # an obvious mark of the special head
    telemetry, tactical = example_inputs(batch=3)
    green = example_context(3)
    for name in ("pit_in", "pit_out", "status_sc", "status_vsc", "status_red"):
        green = set_flag(green, "L", name, 0.0)
    special = set_flag(green, "L", "pit_in")
    assert special_lap_gate(green).sum() == 0 and special_lap_gate(special).sum() == 3
    p_green = model(telemetry, tactical, green)[0][:, 1]
    p_special = model(telemetry, tactical, special)[0][:, 1]
    assert (p_special - p_green > 5.0).all()
    # An SC lap in an earlier slot (a restart) keeps the racing head.
    restart = set_flag(green, "L-1", "status_sc")
    assert special_lap_gate(restart).sum() == 0


def test_calibration_groups_follow_the_inputs_and_scale_each_corridor():
    context = example_context(3)
    for name in ("pit_in", "pit_out", "status_sc", "status_vsc", "status_red"):
        context = set_flag(context, "L", name, 0.0)
    context[2, contract.CONTEXT_FEATURES.index("L.pit_out")] = 1.0
    tactical = torch.tensor(
        [[[10.0, 0.0], [30.0, 0.0]], [[0.8, 0.1], [30.0, 0.0]], [[0.8, 0.1], [30.0, 0.0]]]
    )
    groups = calibration_groups(tactical, context)
    assert groups.argmax(1).tolist() == [0, 1, 2]  # clean, traffic, special
    model = context_model()
    with torch.no_grad():
        for head in pace_heads(model):
            torch.nn.init.normal_(head.out.weight, std=0.5)
    telemetry, _ = example_inputs(batch=3)
    with torch.no_grad():
        before = model(telemetry, tactical, context)[0]
        model.interval_calibration.scale.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, 3.0]]))
        after = model(telemetry, tactical, context)[0]
    width = lambda p: p[:, 2] - p[:, 0]  # noqa: E731
    ratio = width(after) / width(before)
    assert ratio[0] == pytest.approx(1.0, rel=1e-4) and ratio[1] == pytest.approx(2.0, rel=1e-4)
    torch.testing.assert_close(after[:, 1], before[:, 1])


def test_context_checkpoint_round_trip_and_both_implementations_agree(tmp_path):
    model = context_model()
    with torch.no_grad():
        for head in pace_heads(model):
            torch.nn.init.normal_(head.out.weight, std=0.3)
        model.interval_calibration.scale.copy_(torch.tensor([[1.1, 1.2], [1.3, 1.4], [1.5, 1.6]]))
    path = save_checkpoint(
        model, model.model_config, tmp_path / "ckpt", stats=example_stats(contract.N_CONTEXT)
    )
    loaded, cfg, _ = load_checkpoint(path)
    inputs = (*example_inputs(batch=4, seed=1), example_context(4, seed=1))
    for a, b in zip(model(*inputs), loaded(*inputs), strict=True):
        torch.testing.assert_close(a, b)
    hf = build_model(cfg.replace(impl="hf")).eval()
    hf.load_state_dict(torch_to_hf_state_dict(model.state_dict()), strict=True)
    for a, b in zip(model(*inputs), hf(*inputs), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
