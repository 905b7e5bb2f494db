"""Model level: PyTorch eager vs ONNX Runtime per batch size, and Triton's dynamic batcher on vs off.

    .venv/bin/python -m benchmarks.model_level

1. Runs benchmarks/model_latency.py (PyTorch eager vs ONNX Runtime, engines alternating call by
   call) at batch 1..256 on the same checkpoint the load test serves; keeps its table and JSON.
2. Builds one CPU repository holding the model twice, identical except that the second copy has no
   `dynamic_batching` block, starts one Triton serving both, and drives each with closed-loop gRPC
   clients (the gateway's tensors: 2 rows per request, as raced + clean air) at concurrency
   1, 4, 16, 64, the two models alternating per concurrency.
Writes results/model_latency.{json,md}, results/triton_batching.{json,md,png} and both README sections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import report, services
from benchmarks.payloads import model_tensors, race_payloads
from benchmarks.triton_load import closed_loop
from export.triton_config import checkpoint_input_names
from strategist.contract import CPU_MODEL_NAME

MODEL_LATENCY = Path(__file__).resolve().parent / "model_latency.py"


def run_model_latency(
    ckpt: services.Checkpoint, batches: list[int], repeats: int, threads: int, name: str
) -> str:
    json_path = services.RESULTS_DIR / f"{name}.json"
    command = [sys.executable, str(MODEL_LATENCY), "--batches", *map(str, batches),
               "--repeats", str(repeats), "--threads", str(threads), "--json", str(json_path)]  # fmt: skip
    if (ckpt.path / "config.json").is_file():
        command += ["--checkpoint", str(ckpt.path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    shown = " ".join(["python benchmarks/model_latency.py", *command[2:]]).replace(
        str(services.PROJECT_ROOT) + "/", ""
    )
    md = f"Model: {ckpt.description}. Command: `{shown}`\n\n{done.stdout.strip()}"
    png = services.RESULTS_DIR / f"{name}.png"
    plot_model_latency(json_path, png)
    md += f"\n\n![PyTorch eager vs ONNX Runtime]({png.name})"
    (services.RESULTS_DIR / f"{name}.md").write_text(md + "\n")
    return md.replace(f"]({png.name})", f"](results/{png.name})")


def plot_model_latency(json_path: Path, path: Path) -> None:
    """p50 latency and samples/s per batch size and engine, from model_latency.py's JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(json_path.read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for engine, per_batch in data["results"].items():
        batches = sorted(per_batch, key=int)
        x = [int(b) for b in batches]
        axes[0].plot(x, [per_batch[b]["p50_ms"] for b in batches], "o-", label=f"{engine} p50")
        axes[0].plot(x, [per_batch[b]["p99_ms"] for b in batches], "x:", label=f"{engine} p99")
        axes[1].plot(x, [per_batch[b]["samples_per_s"] for b in batches], "o-", label=engine)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("ms per call")
    axes[1].set_ylabel("samples/s at p50")
    fig.suptitle(f"{data['machine']}; threads {data['threads']}; {data['weights']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("on", "off"):
        mine = [r for r in rows if r["dynamic_batching"] == mode]
        conc = [r["concurrency"] for r in mine]
        axes[0].plot(conc, [r["throughput_rps"] for r in mine], "o-", label=f"batching {mode}")
        axes[1].plot(conc, [r["p50_ms"] for r in mine], "o--", label=f"batching {mode} p50")
        axes[1].plot(conc, [r["p99_ms"] for r in mine], "o-", label=f"batching {mode} p99")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("requests/s (2 rows each)")
    axes[1].set_ylabel("latency, ms")
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--model-threads",
        type=int,
        default=0,
        help="torch / ORT threads for part 1 (0 = all CPUs); results get a _threads<N> suffix",
    )
    parser.add_argument("--skip-model-latency", action="store_true", help="run part 2 only")
    parser.add_argument("--skip-batching", action="store_true", help="run part 1 only")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.model_level " + " ".join(argv if argv is not None else sys.argv[1:])

    services.WORK_DIR.mkdir(parents=True, exist_ok=True)
    machine = services.machine()
    ckpt = services.checkpoint()
    if not args.skip_model_latency:
        name = "model_latency" + (f"_threads{args.model_threads}" if args.model_threads else "")
        md = run_model_latency(ckpt, args.batches, args.repeats, args.model_threads, name)
        report.update_readme(name, f"### {name}\n\n" + md)
        print(md, flush=True)
    if args.skip_batching:
        return 0

    payloads = race_payloads(32, services.WORK_DIR)
    tensors = [model_tensors(body, checkpoint_input_names(ckpt.path)) for body in payloads.bodies]
    repo = services.build_repository(ckpt, with_unbatched_copy=True)
    models = {"on": CPU_MODEL_NAME, "off": services.NO_BATCHING_MODEL}
    rows: list[dict[str, Any]] = []
    with services.local_triton(repo, tuple(models.values())) as triton:
        for concurrency in args.concurrency:
            for mode, model in models.items():
                res = asyncio.run(
                    closed_loop(triton.grpc_url, model, tensors, concurrency, args.duration, args.warmup)
                )
                row = {
                    "dynamic_batching": mode,
                    "concurrency": concurrency,
                    "throughput_rps": round(len(res.latency_ms) / res.measured_s, 1),
                    "failures": len(res.failures),
                    **report.summarize(res.latency_ms),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)

    lines = [
        f"Machine: {report.machine_line(machine)}.",
        f"Model: {ckpt.description}. Triton (Python backend + ONNX Runtime, 1 instance) serving the same "
        "model twice, differing only in `dynamic_batching` (max_queue_delay 100 us when on). Closed-loop "
        f"gRPC clients, {args.warmup:g} s warm-up + {args.duration:g} s per point; each request carries 2 rows. "
        f"Command: `{command}`",
        "",
        "| concurrency | batching on: req/s, p50 / p99 ms | batching off: req/s, p50 / p99 ms | throughput on/off |",
        "|---:|---|---|---:|",
    ]
    for concurrency in args.concurrency:
        on = next(r for r in rows if r["concurrency"] == concurrency and r["dynamic_batching"] == "on")
        off = next(r for r in rows if r["concurrency"] == concurrency and r["dynamic_batching"] == "off")
        ratio = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] else float("nan")
        cells = [
            f"{r['throughput_rps']:g}, {report.fmt(r['p50_ms'])} / {report.fmt(r['p99_ms'])}"
            + (f" ({r['failures']} failed)" if r["failures"] else "")
            for r in (on, off)
        ]
        lines.append(f"| {concurrency} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    png = services.RESULTS_DIR / "triton_batching.png"
    plot(rows, png, f"Triton dynamic batching on vs off: {report.machine_line(machine)}")
    lines += ["", f"![dynamic batching]({png.name})"]
    md = "\n".join(lines)
    result = {"command": command, "machine": machine, "checkpoint": ckpt.description,
              "payload_source": payloads.source, "runs": rows}  # fmt: skip
    report.save("triton_batching", result, md)
    report.update_readme(
        "triton_batching", "### triton_batching\n\n" + md.replace(f"]({png.name})", f"](results/{png.name})")
    )
    print(md)
    return 1 if any(r["failures"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
