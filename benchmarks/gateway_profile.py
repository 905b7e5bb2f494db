"""Where one /predict request's gateway CPU goes, in the running gateway, before and after the lean
request path: a sampling profile (py-spy) of the live gateway process under a steady load.

    .venv/bin/python -m benchmarks.gateway_profile            # ~1.5 min

One local Triton and one gateway per variant (benchmarks.hot_path's "before": pydantic decoder +
FastAPI routes; "after": the lean path), each loaded in turn at --rate raw /predict requests/s by
benchmarks.http_load (its own process). After the warm-up, py-spy samples the gateway for
--duration s (`--nonblocking`: the process is not paused; idle threads are not sampled, so the
samples are where its CPU went). Each sample's stack is put in the stage of its innermost frame
that belongs to one (STAGES: numpy called by the decoder is decode time), and the gateway's CPU ms
per request (from /proc over the same window) is split by those shares.

Writes results/<name>.{json,md,png} and the README section <name>; the PNG is the picture
docs/serving.md shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import hot_path, report, services
from strategist.paths import PROJECT_ROOT

# stage -> fragments of a py-spy frame ("function (path:line)"); the innermost frame of a stack that
# holds one of them decides its stage. Checked in this order for each frame.
STAGES: dict[str, tuple[str, ...]] = {
    "decode + validation": ("server/decode.py", "server/lap_block.py", "server/binary_format.py",
                            "server/schemas.py", "pydantic", "msgspec"),
    "preprocess (Data Engine)": ("server/preprocess.py", "strategist/data/", "strategist/limits.py"),
    "postprocess + response": ("server/postprocess.py", "server/responses.py", "json/encoder.py"),
    "Triton client (gRPC)": ("tritonclient", "grpc", "server/triton_backend.py", "server/triton_pool.py"),
    "metrics": ("prometheus_client", "server/metrics.py"),
    "gateway framework (middleware, routes)": ("server/", "fastapi", "starlette"),
    "HTTP server (uvicorn, httptools)": ("uvicorn", "httptools", "h11"),
    "event loop (asyncio, uvloop)": ("asyncio", "uvloop"),
}  # fmt: skip
OTHER = "other"
VARIANTS = ("before", "after")


def stage_of(stack: str) -> str:
    """The stage of one collapsed stack ("root;...;leaf"), from its innermost frame that has one."""
    for frame in reversed(stack.split(";")):
        for stage, fragments in STAGES.items():
            if any(fragment in frame for fragment in fragments):
                return stage
    return OTHER


def stage_shares(raw: str) -> tuple[dict[str, float], int]:
    """py-spy --format raw text -> (share of samples per stage, total samples)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack)] += int(count)
    total = sum(counts.values())
    return ({stage: n / total for stage, n in counts.items()} if total else {}), total


def profile_variant(
    target: hot_path.Target, bodies: list[Path], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    raw_path = work / f"pyspy-{target.name}.txt"
    load_out = work / f"load-{target.name}.json"
    command = [sys.executable, "-m", "benchmarks.http_load", "--url", target.url + "/predict",
               "--rate", str(args.rate), "--duration", str(args.duration + 1.0), "--warmup", str(args.warmup),
               "--out", str(load_out)]  # fmt: skip
    for body in bodies:
        command += ["--body", str(body)]
    load = subprocess.Popen(command, cwd=PROJECT_ROOT)
    try:
        time.sleep(args.warmup + 0.5)
        cpu_before = services.group_cpu_s(target.pgid)
        started = time.monotonic()
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(target.pgid),
               "--duration", str(int(args.duration)), "--rate", str(args.sample_rate), "--nonblocking",
               "--format", "raw", "--output", str(raw_path)]  # fmt: skip
        subprocess.run(spy, check=True, capture_output=True, timeout=args.duration + 60)
        cpu_s = services.group_cpu_s(target.pgid) - cpu_before
        window_s = time.monotonic() - started
    finally:
        load.wait(timeout=args.duration + args.warmup + 120)
    result = json.loads(load_out.read_text())
    shares, samples = stage_shares(raw_path.read_text())
    requests = args.rate * window_s  # the load is open loop at a fixed rate
    cpu_ms = cpu_s * 1000.0 / requests
    return {
        "gateway_cpu_ms_per_request": round(cpu_ms, 3),
        "samples": samples,
        "stage_ms_per_request": {stage: round(share * cpu_ms, 3) for stage, share in sorted(shares.items())},
        "statuses": result["statuses"],
        "latency": report.summarize([s[1] for s in result["samples"] if s[2] == 200]),
    }


def plot(results: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [*STAGES, OTHER]
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for row, result in enumerate(results.values()):
        left = 0.0
        for i, stage in enumerate(stages):
            width = result["stage_ms_per_request"].get(stage, 0.0)
            ax.barh(row, width, left=left, color=colors[i % len(colors)], label=stage if row == 0 else None)
            if width > 0.25:
                ax.text(left + width / 2, row, f"{width:.2f}", ha="center", va="center", fontsize=7)
            left += width
    ax.set_yticks(
        range(len(results)), [f"{v}\n{r['gateway_cpu_ms_per_request']:.2f} ms" for v, r in results.items()]
    )
    ax.invert_yaxis()
    ax.set_xlabel("gateway CPU ms per /predict request (py-spy samples x measured CPU)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="raw /predict requests/s (open loop)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds profiled per variant")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument("--payloads", type=int, default=16)
    parser.add_argument("--name", default="gateway_profile")
    parser.add_argument("--out", type=Path, default=services.RESULTS_DIR)
    args = parser.parse_args(argv)

    work = services.WORK_DIR / "gateway_profile"
    work.mkdir(parents=True, exist_ok=True)
    scenario = services.scenario(args.payloads)
    bodies, _ = hot_path.write_bodies(work, scenario.payloads)
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        triton = stack.enter_context(services.local_triton(scenario.repo))
        for variant in VARIANTS:
            env, workers = hot_path.VARIANT_ENV[variant]
            server = stack.enter_context(
                services.gateway(triton, workers=workers, env=env, name=f"gateway-{variant}")
            )
            target = hot_path.Target(variant, server.url, server.pgid)
            print(f"profiling {variant} for {args.duration:g} s at {args.rate:g} req/s", file=sys.stderr)
            results[variant] = profile_variant(target, bodies, args, work)

    command = "python -m benchmarks.gateway_profile " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = report.machine_line(scenario.machine)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{args.name}.png"
    plot(results, png, f"{machine}; {args.rate:g} req/s raw /predict")
    stages = [*STAGES, OTHER]
    lines = [
        f"Machine: {machine}. Served: {scenario.checkpoint.description}. Load: {args.rate:g} raw /predict "
        f"requests/s for {args.duration:g} s per variant (benchmarks.http_load); py-spy at {args.sample_rate} "
        f"samples/s, nonblocking. Command: `{command.strip()}`",
        "",
        "| stage (gateway CPU ms per request) | " + " | ".join(results) + " |",
        "|---|" + "---:|" * len(results),
        *(f"| {stage} | " + " | ".join(f"{r['stage_ms_per_request'].get(stage, 0.0):.2f}" for r in results.values()) + " |"
          for stage in stages),
        "| **all (from /proc)** | " + " | ".join(f"**{r['gateway_cpu_ms_per_request']:.2f}**" for r in results.values()) + " |",
        "| py-spy samples | " + " | ".join(str(r["samples"]) for r in results.values()) + " |",
        "| latency p50 / p99 ms | " + " | ".join(f"{report.fmt(r['latency']['p50_ms'])} / {report.fmt(r['latency']['p99_ms'])}" for r in results.values()) + " |",
        "",
        f"![gateway profile]({png.name})",
    ]  # fmt: skip
    md = "\n".join(lines)
    report.save(
        args.name, {"command": command, "machine": scenario.machine, "results": results}, md, out_dir=args.out
    )
    if args.out == services.RESULTS_DIR:
        report.update_readme(
            args.name, f"### {args.name}\n\n" + md.replace(f"]({png.name})", f"](results/{png.name})")
        )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
