"""Race-session test helpers: tiny served models, a real race replayed in process, a redis-server on a
free port and a gateway subprocess (uvicorn) that a test can kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from export.onnx_export import export_onnx
from helpers.context_models import context_model
from helpers.gateway import API_KEY, AUTH
from helpers.tiny import TINY_OVERRIDES
from strategist.contract import CPU_MODEL_NAME
from strategist.data.context import driver_lap_timings
from strategist.data.fastf1_reader import Race, read_race
from strategist.model import ModelConfig, build_model
from strategist.paths import PROJECT_ROOT
from strategist.serving.race_requests import laps_in_finish_order, live_lap, session_body
from strategist.serving.triton_launcher import free_port

RACE = "01_sakhir"


def real_race(real_races_dir: Path, name: str = RACE) -> Race:
    race_dir = real_races_dir / name
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    return read_race(race_dir)


def tiny_onnx(folder: Path, *, context: bool = False) -> Path:
    """A tiny two-input model (or a three-input one reading the timing context) exported to ONNX."""
    torch.manual_seed(0)
    model = context_model(0) if context else build_model(ModelConfig(**TINY_OVERRIDES)).eval()
    return export_onnx(model, folder / CPU_MODEL_NAME / "1" / "model.onnx")


def feed_laps(race: Race, max_lap: int) -> list[dict[str, Any]]:
    """The lap posts of laps 1..max_lap in the order they finished (what `strategist replay` sends)."""
    timings = {driver: driver_lap_timings(race.driver_laps(driver)) for driver in race.drivers}
    return [live_lap(race, d, lap, timings[d]) for d, lap, _ in laps_in_finish_order(race, max_lap)]


def replay_in_process(client: Any, race: Race, max_lap: int) -> str:
    """Open the race's session on a TestClient and post laps 1..max_lap; returns the session id."""
    body = session_body(race)
    assert client.post("/live/sessions", json=body, headers=AUTH).status_code == 201
    for post in feed_laps(race, max_lap):
        response = client.post(f"/live/sessions/{body['session_id']}/laps", json=post, headers=AUTH)
        assert response.status_code == 200, response.text
    return str(body["session_id"])


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port (no persistence); yields its URL. Skips without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian package redis-server; .ci/run installs it)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    err = process.stderr.read().decode() if process.stderr else ""
                    pytest.skip(f"redis-server did not start: {err[-300:]}")
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


class GatewayProcess:
    """`uvicorn --factory server.main:create_app` on a free port, ONNX Runtime backend, SQLite store."""

    def __init__(self, onnx_path: Path, store: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "STRATEGIST_BACKEND": "onnxruntime",
            "STRATEGIST_ONNX_PATH": str(onnx_path),
            "STRATEGIST_LIVE_SQLITE_PATH": str(store),
            "STRATEGIST_API_KEY": API_KEY,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        args = [sys.executable, "-m", "uvicorn", "--factory", "server.main:create_app"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*args, "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready after {timeout_s} s: {self.log.read_text()[-2000:]}")

    def kill_9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
