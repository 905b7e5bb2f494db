"""Triton's dynamic batcher settings, measured: queue delay, preferred batch sizes, instance count.

    .venv/bin/python -m benchmarks.batcher_sweep

One CPU repository holds the shipped model once per variant (export/triton_config.py ServingSettings,
each config from the generator under its own name; same ONNX, same Python model), one local Triton
(strategist.serving.triton_launcher, the `strategist serve` default backend) serves them all, and
closed-loop gRPC clients (the gateway's tensors, 2 rows per request) drive each variant in turn at
every concurrency, variants alternating per concurrency so that the machine's load falls on all.
The criterion of the issue: throughput must not fall as concurrency grows (16 -> 256).
Writes results/batcher_sweep.{json,md,png} and the README section batcher_sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
from typing import Any

from benchmarks import report, services
from benchmarks.payloads import model_tensors, race_payloads
from benchmarks.triton_load import closed_loop
from export.triton_config import ServingSettings, checkpoint_input_names, render_cpu_config
from strategist.contract import CPU_MODEL_NAME

BASE = ServingSettings()
VARIANTS: dict[str, ServingSettings] = {
    "delay 0 us (default)": BASE,
    "delay 100 us (former default)": dataclasses.replace(BASE, queue_delay_us=100),
    "delay 500 us": dataclasses.replace(BASE, queue_delay_us=500),
    "delay 2000 us": dataclasses.replace(BASE, queue_delay_us=2000),
    "delay 500 us, preferred 16/32": dataclasses.replace(
        BASE, queue_delay_us=500, preferred_batch_sizes=(16, 32)
    ),
    "delay 100 us, 2 instances": dataclasses.replace(BASE, queue_delay_us=100, cpu_instances=2),
    "delay 0 us, 2 instances": dataclasses.replace(BASE, cpu_instances=2),
}


def build_sweep_repository(ckpt: services.Checkpoint, labels: list[str]) -> tuple[Any, dict[str, str]]:
    base_repo = services.build_repository(ckpt)
    repo = services.WORK_DIR / "repo-batcher-sweep"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    inputs = checkpoint_input_names(ckpt.path)
    models = {}
    for k, label in enumerate(labels):
        settings = VARIANTS[label]
        name = f"{CPU_MODEL_NAME}_v{k}"
        shutil.copytree(base_repo / CPU_MODEL_NAME, repo / name)
        (repo / name / "config.pbtxt").write_text(render_cpu_config(settings, inputs, name=name))
        models[label] = name
    return repo, models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)
    command = "python -m benchmarks.batcher_sweep " + " ".join(
        repr(a) if " " in a else a for a in (argv if argv is not None else sys.argv[1:])
    )

    services.WORK_DIR.mkdir(parents=True, exist_ok=True)
    machine = services.machine()
    ckpt = services.checkpoint()
    payloads = race_payloads(32, services.WORK_DIR)
    tensors = [model_tensors(body, checkpoint_input_names(ckpt.path)) for body in payloads.bodies]
    repo, models = build_sweep_repository(ckpt, args.variants)
    rows: list[dict[str, Any]] = []
    with services.local_triton(repo, tuple(models.values())) as triton:
        for concurrency in args.concurrency:
            for label, model in models.items():
                res = asyncio.run(
                    closed_loop(triton.grpc_url, model, tensors, concurrency, args.duration, args.warmup)
                )
                row = {
                    "variant": label,
                    "concurrency": concurrency,
                    "throughput_rps": round(len(res.latency_ms) / res.measured_s, 1),
                    "failures": len(res.failures),
                    **report.summarize(res.latency_ms),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)

    conc = args.concurrency
    lines = [
        f"Machine: {report.machine_line(machine)}.",
        f"Model: {ckpt.description}; Triton Python backend + ONNX Runtime (1 intra-op thread per instance), "
        f"max_batch_size {BASE.max_batch_size}. Closed-loop gRPC clients, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s per point, 2 rows per request, variants alternating per concurrency. "
        f"Command: `{command}`",
        "",
        "| variant | "
        + " | ".join(f"c={c}: req/s, p99 ms" for c in conc)
        + f" | c={conc[-1]} / c={conc[0]} |",
        "|---|" + "---|" * len(conc) + "---:|",
    ]
    for label in models:
        mine = {r["concurrency"]: r for r in rows if r["variant"] == label}
        cells = [
            f"{mine[c]['throughput_rps']:g}, {report.fmt(mine[c]['p99_ms'])}"
            + (f" ({mine[c]['failures']} failed)" if mine[c]["failures"] else "")
            for c in conc
        ]
        first = mine[conc[0]]["throughput_rps"]
        ratio = mine[conc[-1]]["throughput_rps"] / first if first else float("nan")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    png = services.RESULTS_DIR / "batcher_sweep.png"
    _plot(rows, list(models), png, report.machine_line(machine))
    lines += ["", f"![batcher sweep]({png.name})"]
    md = "\n".join(lines)
    result = {"command": command, "machine": machine, "checkpoint": ckpt.description,
              "variants": {k: repr(VARIANTS[k]) for k in models}, "runs": rows}  # fmt: skip
    report.save("batcher_sweep", result, md)
    report.update_readme(
        "batcher_sweep", "### batcher_sweep\n\n" + md.replace(f"]({png.name})", f"](results/{png.name})")
    )
    print(md)
    return 1 if any(r["failures"] for r in rows) else 0


def _plot(rows: list[dict[str, Any]], labels: list[str], path: Any, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label in labels:
        mine = [r for r in rows if r["variant"] == label]
        c = [r["concurrency"] for r in mine]
        axes[0].plot(c, [r["throughput_rps"] for r in mine], "o-", label=label)
        axes[1].plot(c, [r["p99_ms"] for r in mine], "o-", label=label)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("requests/s (2 rows each)")
    axes[1].set_ylabel("p99 latency, ms")
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
