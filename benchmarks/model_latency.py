"""Model latency: PyTorch eager FP32 vs ONNX Runtime (CPU), side by side in one run.

    .venv/bin/python benchmarks/model_latency.py [--checkpoint DIR] [--batches 1 8 64 256] [--repeats 50]

Without --checkpoint the default full-size ModelConfig with random weights is timed (timing does not
depend on the weights). Per batch size the two engines alternate call by call, so machine noise hits
both alike; reported are p50 / p99 of exact per-call times and samples/s at the p50. Writes a
markdown table to stdout and, with --json, the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpus}-core CPU ({model}), no GPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per engine and batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch and ORT threads (0 = all CPUs)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from export.onnx_export import export_onnx, ort_session, run_ort, run_torch
    from export.sample_inputs import realistic_inputs, realistic_stats
    from strategist.model import ModelConfig, build_model, count_parameters
    from strategist.model.core import StrategistModel

    cpus = len(os.sched_getaffinity(0))
    threads = args.threads or cpus
    torch.set_num_threads(threads)
    if args.checkpoint:
        from export.repository import load_model_for_export

        model, cfg, _ = load_model_for_export(args.checkpoint)
        weights = f"checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        cfg = ModelConfig()
        fresh: StrategistModel = build_model(cfg)  # type: ignore[assignment]
        fresh.set_stats(realistic_stats())
        model = fresh.eval()
        weights = "default ModelConfig, random weights"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx")
        session = ort_session(onnx_path, threads=threads)

    engines = {
        "PyTorch eager FP32": lambda inputs: run_torch(model, inputs),
        "ONNX Runtime FP32 (CPU)": lambda inputs: run_ort(session, inputs),
    }
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in engines}
    progress = tqdm(total=len(args.batches) * (args.repeats + args.warmup), desc="timing", unit="round")
    for batch in args.batches:
        inputs = realistic_inputs(batch, cfg.input_names, seed=batch)
        times: dict[str, list[float]] = {name: [] for name in engines}
        for round_index in range(args.warmup + args.repeats):
            for name, run in engines.items():  # alternate: same noise for both
                started = time.perf_counter()
                run(inputs)
                elapsed = time.perf_counter() - started
                if round_index >= args.warmup:
                    times[name].append(elapsed)
            progress.update(1)
        for name, samples in times.items():
            ms = np.array(samples) * 1e3
            p50 = float(np.percentile(ms, 50))
            results[name][batch] = {
                "p50_ms": p50,
                "p99_ms": float(np.percentile(ms, 99)),
                "samples_per_s": batch / (p50 / 1e3),
            }
    progress.close()

    machine = _machine()
    print(f"\nMachine: {machine}; torch {torch.__version__}, threads {threads}")
    print(
        f"Model: {weights}, {count_parameters(model) / 1e6:.2f} M parameters; {args.repeats} timed calls each\n"
    )
    print("| batch | engine | p50 ms | p99 ms | samples/s | ORT speed-up (p50) |")
    print("|---:|---|---:|---:|---:|---:|")
    torch_name, ort_name = list(engines)
    for batch in args.batches:
        ratio = results[torch_name][batch]["p50_ms"] / results[ort_name][batch]["p50_ms"]
        for name in engines:
            r = results[name][batch]
            speedup = f"{ratio:.2f}x" if name == ort_name else ""
            print(
                f"| {batch} | {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['samples_per_s']:.0f} | {speedup} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"machine": machine, "weights": weights, "threads": threads, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
