"""The load benchmark as a CI gate: a short real run passes a generous budget, an impossible one fails.

Each test starts the whole chain (local Triton on a CPU repository, the gateway under uvicorn) and
drives it with locust at a fixed rate, exactly as `python -m benchmarks.load` does. Skipped where
the bundled tritonserver cannot run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.skips import requires_triton

from strategist.paths import PROJECT_ROOT

pytestmark = requires_triton


def _run_load(out: Path, *extra: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "benchmarks.load", "--targets", "gateway", "--rates", "20",
               "--payloads", "8", "--out", str(out), *extra]  # fmt: skip
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.timeout(150)
def test_short_load_run_meets_a_generous_budget(tmp_path):
    done = _run_load(tmp_path, "--duration", "8", "--warmup", "2", "--p99-budget-ms", "2000", "--name", "ci")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads((tmp_path / "ci.json").read_text())
    (run,) = result["runs"]
    assert run["failures"] == 0
    assert run["n"] > 0 and run["p99_ms"] <= 2000
    # The rate was held: constant arrival rate, verified from what was actually sent.
    assert run["achieved_rps"] >= 0.8 * run["offered_rps"]
    assert (tmp_path / "ci.png").stat().st_size > 0
    assert "| 20 |" in (tmp_path / "ci.md").read_text()


@pytest.mark.timeout(150)
def test_impossible_budget_exits_non_zero(tmp_path):
    done = _run_load(tmp_path, "--duration", "2", "--warmup", "1", "--p99-budget-ms", "0.001", "--name", "ci")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "p99 above the 0.001 ms budget" in done.stderr
