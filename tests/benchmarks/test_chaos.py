"""benchmarks.chaos: its table is built from the committed result, and the process census it uses to
count orphans finds a process by the marker on its command line (and stops finding it once gone)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from benchmarks import chaos
from benchmarks.services import RESULTS_DIR


def test_markdown_of_the_committed_result_has_every_figure():
    result = json.loads((RESULTS_DIR / "chaos.json").read_text())
    table = chaos.markdown(result, "test machine", "python -m benchmarks.chaos")
    assert table.count("\n| ") == 24  # header row + 23 figures
    seen = result["overload"]["gateway_metrics"]  # the gateway's own count of what it refused
    assert f'"shed_in_flight": {seen["shed_in_flight"]}' in table
    assert "goodput bound at 4x: about" in table
    assert f"{result['kill']['time_back_to_200_s']} s" in table
    assert f"| overload: 5xx other than the deliberate 503 | {result['overload']['other_5xx']} |" in table


def test_stack_processes_finds_a_process_by_its_marker_until_it_exits():
    marker = f"chaos-marker-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        found: list[int] = []
        deadline = time.monotonic() + 10.0
        while not found and time.monotonic() < deadline:  # the new command line may show a moment late
            found = [pid for pid, _ in chaos.stack_processes(marker)]
            time.sleep(0.05)
        assert found == [child.pid]
        assert chaos.group_members(child.pid) == []  # not a group leader
    finally:
        child.kill()
        child.wait(timeout=10)
    assert chaos.stack_processes(marker) == []


def test_the_goodput_is_also_given_against_both_saturated_runs():
    result = json.loads((RESULTS_DIR / "chaos_ablation" / "full_amd_dec08_run2.json").read_text())
    over = result["overload"]
    table = chaos.markdown(result, "test machine", "python -m benchmarks.chaos")
    mean = (result["baseline"]["saturated"]["throughput_rps"] + over["saturated_after_rps"]) / 2
    assert over["goodput_vs_saturated_mean"] == round(over["goodput_rps"] / mean, 2)
    assert f"| {over['saturated_after_rps']} req/s; {over['goodput_vs_saturated_mean']}x |" in table
