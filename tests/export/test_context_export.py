"""Export of a model that reads the timing context (three inputs): ONNX names and dynamic batch, parity
with PyTorch, the mixed-precision pass, Triton configs and the Python-backend model, all driven by the
checkpoint's ModelConfig.input_names. The two-input design is covered by tests/export/test_export.py."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from helpers.context_models import THREE_INPUTS, context_checkpoint

from export import triton_config
from export.onnx_export import (
    ExportError,
    check_onnx,
    check_onnx_parity,
    export_onnx,
    ort_session,
    run_ort,
    run_torch,
)
from export.sample_inputs import realistic_context, realistic_inputs
from strategist import contract


@pytest.fixture(scope="module")
def model_and_checkpoint(tmp_path_factory):
    return context_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=3)


@pytest.fixture(scope="module")
def model(model_and_checkpoint):
    return model_and_checkpoint[0]


@pytest.fixture(scope="module")
def checkpoint(model_and_checkpoint):
    return model_and_checkpoint[1]


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("ctx") / "model.onnx")


def test_realistic_context_is_what_the_encoder_can_produce():
    context = realistic_context(300, seed=5)
    assert context.shape == (300, contract.N_CONTEXT) and context.dtype == np.float32
    assert np.isfinite(context).all()
    column = {name: context[:, i] for i, name in enumerate(contract.CONTEXT_FEATURES)}
    assert (column["L.fc_delta_s"] == 0).all()  # lap L is its own reference
    assert (column["L.laps_back"] == 0).all() and (column["L-5.laps_back"] == 5).all()
    assert 0 < column["race_progress"].min() and column["race_progress"].max() <= 1
    # The synthetic feed has what a real one has: other stints, SC laps, pit laps, missing times.
    for feature in ("L-5.same_stint", "L-1.status_sc", "L-1.pit_in", "L-2.lap_time_missing"):
        values = set(np.unique(column[feature]))
        assert values == {0.0, 1.0}, f"{feature} takes {values}"
    clean = column["L-1.lap_time_missing"] == 0
    assert np.abs(column["L-1.fc_delta_s"][clean]).max() < 60.0  # seconds, not a unit mix-up


def test_onnx_has_the_three_inputs_with_a_dynamic_batch(exported):
    signature = check_onnx(exported, input_names=THREE_INPUTS)
    assert list(signature.inputs) == list(THREE_INPUTS)
    assert signature.inputs[contract.INPUT_CONTEXT][0] == (contract.N_CONTEXT,)
    with pytest.raises(ExportError, match="the model reads"):
        check_onnx(exported, input_names=THREE_INPUTS[:2])


def test_onnx_matches_pytorch_with_the_context(model, exported):
    parity = check_onnx_parity(model, exported, [1, 2, 7, 64])
    assert parity.ok and parity.worst <= 1e-4
    # The context is read: changing it changes the answer (so parity above is not parity on a constant).
    inputs = realistic_inputs(8, THREE_INPUTS, seed=9)
    other = {**inputs, contract.INPUT_CONTEXT: realistic_context(8, seed=10)}
    session = ort_session(exported)
    for before, after in zip(run_ort(session, inputs), run_ort(session, other), strict=True):
        assert np.abs(before - after).max() > 1e-4
    np.testing.assert_allclose(run_ort(session, other)[0], run_torch(model, other)[0], atol=1e-4)


def test_run_ort_names_a_missing_input(exported):
    inputs = realistic_inputs(2, THREE_INPUTS[:2], seed=1)
    with pytest.raises(ExportError, match="context"):
        run_ort(ort_session(exported), inputs)


def test_mixed_precision_keeps_the_context_input_fp32(exported, tmp_path):
    import onnx

    from export.mixed_precision import convert_to_mixed_precision
    from export.parity import compare_fp16

    fp16_path = convert_to_mixed_precision(exported, tmp_path / "model_fp16.onnx")
    signature = check_onnx(fp16_path, input_names=THREE_INPUTS)  # FP32 graph inputs and outputs
    assert all(elem == onnx.TensorProto.FLOAT for _, elem in signature.inputs.values())
    # The context's normalisation (its first ops after the graph input) runs in FP32 too.
    graph = onnx.load(str(fp16_path)).graph
    readers = [n for n in graph.node if contract.INPUT_CONTEXT in n.input]
    assert readers and all(n.op_type != "Cast" for n in readers)
    inputs = realistic_inputs(256, THREE_INPUTS, seed=11)
    report = compare_fp16(run_ort(ort_session(exported), inputs), run_ort(ort_session(fp16_path), inputs))
    assert report.ok, report.failures


def test_triton_configs_declare_the_checkpoints_inputs(checkpoint, exported, tmp_path):
    names = triton_config.checkpoint_input_names(checkpoint)
    assert names == THREE_INPUTS
    settings = triton_config.ServingSettings(max_batch_size=32)
    for render in (triton_config.render_cpu_config, triton_config.render_gpu_config):
        path = tmp_path / "config.pbtxt"
        path.write_text(render(settings, names))
        triton_config.check_config_against_onnx(path, exported, max_batch_size=32)
        parsed = triton_config.parse_config(path.read_text())
        assert [t.name for t in parsed.input] == list(THREE_INPUTS)
        assert list(parsed.input[2].dims) == [contract.N_CONTEXT]
        assert all(set(w.inputs) == set(THREE_INPUTS) for w in parsed.model_warmup)
        path.write_text(render(settings, THREE_INPUTS[:2]))  # a config for the other layout
        with pytest.raises(triton_config.ConfigError, match="inputs"):
            triton_config.check_config_against_onnx(path, exported)
    with pytest.raises(triton_config.ConfigError, match="not a contract layout"):
        triton_config.render_cpu_config(settings, (contract.INPUT_TELEMETRY, contract.INPUT_CONTEXT))


def test_python_backend_model_passes_the_three_inputs_by_name(checkpoint, tmp_path, monkeypatch):
    from google.protobuf import json_format
    from helpers.triton_stub import fake_pb_utils

    from export.repository import PYTHON_MODEL_SOURCE, build_cpu_repository

    built = build_cpu_repository(
        checkpoint, tmp_path / "repo", settings=triton_config.ServingSettings(max_batch_size=8)
    )
    gpu_config = triton_config.parse_config(
        (tmp_path / "repo" / contract.GPU_MODEL_NAME / "config.pbtxt").read_text()
    )
    assert [t.name for t in gpu_config.input] == list(THREE_INPUTS)
    pb_utils = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    spec = importlib.util.spec_from_file_location("strategist_triton_model_ctx", PYTHON_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = triton_config.parse_config(built.config_path.read_text())
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
            "model_repository": str(built.version_dir.parent),
            "model_version": "1",
        }
    )
    inputs = realistic_inputs(5, THREE_INPUTS, seed=21)
    splits = [(0, 2), (2, 5)]
    requests = [
        pb_utils.InferenceRequest([pb_utils.Tensor(name, array[a:b]) for name, array in inputs.items()])
        for a, b in splits
    ]
    without_context = [pb_utils.Tensor(name, inputs[name][:1]) for name in THREE_INPUTS[:2]]
    requests.append(pb_utils.InferenceRequest(without_context))
    responses = model.execute(requests)
    assert responses[2].error is not None and "context" in responses[2].error.message()
    expected = run_ort(ort_session(built.artefact), inputs)
    for response, (a, b) in zip(responses[:2], splits, strict=True):
        assert response.error is None
        got = {t.name(): t.as_numpy() for t in response.output_tensors}
        np.testing.assert_allclose(got[contract.OUTPUT_PACE], expected[0][a:b], atol=1e-6)
