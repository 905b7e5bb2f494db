"""A gateway killed (SIGKILL) mid-replay and started again on the same SQLite store loses no lap:
`strategist replay` keeps retrying, the session takes the rest of the race, and every lap of the
replayed laps is stored exactly once and the field is predicted again after the restart."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from helpers.gateway import API_KEY
from helpers.live import RACE, GatewayProcess, tiny_onnx

from strategist.data.fastf1_reader import read_race
from strategist.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
LAPS = 4


def test_kill_9_mid_replay_loses_no_lap(real_races_dir, tmp_path):
    race_dir = real_races_dir / RACE
    if not (race_dir / "telemetry").is_dir():
        pytest.skip(f"{race_dir} has no telemetry/")
    race = read_race(race_dir)
    expected = {
        (d, int(n)) for d, n in zip(race.laps["Driver"], race.laps["LapNumber"], strict=True) if n <= LAPS
    }
    gateway = GatewayProcess(tiny_onnx(tmp_path), tmp_path / "sessions.sqlite", tmp_path / "gateway.log")
    gateway.start()
    command = [
        sys.executable,
        "-m",
        "strategist.cli",
        "replay",
        "--race",
        str(race_dir),
        "--url",
        gateway.url,
    ]
    command += [
        "--laps",
        str(LAPS),
        "--speed",
        "0",
        "--retry-s",
        "120",
        "--no-progress",
        "--api-key",
        API_KEY,
    ]
    replay = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=gateway.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        laps_url = f"{gateway.url}/live/sessions/{RACE}/laps"
        deadline = time.monotonic() + 120
        stored: list = []
        while len(stored) < len(expected) // 3:  # kill it a third of the way in
            assert time.monotonic() < deadline and replay.poll() is None, (
                replay.stdout.read() if replay.stdout else ""
            )
            time.sleep(0.2)
            try:
                stored = httpx.get(laps_url, timeout=5).json()
            except (httpx.TransportError, ValueError):
                stored = []
        gateway.kill_9()
        time.sleep(1.0)  # the replay now meets a closed port and retries
        gateway.start()
        out, _ = replay.communicate(timeout=300)
        assert replay.returncode == 0, out
        assert " 0 retries" not in out, out  # the kill did land mid-replay
        assert f"race view: {gateway.url}/live/{RACE}" in out
        stored = httpx.get(laps_url, timeout=5).json()
        keys = [(s["car"], s["lap_number"]) for s in stored]
        assert len(keys) == len(set(keys)), "a lap is stored twice"
        assert set(keys) == expected
        state = httpx.get(f"{gateway.url}/live/sessions/{RACE}", timeout=10).json()
        assert state["laps_ingested"] == len(expected)
        assert all(row["next_lap"] is not None and row["next_lap"]["lap"] == LAPS for row in state["cars"])
    finally:
        if replay.poll() is None:
            replay.kill()
        gateway.stop()
