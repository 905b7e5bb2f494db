"""Export: ONNX parity, contract checks, config.pbtxt generation, mixed precision, the CPU repository,
the Python-backend model (without Triton) and the TensorRT engine (GPU only)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.triton_stub import fake_pb_utils

from export import triton_config
from export.onnx_export import (
    ExportError,
    check_onnx,
    check_onnx_parity,
    export_onnx,
    ort_session,
    read_signature,
    run_ort,
)
from export.sample_inputs import realistic_batch, realistic_stats
from strategist import contract
from strategist.paths import MODEL_REPOSITORY_DIR, PROJECT_ROOT

TINY = dict(
    d_model=32,
    n_layers=1,
    n_heads=4,
    d_ff=64,
    n_fusion_heads=4,
    head_hidden=16,
    stem_channels=(8, 16),
    dropout=0.0,
    n_context=0,  # the two-input design; models with the timing context: tests/export/test_context_export.py
)
TWO_INPUTS = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL)


def tiny_model(impl: str):
    import torch

    from strategist.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(impl=impl, **TINY))
    model.set_stats(realistic_stats(64))
    return model.eval()


@pytest.fixture(scope="module", params=["torch", "hf"])
def exported(request, tmp_path_factory):
    model = tiny_model(request.param)
    path = export_onnx(model, tmp_path_factory.mktemp(f"onnx_{request.param}") / "model.onnx")
    return model, path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from strategist.model.checkpoint import save_checkpoint

    model = tiny_model("torch")
    return save_checkpoint(
        model, model.model_config, tmp_path_factory.mktemp("ckpt"), stats=realistic_stats(64)
    )


# --- ONNX --------------------------------------------------------------------------------------
def test_onnx_matches_pytorch_at_several_batch_sizes(exported):
    model, path = exported
    parity = check_onnx_parity(model, path, [1, 2, 7, 128])
    assert parity.ok and parity.worst <= 1e-4
    assert set(parity.max_abs_diff) == {1, 2, 7, 128}


def test_onnx_signature_follows_the_contract(exported):
    _, path = exported
    signature = check_onnx(path)
    assert signature.opset >= 17
    assert list(signature.inputs) == list(TWO_INPUTS)
    assert {name: dims for name, (dims, _) in signature.outputs.items()} == contract.OUTPUT_SHAPES


def test_realistic_inputs_are_in_physical_ranges():
    telemetry, tactical = realistic_batch(16, seed=3)
    speed = telemetry[..., contract.CHANNELS.index("Speed")]
    gear = telemetry[..., contract.CHANNELS.index("nGear")]
    assert 60.0 <= speed.min() and speed.max() <= 330.0 and speed.max() > 280.0
    assert set(np.unique(telemetry[..., contract.CHANNELS.index("Brake")])) <= {0.0, 1.0}
    assert set(np.unique(gear)) <= set(range(1, 9))
    assert (tactical[..., 0] > 0).all() and (tactical[..., 0] <= contract.NO_CAR_GAP_S).all()


def test_export_refuses_batch_one_example_and_old_opset(tmp_path):
    model = tiny_model("torch")
    with pytest.raises(ExportError, match="example batch"):
        export_onnx(model, tmp_path / "m.onnx", example_batch=1)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", opset=13)


def test_check_onnx_rejects_a_fixed_batch(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # Identity graph with the contract's names but batch fixed at 4.
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, *d]) for n, d in contract.INPUT_SHAPES.items()
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, *d])
        for n, d in contract.OUTPUT_SHAPES.items()
    ]
    nodes = [
        helper.make_node("Slice", ["tactical", "s", "e", "a"], ["pace_quantiles"]),
        helper.make_node("Slice", ["tactical", "s", "e", "a"], ["risk_probs"]),
        helper.make_node("Slice", ["tactical", "s", "e", "a"], ["tire_health"]),
    ]
    graph = helper.make_graph(nodes, "fixed", inputs, outputs)
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError, match="fixed batch dimension 4"):
        read_signature(path)


# --- config.pbtxt ------------------------------------------------------------------------------
def test_generated_configs_agree_with_the_onnx(exported, tmp_path):
    _, path = exported
    settings = triton_config.ServingSettings(max_batch_size=64, queue_delay_us=250)
    for render in (triton_config.render_cpu_config, triton_config.render_gpu_config):
        config_path = tmp_path / "config.pbtxt"
        config_path.write_text(render(settings, TWO_INPUTS))
        triton_config.check_config_against_onnx(config_path, path, max_batch_size=64)
        parsed = triton_config.parse_config(config_path.read_text())
        assert parsed.dynamic_batching.max_queue_delay_microseconds == 250
        assert [w.batch_size for w in parsed.model_warmup] == [1, 64]
        with pytest.raises(triton_config.ConfigError, match="profile max 32"):
            triton_config.check_config_against_onnx(config_path, path, max_batch_size=32)
    gpu = triton_config.parse_config(triton_config.render_gpu_config(settings, TWO_INPUTS))
    assert gpu.platform == "tensorrt_plan" and gpu.instance_group[0].kind == gpu.instance_group[0].KIND_GPU


def test_dynamic_batching_switch():
    off = triton_config.ServingSettings(dynamic_batching=False)
    for render in (triton_config.render_cpu_config, triton_config.render_gpu_config):
        assert triton_config.parse_config(render(triton_config.ServingSettings(), TWO_INPUTS)).HasField(
            "dynamic_batching"
        )
        assert not triton_config.parse_config(render(off, TWO_INPUTS)).HasField("dynamic_batching")
    twin = triton_config.parse_config(triton_config.render_cpu_config(off, TWO_INPUTS, name="unbatched"))
    assert twin.name == "unbatched"


def test_batcher_settings_reach_the_config():
    tuned = triton_config.ServingSettings(queue_delay_us=500, preferred_batch_sizes=(16, 32), cpu_instances=2)
    parsed = triton_config.parse_config(triton_config.render_cpu_config(tuned, TWO_INPUTS))
    assert list(parsed.dynamic_batching.preferred_batch_size) == [16, 32]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
    assert parsed.instance_group[0].count == 2
    default = triton_config.parse_config(
        triton_config.render_cpu_config(triton_config.ServingSettings(), TWO_INPUTS)
    )
    assert list(default.dynamic_batching.preferred_batch_size) == []


def test_config_check_names_a_wrong_tensor(exported, tmp_path):
    _, path = exported
    text = triton_config.render_cpu_config(triton_config.ServingSettings(), TWO_INPUTS).replace(
        '"tire_health"', '"tyre"'
    )
    config_path = tmp_path / "config.pbtxt"
    config_path.write_text(text)
    with pytest.raises(triton_config.ConfigError, match="tyre"):
        triton_config.check_config_against_onnx(config_path, path)


def test_committed_repository_files_are_the_generated_ones():
    from strategist.paths import SERVED_CHECKPOINT_DIR

    settings = triton_config.ServingSettings()
    inputs = triton_config.checkpoint_input_names(SERVED_CHECKPOINT_DIR)  # the served model's inputs
    committed_cpu = MODEL_REPOSITORY_DIR / contract.CPU_MODEL_NAME
    assert (committed_cpu / "config.pbtxt").read_text() == triton_config.render_cpu_config(settings, inputs)
    assert (MODEL_REPOSITORY_DIR / contract.GPU_MODEL_NAME / "config.pbtxt").read_text() == (
        triton_config.render_gpu_config(settings, inputs)
    )
    source = (PROJECT_ROOT / "export" / "triton_python_model.py").read_text()
    assert (committed_cpu / "1" / "model.py").read_text() == source


def test_settings_reject_nonsense():
    with pytest.raises(triton_config.ConfigError, match="max_batch_size"):
        triton_config.ServingSettings(max_batch_size=0)
    with pytest.raises(triton_config.ConfigError, match="queue delay"):
        triton_config.ServingSettings(queue_delay_us=-1)
    with pytest.raises(triton_config.ConfigError, match="preferred batch sizes"):
        triton_config.ServingSettings(max_batch_size=64, preferred_batch_sizes=(32, 128))


# --- mixed precision ---------------------------------------------------------------------------
def test_mixed_precision_graph_is_valid_with_fp32_io_and_fp32_layernorm(exported, tmp_path):
    import onnx

    from export.mixed_precision import convert_to_mixed_precision, precision_summary
    from export.parity import compare_fp16

    _, path = exported
    fp16_path = convert_to_mixed_precision(path, tmp_path / "model_fp16.onnx")
    check_onnx(fp16_path)  # checker + FP32 inputs/outputs with the contract's names
    summary = precision_summary(fp16_path)
    assert summary["fp16_initializers"] > 0 and summary["casts"] > 0

    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(fp16_path)))
    types_ = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types_.update({i.name: i.data_type for i in inferred.graph.initializer})
    by_op: dict[str, set[int]] = {}
    for node in inferred.graph.node:
        if node.output[0] in types_:
            by_op.setdefault(node.op_type, set()).add(types_[node.output[0]])
    assert by_op["LayerNormalization"] == {onnx.TensorProto.FLOAT}
    assert by_op["Softmax"] == {onnx.TensorProto.FLOAT}
    assert onnx.TensorProto.FLOAT16 in by_op["MatMul"]
    head_gemms = [n for n in inferred.graph.node if "/pace_head/" in n.name and n.op_type == "Gemm"]
    assert head_gemms and all(types_[n.output[0]] == onnx.TensorProto.FLOAT for n in head_gemms)

    inputs = dict(zip(TWO_INPUTS, realistic_batch(256, seed=11), strict=True))
    report = compare_fp16(run_ort(ort_session(path), inputs), run_ort(ort_session(fp16_path), inputs))
    assert report.ok, report.failures


def test_fp16_parity_flags_what_is_wrong():
    from export.parity import compare_fp16

    pace = np.array([[-0.5, 0.0, 0.5], [-0.4, 0.1, 0.6]], dtype=np.float32)
    risk = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], dtype=np.float32)
    tire = np.array([[0.9], [0.5]], dtype=np.float32)
    assert compare_fp16((pace, risk, tire), (pace, risk, tire)).ok
    bad_pace = pace.copy()
    bad_pace[1] = [0.6, 0.1, -0.4]  # crossed quantiles
    bad_risk = risk[:, [1, 0, 2]]  # argmax flipped everywhere
    bad_tire = tire + np.float32(np.nan)
    report = compare_fp16((pace, risk, tire), (bad_pace, bad_risk, bad_tire))
    text = " ".join(report.failures)
    assert not report.ok
    for expected in ("non-finite", "out of order", "pace max abs", "argmax agreement"):
        assert expected in text


# --- the CPU repository and its Python-backend model ----------------------------------------
def test_build_cpu_repository_from_a_checkpoint(tiny_checkpoint, tmp_path):
    from export.repository import build_cpu_repository

    settings = triton_config.ServingSettings(max_batch_size=16, queue_delay_us=0)
    built = build_cpu_repository(tiny_checkpoint, tmp_path / "repo", settings=settings)
    version_dir = tmp_path / "repo" / contract.CPU_MODEL_NAME / "1"
    assert built.artefact == version_dir / "model.onnx" and built.artefact.exists()
    assert (version_dir / "model.py").exists()
    assert (tmp_path / "repo" / contract.GPU_MODEL_NAME / "config.pbtxt").exists()
    info = json.loads((version_dir / "build_info.json").read_text())
    assert info["impl"] == "torch" and set(info["onnx_parity_max_abs_diff"]) == {"1", "2", "16"}
    assert built.seconds < 30


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    from strategist.cli import main

    assert (
        main(["export", "--target", "cpu", "--checkpoint", str(tmp_path / "nope"), "--repo", str(tmp_path)])
        == 1
    )
    assert "no checkpoint at" in capsys.readouterr().err


def test_python_backend_model_batches_requests_like_onnx_runtime(tiny_checkpoint, tmp_path, monkeypatch):
    from export.repository import PYTHON_MODEL_SOURCE, build_cpu_repository

    built = build_cpu_repository(
        tiny_checkpoint, tmp_path / "repo", settings=triton_config.ServingSettings(max_batch_size=8)
    )
    pb_utils = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    spec = importlib.util.spec_from_file_location("strategist_triton_model_under_test", PYTHON_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    config = triton_config.parse_config(built.config_path.read_text())
    from google.protobuf import json_format

    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
            "model_repository": str(built.version_dir.parent),
            "model_version": "1",
        }
    )
    telemetry, tactical = realistic_batch(6, seed=21)
    splits = [(0, 1), (1, 4), (4, 6)]  # requests carrying batches of 1, 3 and 2
    requests = [
        pb_utils.InferenceRequest(
            [pb_utils.Tensor("telemetry", telemetry[a:b]), pb_utils.Tensor("tactical", tactical[a:b])]
        )
        for a, b in splits
    ]
    requests.insert(
        1, pb_utils.InferenceRequest([pb_utils.Tensor("telemetry", telemetry[:1])])
    )  # no tactical
    responses = model.execute(requests)

    assert len(responses) == 4
    assert responses[1].error is not None and "tactical" in responses[1].error.message()
    expected = run_ort(ort_session(built.artefact), {"telemetry": telemetry, "tactical": tactical})
    for response, (a, b) in zip([responses[0], *responses[2:]], splits, strict=True):
        assert response.error is None
        got = {t.name(): t.as_numpy() for t in response.output_tensors}
        for name, full in zip(
            (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE), expected, strict=True
        ):
            np.testing.assert_allclose(got[name], full[a:b], atol=1e-6)


# --- TensorRT -----------------------------------------------------------------------------------
def test_trt_target_without_gpu_says_so(tiny_checkpoint, tmp_path, capsys):
    from export.tensorrt_build import tensorrt_status
    from strategist.cli import main

    usable, reason = tensorrt_status()
    if usable:
        pytest.skip("TensorRT and a GPU are present: the gpu test covers this target")
    code = main(["export", "--target", "trt", "--checkpoint", str(tiny_checkpoint), "--repo", str(tmp_path)])
    assert code == 1
    assert reason in capsys.readouterr().out


@pytest.mark.gpu
def test_tensorrt_fp16_engine_matches_onnx_runtime(tiny_checkpoint, tmp_path):
    from export.repository import build_gpu_repository
    from export.tensorrt_build import tensorrt_status

    usable, reason = tensorrt_status()
    if not usable:
        pytest.skip(reason)
    built = build_gpu_repository(
        tiny_checkpoint, tmp_path / "repo", settings=triton_config.ServingSettings(max_batch_size=64)
    )
    assert built.artefact.name == "model.plan" and built.artefact.stat().st_size > 0
    parity = built.details["fp16_parity"]
    assert parity["ok"], parity["failures"]
    assert parity["risk_argmax_agreement"] >= 0.995
