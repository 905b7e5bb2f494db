"""Fixed-arrival-rate load on the gateway, on Triton directly, and on the in-process PyTorch peer.

    .venv/bin/python -m benchmarks.load                                  # full sweep, all three targets
    .venv/bin/python -m benchmarks.load --targets gateway --rates 50 --duration 15 --warmup 3 \
        --p99-budget-ms 1000 --name load-ci                              # the CI variant

Starts everything itself: a checkpoint (shipped, else freshly initialised default size), a CPU model
repository built from it, a local Triton, the gateway (uvicorn subprocess, Triton backend) and the
peer (uvicorn subprocess, PyTorch in-process). Per rate the targets run one after the other, so
they see the same machine state. Gateway and peer get the same JSON bodies through locust
(benchmarks/locustfile.py); Triton gets those bodies' tensors (with the clean-air row) over
gRPC from an asyncio generator (benchmarks/triton_load.py).

Exit status 1 when any request fails, or, with --p99-budget-ms, when any target's p99 at any rate is
above the budget. Writes results/<name>.json, .md, .png and the README section <name>.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, services
from benchmarks.payloads import model_tensors, race_payloads
from benchmarks.triton_load import open_loop
from export.triton_config import ServingSettings, checkpoint_input_names
from strategist.contract import CPU_MODEL_NAME

TARGETS = ("gateway", "triton", "peer")
HELD_P99_MS = 50.0  # "held": p99 within this, no failures, and >= 95 % of the offered rate achieved
TARGET_P99_AT_100_MS = 15.0
TARGET_OVERHEAD_P50_MS = 1.5
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def _rusage_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def users_for(rate: float) -> int:
    # Each user may take up to 1/(rate/users) s per request before the total rate sags: with
    # rate/5 users that is 200 ms, far above any latency this service is allowed to have.
    return max(4, math.ceil(rate / 5))


def run_locust(
    url: str, rate: float, args: argparse.Namespace, payload_file: Path, out_file: Path
) -> dict[str, Any]:
    users = users_for(rate)
    env = {
        **os.environ,
        "BENCH_PAYLOADS": str(payload_file),
        "BENCH_RATE": str(rate),
        "BENCH_USERS": str(users),
        "BENCH_WARMUP_S": str(args.warmup),
        "BENCH_OUT": str(out_file),
    }
    if args.p99_budget_ms is not None:
        env["BENCH_P99_BUDGET_MS"] = str(args.p99_budget_ms)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(users), "--run-time", f"{args.warmup + args.duration:g}s",
        "--host", url, "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    out_file.unlink(missing_ok=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=args.warmup + args.duration + 90)  # fmt: skip
    if not out_file.exists():
        raise RuntimeError(f"locust wrote no samples (exit {done.returncode}):\n{done.stderr[-3000:]}")
    samples: dict[str, Any] = json.loads(out_file.read_text())
    samples["exit_code"] = done.returncode
    samples["users"] = users
    return samples


def summarise_run(target: str, rate: float, latency: list[float], failures: list[str], measured_s: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    summary = report.summarize(latency)
    achieved = (len(latency) + len(failures)) / measured_s if measured_s > 0 else 0.0
    held = (
        not failures
        and summary["p99_ms"] is not None
        and summary["p99_ms"] <= HELD_P99_MS  # type: ignore[operator]
        and achieved >= 0.95 * rate
    )
    return {
        "target": target,
        "offered_rps": rate,
        "achieved_rps": round(achieved, 1),
        "failures": len(failures),
        "failure_examples": failures[:3],
        "held_p99_50ms": held,
        **summary,
        **(extra or {}),
    }


def gateway_breakdown(samples: dict[str, Any]) -> dict[str, Any]:
    """The gateway's own stage timings, and end-to-end time minus its Triton call, per request."""
    server = np.asarray(samples.get("server_ms") or [], dtype=np.float64)
    latency = np.asarray(samples["latency_ms"], dtype=np.float64)
    if server.size == 0 or len(server) != len(latency):
        return {}
    outside_triton = latency - server[:, 1]
    return {
        "preprocess_p50_ms": round(float(np.median(server[:, 0])), 3),
        "predict_p50_ms": round(float(np.median(server[:, 1])), 3),
        "postprocess_p50_ms": round(float(np.median(server[:, 2])), 3),
        "outside_triton_call_p50_ms": round(float(np.median(outside_triton)), 3),
        "outside_triton_call_p99_ms": round(float(np.percentile(outside_triton, 99)), 3),
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for target in TARGETS:
        mine = [r for r in rows if r["target"] == target and r["p50_ms"] is not None]
        if not mine:
            continue
        rates = [r["offered_rps"] for r in mine]
        axes[0].plot(rates, [r["p50_ms"] for r in mine], "o--", label=f"{target} p50")
        axes[0].plot(rates, [r["p99_ms"] for r in mine], "o-", label=f"{target} p99")
        axes[1].plot(rates, [r["achieved_rps"] for r in mine], "o-", label=target)
    rates = sorted({r["offered_rps"] for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.minorticks_off()
        ax.set_xlabel("offered rate, requests/s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency, ms")
    axes[0].axhline(HELD_P99_MS, color="grey", lw=0.8)
    axes[0].axhline(TARGET_P99_AT_100_MS, color="grey", lw=0.8, ls=":")
    axes[1].plot([rates[0], rates[-1]], [rates[0], rates[-1]], color="grey", lw=0.8, label="offered")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("achieved, requests/s")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def highest_held(rows: list[dict[str, Any]], target: str) -> float | None:
    held = [r["offered_rps"] for r in rows if r["target"] == target and r["held_p99_50ms"]]
    return max(held) if held else None


def markdown(result: dict[str, Any]) -> str:
    rows = result["runs"]
    targets = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    lines = [
        f"Machine: {report.machine_line(result['machine'])}.",
        f"Model: {result['checkpoint']}. Payloads: {result['payload_source']} "
        f"({result['n_payloads']} raw-telemetry bodies, mean {result['mean_body_kib']:.1f} KiB).",
        f"Each rate: {result['warmup_s']:g} s warm-up (not recorded) + {result['duration_s']:g} s measured. "
        f"Command: `{result['command']}`",
        "",
        "| offered req/s | " + " | ".join(f"{t} p50 / p99 ms (achieved req/s)" for t in targets) + " |",
        "|---:|" + "---|" * len(targets),
    ]
    for rate in result["rates"]:
        cells = []
        for t in targets:
            r = next((x for x in rows if x["target"] == t and x["offered_rps"] == rate), None)
            if r is None:
                cells.append("-")
                continue
            flag = "" if r["held_p99_50ms"] else " ✗"
            fails = f", {r['failures']} failed" if r["failures"] else ""
            cells.append(
                f"{report.fmt(r['p50_ms'])} / {report.fmt(r['p99_ms'])} ({r['achieved_rps']:g}{fails}){flag}"
            )
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("✗ = not held (p99 > 50 ms, a failure, or < 95 % of the offered rate achieved).")
    gw = [r for r in rows if r["target"] == "gateway"]
    if gw and any("triton" == r["target"] for r in rows):
        lines += [
            "",
            "Gateway cost: gateway minus direct Triton at the same rate (end-to-end, different load generators: "
            "locust for the gateway, asyncio gRPC for Triton), and from the gateway's own stage timings "
            "(end-to-end minus its Triton call, per request).",
            "",
            "| offered req/s | p50 diff ms | p99 diff ms | gateway preprocess p50 ms | "
            "end-to-end minus Triton call p50 / p99 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in gw:
            tr = next(
                (x for x in rows if x["target"] == "triton" and x["offered_rps"] == r["offered_rps"]), None
            )
            if tr is None or r["p50_ms"] is None or tr["p50_ms"] is None:
                continue
            lines.append(
                f"| {r['offered_rps']:g} | {r['p50_ms'] - tr['p50_ms']:.2f} | {r['p99_ms'] - tr['p99_ms']:.2f} | "
                f"{report.fmt(r.get('preprocess_p50_ms'))} | {report.fmt(r.get('outside_triton_call_p50_ms'))} / "
                f"{report.fmt(r.get('outside_triton_call_p99_ms'))} |"
            )
    lines += [
        "",
        "CPU per request (ms of CPU time of each party over the run / requests sent; "
        "`cpu_ms_per_request` in the JSON): what fills the 2 cores.",
        "",
        "| offered req/s | target | gateway | Triton (server + Python-backend stub) | peer | load generator |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = r.get("cpu_ms_per_request", {})
        cells = [report.fmt(cpu.get(k)) for k in ("gateway", "triton", "peer", "load_generator")]
        lines.append(f"| {r['offered_rps']:g} | {r['target']} | " + " | ".join(cells) + " |")
    if result.get("targets"):
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    lines.append("")
    lines.append(f"![latency and achieved rate]({result['png']})")
    return "\n".join(lines)


def judge_targets(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    def row(target: str, rate: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["target"] == target and r["offered_rps"] == rate), None)

    out: list[dict[str, str]] = []
    at100 = row("gateway", 100)
    if at100 is not None and at100["p99_ms"] is not None:
        met = at100["p99_ms"] <= TARGET_P99_AT_100_MS and not at100["failures"]
        out.append({"target": "gateway p99 <= 15 ms at 100 req/s", "measured": f"{at100['p99_ms']:.2f} ms",
                    "met": "yes" if met else "**no**"})  # fmt: skip
    diffs = [
        (g["offered_rps"], g["p50_ms"] - t["p50_ms"])
        for g in rows
        if g["target"] == "gateway" and g["p50_ms"] is not None
        for t in [row("triton", g["offered_rps"])]
        if t is not None and t["p50_ms"] is not None and g["held_p99_50ms"]
    ]
    if diffs:
        worst = max(d for _, d in diffs)
        out.append({"target": "gateway overhead p50 <= 1.5 ms over direct Triton (rates the gateway held)",
                    "measured": ", ".join(f"{d:.2f} ms @ {r:g}" for r, d in diffs),
                    "met": "yes" if worst <= TARGET_OVERHEAD_P50_MS else "**no**"})  # fmt: skip
    gw, peer = highest_held(rows, "gateway"), highest_held(rows, "peer")
    if any(r["target"] == "peer" for r in rows) and any(r["target"] == "gateway" for r in rows):
        if gw is None:
            met = "**no**"
        elif peer is None:
            met = "yes (peer held no rate)"
        else:
            met = "yes" if gw >= 2 * peer else "**no**"
        out.append({"target": "highest rate held at p99 <= 50 ms: gateway >= 2x in-process peer",
                    "measured": f"gateway {gw or 'none'} req/s, peer {peer or 'none'} req/s "
                    "(limited by the rates tried)", "met": met})  # fmt: skip
    out.append({"target": "H100: TensorRT FP16 batch-1 <= 0.3 ms, >= 50k samples/s",
                "measured": "not measured: no GPU", "met": "-"})  # fmt: skip
    return out


def write_outputs(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """results/<name>.json and .md, and the README section when writing to the default folder."""
    png = args.out / result["png"]
    plot(result["runs"], png, f"{args.name}: {report.machine_line(result['machine'])}")
    md = markdown(result)
    report.save(args.name, result, md, args.out)
    if args.out.resolve() == services.RESULTS_DIR.resolve():
        readme_md = md.replace(f"]({result['png']})", f"](results/{result['png']})")
        report.update_readme(args.name, f"### {args.name}\n\n" + readme_md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of gateway,triton,peer")
    parser.add_argument("--rates", default="25,50,100,200,400", help="comma list of requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="unrecorded seconds before each rate")
    parser.add_argument("--p99-budget-ms", type=float, default=None, help="exit 1 when any p99 is above it")
    parser.add_argument("--payloads", type=int, default=64, help="distinct request bodies, sent round-robin")
    parser.add_argument("--name", default="load", help="result file stem and README section")
    parser.add_argument("--out", type=Path, default=services.RESULTS_DIR,
                        help="results folder; the README is updated only for the default one")  # fmt: skip
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads in Triton's CPU model (default: ServingSettings')",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite .md/README from <out>/<name>.json"
    )
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    rates = [float(r) for r in args.rates.split(",") if r]

    if args.render_only:  # rewrite the table from a saved run (no measuring)
        write_outputs(args, json.loads((args.out / f"{args.name}.json").read_text()))
        return 0

    services.WORK_DIR.mkdir(parents=True, exist_ok=True)
    machine = services.machine()
    payloads = race_payloads(args.payloads, services.WORK_DIR)
    payload_file = services.WORK_DIR / f"{args.name}-payloads.jsonl"
    payload_file.write_bytes(b"\n".join(payloads.encoded()) + b"\n")
    ckpt = services.checkpoint()
    inputs = checkpoint_input_names(ckpt.path)
    tensors = [model_tensors(body, inputs) for body in payloads.bodies]

    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        triton = gateway_srv = peer_srv = None
        if {"gateway", "triton"} & set(targets):
            serving = ServingSettings()
            if args.intra_op_threads is not None:
                serving = ServingSettings(cpu_intra_op_threads=args.intra_op_threads)
            repo = services.build_repository(ckpt, serving=serving)
            triton = stack.enter_context(services.local_triton(repo))
        if "gateway" in targets:
            assert triton is not None
            gateway_srv = stack.enter_context(services.gateway(triton))
        if "peer" in targets:
            peer_srv = stack.enter_context(services.peer(ckpt))
        for rate in rates:
            for target in targets:
                out_file = services.WORK_DIR / f"{args.name}-{target}-{rate:g}.json"
                # CPU seconds of each party during the run: who the 2 cores were spent on.
                groups = {"triton": triton.pid if triton else None,
                          "gateway": gateway_srv.pgid if gateway_srv else None,
                          "peer": peer_srv.pgid if peer_srv else None}  # fmt: skip
                cpu_before = {k: services.group_cpu_s(v) for k, v in groups.items() if v is not None}
                self_before, children_before = (
                    _rusage_s(resource.RUSAGE_SELF),
                    _rusage_s(resource.RUSAGE_CHILDREN),
                )
                if target == "triton":
                    assert triton is not None
                    res = asyncio.run(
                        open_loop(
                            triton.grpc_url,
                            CPU_MODEL_NAME,
                            tensors,
                            rate,
                            args.duration,
                            args.warmup,
                            users_for(rate),
                        )
                    )
                    row = summarise_run(target, rate, res.latency_ms, res.failures, res.measured_s)
                else:
                    srv = gateway_srv if target == "gateway" else peer_srv
                    assert srv is not None
                    samples = run_locust(srv.url, rate, args, payload_file, out_file)
                    extra = {"users": samples["users"], "locust_exit_code": samples["exit_code"]}
                    if target == "gateway":
                        extra.update(gateway_breakdown(samples))
                    row = summarise_run(target, rate, samples["latency_ms"], samples["failures"],
                                        samples["measured_s"], extra)  # fmt: skip
                # Requests actually sent over the whole run (warm-up included, like the CPU seconds).
                sent = max(1.0, row["achieved_rps"] * (args.warmup + args.duration))
                cpu = {k: services.group_cpu_s(v) - cpu_before[k] for k, v in groups.items() if v is not None}
                cpu["load_generator"] = (
                    _rusage_s(resource.RUSAGE_SELF) - self_before
                    if target == "triton"
                    else _rusage_s(resource.RUSAGE_CHILDREN) - children_before  # the locust process
                )
                row["cpu_ms_per_request"] = {k: round(v * 1e3 / sent, 2) for k, v in cpu.items()}
                rows.append(row)
                print(
                    f"{target:8s} {rate:6g} req/s: achieved {row['achieved_rps']:7.1f}  p50 "
                    f"{report.fmt(row['p50_ms'])} ms  p99 {report.fmt(row['p99_ms'])} ms  "
                    f"failures {row['failures']}",
                    flush=True,
                )

    png = args.out / f"{args.name}.png"
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "checkpoint": ckpt.description,
        "payload_source": payloads.source,
        "n_payloads": len(payloads.bodies),
        "mean_body_kib": payloads.mean_body_kib(),
        "rates": rates,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "p99_budget_ms": args.p99_budget_ms,
        "runs": rows,
        "png": png.name,
        "targets": judge_targets(rows),
    }
    write_outputs(args, result)

    failed = any(r["failures"] for r in rows)
    over = args.p99_budget_ms is not None and any(
        r["p99_ms"] is None or r["p99_ms"] > args.p99_budget_ms for r in rows
    )
    if failed or over:
        why = "request failures" if failed else f"p99 above the {args.p99_budget_ms:g} ms budget"
        print(f"FAIL: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
