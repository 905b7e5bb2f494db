"""What parsing a raw-telemetry /predict body costs, and what a binary format would save.

    .venv/bin/python -m benchmarks.parse_cost

For the same bodies the load test sends (a simulated race's raw laps), times in one process,
interleaved per body (so machine noise hits every variant alike):
- json_loads:             bytes -> dict (what FastAPI does with the body, stdlib json)
- validate_dict:          PredictRequest.model_validate(dict) (what FastAPI does next)
- json_plus_validate:     both, i.e. the gateway's parse + validation cost today
- validate_json_native:   PredictRequest.model_validate_json(bytes): pydantic-core parses and validates in one pass
- msgpack_plus_validate:  the same body as msgpack, unpacked and validated (a drop-in binary body)
- gateway_binary_decode:  server.binary_format.decode, the gateway's application/vnd.strategist.f32
                          body: decode, every schema check and a PredictRequest ready for preprocess
- raw_float32:            the 30 sample arrays as one float32 block + a small JSON header, decoded with
                          np.frombuffer and range-checked with numpy (what a binary tensor format would cost)
- preprocess:             the Data Engine step after validation (alignment onto 100 steps), for scale.
Writes results/parse_cost.{json,md,png} and the README section parse_cost.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from benchmarks import report, services
from benchmarks.payloads import DEFAULT_RACE_LAPS, race_payloads
from server import binary_format
from server.preprocess import preprocess
from server.schemas import PredictRequest
from strategist import contract
from strategist.limits import CHANNEL_LIMITS


def to_raw_float32(body: dict[str, Any]) -> bytes:
    """Body -> [4-byte header length][JSON header without samples][float32 samples, lap by lap]."""
    header = {k: v for k, v in body.items() if k != "laps"}
    header["n_samples"] = [len(lap["time_s"]) for lap in body["laps"]]
    blocks = []
    for lap in body["laps"]:
        rows = [lap["time_s"], *(lap["channels"][name] for name in contract.CHANNELS)]
        blocks.append(np.asarray(rows, dtype=np.float32).tobytes())
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + b"".join(blocks)


def from_raw_float32(data: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Decode + the vectorised checks the schema does per sample (finite, physical ranges, monotone time)."""
    (n_head,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + n_head])
    offset = 4 + n_head
    laps = []
    for n in header["n_samples"]:
        block = np.frombuffer(data, dtype=np.float32, count=6 * n, offset=offset).reshape(6, n)
        offset += block.nbytes
        if not np.isfinite(block).all() or (np.diff(block[0]) < 0).any():
            raise ValueError("bad samples")
        for row, (low, high) in zip(block[1:], CHANNEL_LIMITS.values(), strict=True):
            if (row < low).any() or (row > high).any():
                raise ValueError("out of range")
        laps.append(block)
    return header, laps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payloads", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20, help="passes over all bodies")
    args = parser.parse_args(argv)

    machine = services.machine()
    payloads = race_payloads(args.payloads, services.WORK_DIR)
    as_json = payloads.encoded()
    as_msgpack = [msgpack.packb(body) for body in payloads.bodies]
    as_raw = [to_raw_float32(body) for body in payloads.bodies]
    as_gateway_binary = [binary_format.encode(body) for body in payloads.bodies]
    parsed = [PredictRequest.model_validate(body) for body in payloads.bodies]

    variants: dict[str, Callable[[int], object]] = {
        "json_loads": lambda i: json.loads(as_json[i]),
        "validate_dict": lambda i: PredictRequest.model_validate(payloads.bodies[i]),
        "json_plus_validate": lambda i: PredictRequest.model_validate(json.loads(as_json[i])),
        "validate_json_native": lambda i: PredictRequest.model_validate_json(as_json[i]),
        "msgpack_plus_validate": lambda i: PredictRequest.model_validate(msgpack.unpackb(as_msgpack[i])),
        "raw_float32": lambda i: from_raw_float32(as_raw[i]),
        "gateway_binary_decode": lambda i: binary_format.decode(as_gateway_binary[i]),
        "preprocess": lambda i: preprocess([parsed[i]], default_race_laps=DEFAULT_RACE_LAPS),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for i in range(len(as_json)):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn(i)
                times[name].append((time.perf_counter() - start) * 1e3)

    sizes = {
        "json": float(np.mean([len(b) for b in as_json]) / 1024),
        "msgpack": float(np.mean([len(b) for b in as_msgpack]) / 1024),
        "raw_float32": float(np.mean([len(b) for b in as_raw]) / 1024),
    }
    summary = {name: report.summarize(values) for name, values in times.items()}
    base = summary["json_plus_validate"]["p50_ms"]
    command = "python -m benchmarks.parse_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"Machine: {report.machine_line(machine)}.",
        f"Bodies: {len(as_json)} from {payloads.source}; mean size JSON {sizes['json']:.1f} KiB, "
        f"msgpack {sizes['msgpack']:.1f} KiB, raw float32 {sizes['raw_float32']:.1f} KiB. "
        f"{args.repeats} passes, variants interleaved per body. Command: `{command}`",
        "",
        "| step | p50 ms | p99 ms | p50 vs json_plus_validate |",
        "|---|---:|---:|---:|",
    ]
    for name, s in summary.items():
        ratio = f"{s['p50_ms'] / base:.2f}x" if base else "-"  # type: ignore[operator]
        lines.append(f"| {name} | {report.fmt(s['p50_ms'], 3)} | {report.fmt(s['p99_ms'], 3)} | {ratio} |")
    result = {"command": command, "machine": machine, "payload_source": payloads.source,
              "sizes_kib": sizes, "summary": summary}  # fmt: skip
    plot_path = services.RESULTS_DIR / "parse_cost.png"
    _plot(summary, plot_path, report.machine_line(machine))
    lines += ["", f"![parse cost]({plot_path.name})"]
    md = "\n".join(lines)
    report.save("parse_cost", result, md)
    report.update_readme(
        "parse_cost", "### parse_cost\n\n" + md.replace("](parse_cost.png)", "](results/parse_cost.png)")
    )
    print(md)
    return 0


def _plot(summary: dict[str, dict[str, Any]], path: Any, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [summary[n]["p50_ms"] for n in names], 0.4, label="p50")
    ax.barh(y + 0.2, [summary[n]["p99_ms"] for n in names], 0.4, label="p99")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("ms per body")
    ax.legend()
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
