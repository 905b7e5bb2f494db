"""The local Triton launcher: a real tritonserver (from the nvidia-pytriton wheel) serving a tiny CPU
repository over gRPC, answering like ONNX Runtime, and gone after stop()."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from export import triton_config
from export.onnx_export import ort_session, run_ort
from export.sample_inputs import realistic_batch, realistic_stats
from strategist import contract

launcher = pytest.importorskip("strategist.serving.triton_launcher")


@pytest.fixture(scope="module")
def tiny_cpu_repository(tmp_path_factory) -> Path:
    import torch

    from export.repository import build_cpu_repository
    from strategist.model import ModelConfig, build_model
    from strategist.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=32,
        n_layers=1,
        n_heads=4,
        d_ff=64,
        n_fusion_heads=4,
        head_hidden=16,
        stem_channels=(8,),
        n_context=0,  # two inputs, as this test sends them
    )
    model = build_model(cfg).eval()
    model.set_stats(realistic_stats(64))
    checkpoint = save_checkpoint(model, cfg, tmp_path_factory.mktemp("ckpt"), stats=realistic_stats(64))
    repo = tmp_path_factory.mktemp("repo")
    build_cpu_repository(checkpoint, repo, settings=triton_config.ServingSettings(max_batch_size=8))
    return repo


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_find_tritonserver_returns_the_bundled_binary():
    binary = launcher.find_tritonserver()
    assert binary.name == "tritonserver" and os.access(binary, os.X_OK)


def test_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(launcher.TritonLaunchError, match="does not exist"):
        launcher.LocalTriton(tmp_path / "nowhere").start(timeout_s=5)
    with pytest.raises(launcher.TritonLaunchError, match="config.pbtxt not found"):
        launcher.LocalTriton(tmp_path).start(timeout_s=5)


def test_real_triton_serves_the_cpu_model_over_grpc(tiny_cpu_repository):
    import tritonclient.grpc as grpcclient

    telemetry, tactical = realistic_batch(5, seed=4)
    expected = run_ort(
        ort_session(tiny_cpu_repository / contract.CPU_MODEL_NAME / "1" / "model.onnx"),
        {contract.INPUT_TELEMETRY: telemetry, contract.INPUT_TACTICAL: tactical},
    )
    triton = launcher.LocalTriton(tiny_cpu_repository).start(timeout_s=60)
    pid = triton.pid
    try:
        assert triton.is_ready()
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        inputs = [
            grpcclient.InferInput(contract.INPUT_TELEMETRY, list(telemetry.shape), "FP32"),
            grpcclient.InferInput(contract.INPUT_TACTICAL, list(tactical.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(telemetry)
        inputs[1].set_data_from_numpy(tactical)
        result = client.infer(contract.CPU_MODEL_NAME, inputs)
        for name, want in zip(
            (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE), expected, strict=True
        ):
            np.testing.assert_allclose(result.as_numpy(name), want, atol=1e-5)
        client.close()
    finally:
        triton.stop()
    assert pid is not None and _process_gone(pid)
    assert not triton.is_running()
    assert triton.log_path is not None and "successfully loaded" in triton.log_path.read_text()


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_a_start_that_times_out_kills_the_whole_group_and_can_be_retried(tiny_cpu_repository):
    """Not ready in time (here: a 0.3 s budget, the Python-backend model needs seconds): the server
    may be hung, so its process group is SIGKILLed at once, nothing of it is left (no stub, no
    shared memory), and a second start() on the same object works."""
    triton = launcher.LocalTriton(tiny_cpu_repository)
    timed_out: list[int] = []
    wait_ready = triton._wait_ready

    def wait_and_note_the_pid(timeout_s: float) -> None:
        timed_out.append(triton.pid)
        wait_ready(timeout_s)

    triton._wait_ready = wait_and_note_the_pid  # type: ignore[method-assign]
    with pytest.raises(launcher.TritonLaunchError, match="not ready after"):
        triton.start(timeout_s=0.3)
    triton._wait_ready = wait_ready  # type: ignore[method-assign]
    assert not triton.is_running() and len(timed_out) == 1
    assert _group_members(timed_out[0]) == [] and _process_gone(timed_out[0])
    shm = [p.name for p in Path("/dev/shm").glob(f"{triton._shm_prefix}*")]
    assert shm == []
    try:
        triton.start(timeout_s=60)
        pid = triton.pid
        assert pid is not None and triton.is_ready()
    finally:
        triton.stop()
    assert _group_members(pid) == [] and _process_gone(pid)
