"""What a measurement ran on: CPU, cores, memory, Python, load. Every results file (benchmarks and
studies) records it, so a figure can be read against the machine that made it."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def describe_machine() -> dict[str, object]:
    """Cores, CPU model, RAM (GiB), Python version, GPU ("none": nothing here probes one) and the
    load average when called (the machines are shared: a busy start explains a slow figure)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gib = int(first.split()[1]) / 2**20
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "gpu": "none",
        "load_avg_at_start": os.getloadavg(),
    }
