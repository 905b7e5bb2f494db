"""Shared by every benchmark: latency summaries, result files and the README sections they fill."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.services import RESULTS_DIR

README = Path(__file__).resolve().parent / "README.md"


def summarize(latency_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max and mean of exact per-request latencies (ms); None entries when empty."""
    if not latency_ms:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    values = np.asarray(latency_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "n": int(values.size),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(values.max()), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['nproc']} CPU cores ({machine['cpu']}), {machine['ram_gib']} GiB RAM, no GPU, "
        f"Python {machine['python']}; load average at start {', '.join(f'{x:.2f}' for x in machine['load_avg_at_start'])}"
    )


def save(name: str, payload: dict[str, Any], markdown: str, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write <out_dir>/<name>.json and <out_dir>/<name>.md; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path = out_dir / f"{name}.md"
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def update_readme(section: str, markdown: str) -> None:
    """Replace the text between `<!-- <section>:begin -->` and `<!-- <section>:end -->` in the README."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = README.read_text() if README.exists() else ""
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    README.write_text(text)
