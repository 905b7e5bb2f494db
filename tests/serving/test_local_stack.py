"""`strategist serve` (subprocess: export, local Triton, gateway, Ctrl-C) and `strategist client`."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers.skips import requires_haproxy, skip_without_triton
from helpers.tiny import save_tiny_checkpoint

from server.settings import GatewaySettings
from strategist.cli import main as cli_main
from strategist.contract import CPU_MODEL_NAME
from strategist.paths import PROJECT_ROOT
from strategist.serving import local_stack
from strategist.serving.local_stack import (
    ServeOptions,
    curl_example,
    ensure_cpu_repository,
    settings_environment,
    start_backend,
)
from strategist.serving.triton_launcher import TritonLaunchError

EXAMPLE = PROJECT_ROOT / "examples" / "predict_request.json"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=2)[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def _read_until(process: subprocess.Popen, pattern: str, timeout_s: float) -> tuple[re.Match, str]:
    """Read the process's output line by line until `pattern` matches (or fail with what it said)."""
    seen = []
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            time.sleep(0.1)
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match, "".join(seen)
    raise AssertionError(f"no {pattern!r} within {timeout_s} s; output:\n{''.join(seen)}")


def test_serve_builds_starts_answers_and_stops_on_ctrl_c(checkpoint, tmp_path):
    skip_without_triton()
    port = _free_port()
    key_file = tmp_path / "api-key"
    key_file.write_text("serve-key\n")
    command = [sys.executable, "-m", "strategist.cli", "serve", "--checkpoint", str(checkpoint),
               "--repo", str(tmp_path / "repo"), "--port", str(port), "--api-key-file", str(key_file),
               "--example", str(EXAMPLE)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        triton_match, _ = _read_until(process, r"local Triton ready: gRPC (\S+), log (\S+)", 120)
        _, output = _read_until(process, r"Ctrl-C stops", 60)
        assert f"Virtual Strategist serving on http://127.0.0.1:{port} (backend: triton" in output
        assert f"--data @{EXAMPLE}" in output and 'Authorization: Bearer $STRATEGIST_API_KEY"' in output
        assert "serve-key" not in output  # the key itself is never printed
        assert (tmp_path / "repo" / CPU_MODEL_NAME / "1" / "model.onnx").exists()

        url = f"http://127.0.0.1:{port}"
        payload = json.loads(EXAMPLE.read_text())
        response = httpx.post(f"{url}/predict", json=payload, headers={"Authorization": "Bearer serve-key"})
        assert response.status_code == 200, response.text
        assert response.json()["model"]["backend"] == "triton"
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0
    assert not _port_open(triton_match.group(1)), "Triton still listening after Ctrl-C"
    log_path = Path(triton_match.group(2))
    assert log_path.parent.name.startswith("strategist-triton-")
    assert not log_path.parent.exists(), "Triton's work folder left behind after Ctrl-C"


def test_auto_backend_falls_back_to_onnxruntime_when_triton_cannot_start(monkeypatch, caplog, tmp_path):
    class BrokenTriton:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def start(self, timeout_s: float) -> None:
            raise TritonLaunchError(
                "the bundled tritonserver needs glibc >= 2.35; this system has glibc 2.31"
            )

        def close(self) -> None:
            pass

    monkeypatch.setattr(local_stack, "LocalTriton", BrokenTriton)
    options = ServeOptions(host="127.0.0.1", port=0, repo=tmp_path, checkpoint=tmp_path, backend="auto")
    with caplog.at_level(logging.WARNING, logger="strategist.serve"):
        settings, triton = start_backend(options)
    assert triton is None and settings.backend == "onnxruntime"
    assert settings.onnx_file() == tmp_path / CPU_MODEL_NAME / "1" / "model.onnx"
    assert (
        "falling back to the in-process ONNX Runtime backend" in caplog.text and "glibc 2.31" in caplog.text
    )

    options.backend = "triton"  # asked for Triton explicitly: no silent fallback
    with pytest.raises(TritonLaunchError):
        start_backend(options)


def test_repository_is_built_once_and_rebuilt_when_the_checkpoint_is_newer(checkpoint, tmp_path):
    repo = tmp_path / "repo"
    onnx = ensure_cpu_repository(repo, checkpoint)
    first = onnx.stat().st_mtime_ns
    assert ensure_cpu_repository(repo, checkpoint).stat().st_mtime_ns == first
    weights = checkpoint / "model.safetensors"
    later = onnx.stat().st_mtime + 10
    os.utime(weights, (later, later))
    assert ensure_cpu_repository(repo, checkpoint).stat().st_mtime_ns != first


def test_repository_is_rebuilt_when_it_was_exported_from_another_checkpoint(checkpoint, tmp_path):
    """Serving checkpoint B over a repository exported from A (newer than B's weights) exports B."""
    repo = tmp_path / "repo"
    onnx = ensure_cpu_repository(repo, checkpoint)
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    earlier = onnx.stat().st_mtime - 10
    os.utime(other / "model.safetensors", (earlier, earlier))
    first = onnx.stat().st_mtime_ns
    ensure_cpu_repository(repo, other)
    info = json.loads((onnx.parent / "build_info.json").read_text())
    assert onnx.stat().st_mtime_ns != first and info["checkpoint"] == str(other.resolve())
    rebuilt = onnx.stat().st_mtime_ns
    assert ensure_cpu_repository(repo, other).stat().st_mtime_ns == rebuilt


def test_curl_example_is_ready_to_paste_and_names_the_key_by_variable():
    line = curl_example("http://127.0.0.1:8080", Path("examples/predict_request.json"), with_key=True)
    assert line == (
        "curl -s http://127.0.0.1:8080/predict -H 'Content-Type: application/json' "
        '-H "Authorization: Bearer $STRATEGIST_API_KEY" --data @examples/predict_request.json'
    )
    assert "Authorization" not in curl_example("http://127.0.0.1:8080", None, with_key=False)


def test_api_key_comes_from_a_file_or_the_environment_and_the_flag_warns(tmp_path, monkeypatch, caplog):
    import argparse

    from strategist.commands.serve import api_key
    from strategist.errors import StrategistError

    def args(**given) -> argparse.Namespace:
        return argparse.Namespace(**({"api_key": None, "api_key_file": None} | given))

    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    monkeypatch.setenv("STRATEGIST_API_KEY", "from-env")
    assert api_key(args(api_key_file=key_file)) == "from-file"
    assert api_key(args()) == "from-env"
    with caplog.at_level(logging.WARNING, logger="strategist.serve"):
        assert api_key(args(api_key="from-flag")) == "from-flag"
    assert "process list" in caplog.text and "from-flag" not in caplog.text
    monkeypatch.delenv("STRATEGIST_API_KEY")
    assert api_key(args()) is None
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(StrategistError, match="is empty"):
        api_key(args(api_key_file=tmp_path / "empty"))
    with pytest.raises(StrategistError, match="nowhere"):
        api_key(args(api_key_file=tmp_path / "nowhere"))


def test_client_sends_a_simulated_race_and_prints_the_table(checkpoint, tmp_path, capsys):
    """The client against a gateway on the in-process backend, on a small simulated race."""
    import threading

    import uvicorn

    from export.repository import build_cpu_repository
    from server.main import create_app
    from server.settings import GatewaySettings
    from strategist.sim.simulate import simulate_race

    race_dir = simulate_race(tmp_path / "races", seed=5, n_cars=4, n_laps=12)
    built = build_cpu_repository(checkpoint, tmp_path / "repo")
    settings = GatewaySettings(backend="onnxruntime", onnx_path=built.artefact, api_key="client-key")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        assert (
            cli_main(
                ["client", "--race", str(race_dir), "--lap", "6", "--url", url, "--api-key", "client-key"]
            )
            == 0
        )
        field = capsys.readouterr().out
        assert "lap 6 -> 7" in field and "via onnxruntime" in field
        assert (
            cli_main(["client", "--race", str(race_dir), "--lap", "6", "--url", url, "--api-key", "wrong"])
            == 1
        )
        assert "gateway answered 401" in capsys.readouterr().err
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_worker_processes_rebuild_the_same_gateway_settings(tmp_path, monkeypatch):
    settings = GatewaySettings(
        backend="triton",
        triton_url="127.0.0.1:9001",
        model_repository=tmp_path,
        api_key="k",
        max_batch_cars=8,
    )
    env = settings_environment(settings)
    assert env["STRATEGIST_API_KEY"] == "k" and env["STRATEGIST_TRITON_URL"] == "127.0.0.1:9001"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert GatewaySettings() == settings


@requires_haproxy
def test_serve_puts_the_edge_proxy_in_front_and_stops_it_on_ctrl_c(checkpoint, tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "strategist.cli", "serve", "--checkpoint", str(checkpoint),
               "--repo", str(tmp_path / "repo"), "--port", str(port), "--backend", "onnxruntime",
               "--edge-proxy", "on", "--example", str(EXAMPLE)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        edge_match, _ = _read_until(
            process, r"edge proxy \(HAProxy pid (\d+)\) on (\S+) -> gateway on (\S+); its metrics (\S+);", 120
        )
        _read_until(process, r"Ctrl-C stops", 60)
        assert edge_match.group(2) == f"http://127.0.0.1:{port}"
        gateway_url = edge_match.group(3)
        assert gateway_url.startswith("http://127.0.0.1:") and not gateway_url.endswith(f":{port}")
        response = httpx.post(f"http://127.0.0.1:{port}/predict", json=json.loads(EXAMPLE.read_text()),
                              headers={"x-request-id": "pit-wall-7"}, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "pit-wall-7"
        assert "haproxy_frontend_http_requests_total" in httpx.get(edge_match.group(4), timeout=5).text
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0
    assert (
        not Path(f"/proc/{edge_match.group(1)}").exists()
        or "Z" in Path(f"/proc/{edge_match.group(1)}/stat").read_text().rsplit(")", 1)[1].split()[:1]
    ), "HAProxy still running after Ctrl-C"
    assert not _port_open(f"127.0.0.1:{port}")


def test_edge_proxy_on_without_haproxy_names_what_is_missing(monkeypatch):
    from strategist.serving import edge_proxy

    monkeypatch.setattr(edge_proxy.shutil, "which", lambda name: None)
    monkeypatch.setattr(edge_proxy.Path, "is_file", lambda self: False)
    with pytest.raises(edge_proxy.EdgeProxyError, match="apt-get install haproxy"):
        local_stack.wants_edge_proxy("on")
    assert local_stack.wants_edge_proxy("auto") is False
    assert local_stack.wants_edge_proxy("off") is False


@requires_haproxy
def test_serve_stops_with_the_reason_when_the_edge_cannot_take_its_port(checkpoint, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "strategist.cli", "serve", "--checkpoint", str(checkpoint),
                   "--repo", str(tmp_path / "repo"), "--port", str(port), "--backend", "onnxruntime",
                   "--edge-proxy", "on", "--example", str(EXAMPLE)]  # fmt: skip
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "edge proxy did not start" in done.stderr and "Virtual Strategist serving on" not in done.stderr
