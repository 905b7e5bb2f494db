"""Two Tritons behind one gateway: kill -9 one under load, restart it, watch the pool.

    python -m benchmarks.failover [--concurrency 4] [--before-kill 3] [--after-kill 3] [--after-rejoin 3]

Two local Tritons (strategist.serving.triton_launcher) serve the same CPU repository on different
ports; the gateway app (server.main.create_app, STRATEGIST_TRITON_URLS=a,b) runs in this process and
is driven through its ASGI interface by `concurrency` closed-loop clients sending /predict bodies of
a race. Timeline: load -> SIGKILL Triton A's process group -> load on B alone -> restart A on the
same ports -> A rejoins -> load on both -> stop. Reported (JSON + markdown under benchmarks/results/):
requests sent / failed, calls in flight on A at the kill, failovers (calls retried on B), time to
rebalance (kill -> A out of rotation), time to rejoin (restarted A ready -> back in rotation and
answering), latency before and after the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.services import Sample
from server.main import create_app
from server.settings import GatewaySettings
from strategist.contract import CPU_MODEL_NAME
from strategist.serving.triton_launcher import LocalTriton, TritonLaunchError


@dataclass
class _Timeline:
    kill: float = 0.0
    down: float = 0.0
    restarted_ready: float = 0.0
    rejoined: float = 0.0
    samples: list[Sample] = field(default_factory=list)


async def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(0.005)
    return time.monotonic()


def _latencies(samples: Sequence[Sample], start: float, end: float) -> list[float]:
    return [s.latency_ms for s in samples if start <= s.sent_at < end and s.status == 200]


async def run_failover(
    repo: Path,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int = 4,
    before_kill_s: float = 3.0,
    after_kill_s: float = 3.0,
    after_rejoin_s: float = 3.0,
    request_timeout_s: float = 2.0,
    probe_interval_s: float = 0.2,
    triton_timeout_s: float = 120.0,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the scenario once; returns the measured figures (see the module docstring)."""
    from benchmarks.report import summarize

    payloads = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    logs = {name: (log_dir / f"triton_{name}.log" if log_dir else None) for name in ("a", "b", "a2")}
    first, second = (LocalTriton(repo, (CPU_MODEL_NAME,), log_path=logs[n]) for n in ("a", "b"))
    restarted: LocalTriton | None = None
    restart_attempts = 0  # failed starts of the restarted Triton before the one that came up
    try:
        await asyncio.gather(*(asyncio.to_thread(t.start, triton_timeout_s) for t in (first, second)))
        victim, survivor = first.grpc_url, second.grpc_url
        settings = GatewaySettings(
            backend="triton",
            triton_urls=f"{victim},{survivor}",
            model_name=CPU_MODEL_NAME,
            request_timeout_s=request_timeout_s,
            readiness_timeout_s=0.5,
            triton_probe_interval_s=probe_interval_s,
        )
        app = create_app(settings)
        registry = app.state.metrics.registry

        def calls(url: str, outcome: str = "ok") -> float:
            labels = {"endpoint": url, "outcome": outcome}
            return registry.get_sample_value("strategist_triton_endpoint_calls_total", labels) or 0.0

        timeline = _Timeline()
        stop = asyncio.Event()
        async with app.router.lifespan_context(app):
            pool = app.state.predictor.backend.pool
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", timeout=30
            ) as client:

                async def user(index: int) -> None:
                    n = index
                    while not stop.is_set():
                        body = payloads[n % len(payloads)]
                        n += concurrency
                        sent = time.monotonic()
                        response = await client.post(
                            "/predict", content=body, headers={"Content-Type": "application/json"}
                        )
                        timeline.samples.append(
                            Sample(sent, (time.monotonic() - sent) * 1e3, response.status_code)
                        )

                users = [asyncio.create_task(user(i)) for i in range(concurrency)]
                try:
                    await asyncio.sleep(before_kill_s)
                    calls_before = {url: calls(url) for url in (victim, survivor)}
                    in_flight = pool.endpoints[victim].outstanding
                    timeline.kill = time.monotonic()
                    assert first.pid is not None
                    os.killpg(first.pid, signal.SIGKILL)
                    timeline.down = await _wait_until(
                        lambda: not pool.endpoints[victim].up, 10.0, "the pool marking the killed Triton down"
                    )
                    await asyncio.to_thread(first.stop)  # reap it, free its shared memory
                    await asyncio.sleep(after_kill_s)
                    # A server started on a loaded 2-core machine now and then dies during its own
                    # start (seen: SIGSEGV before ready); as the supervisor would, try once more.
                    for attempt in (1, 2):
                        restarted = LocalTriton(
                            repo,
                            (CPU_MODEL_NAME,),
                            grpc_port=first.grpc_port,
                            http_port=first.http_port,
                            metrics_port=first.metrics_port,
                            log_path=logs["a2"],
                        )
                        try:
                            await asyncio.to_thread(restarted.start, triton_timeout_s)
                            break
                        except TritonLaunchError:
                            await asyncio.to_thread(restarted.stop)
                            restarted = None
                            if attempt == 2:
                                raise
                            restart_attempts += 1
                    timeline.restarted_ready = time.monotonic()
                    calls_at_restart = {url: calls(url) for url in (victim, survivor)}
                    timeline.rejoined = await _wait_until(
                        lambda: pool.endpoints[victim].up and calls(victim) > calls_at_restart[victim],
                        10.0,
                        "the restarted Triton rejoining",
                    )
                    await asyncio.sleep(after_rejoin_s)
                finally:
                    stop.set()
                    await asyncio.gather(*users, return_exceptions=True)
                failovers = registry.get_sample_value("strategist_triton_failovers_total") or 0.0
                final = {url: calls(url) for url in (victim, survivor)}
    finally:
        for server in (first, second, restarted):
            if server is not None:
                server.stop()

    samples = timeline.samples
    failed = [s for s in samples if s.status != 200]
    return {
        "concurrency": concurrency,
        "phases_s": {
            "before_kill": before_kill_s,
            "after_kill": after_kill_s,
            "after_rejoin": after_rejoin_s,
        },
        "request_timeout_s": request_timeout_s,
        "probe_interval_s": probe_interval_s,
        "requests_sent": len(samples),
        "requests_failed": len(failed),
        "failed_statuses": sorted({s.status for s in failed}),
        "in_flight_on_killed_at_kill": in_flight,
        "failovers": int(failovers),
        "failed_restart_starts": restart_attempts,
        "rebalance_s": round(timeline.down - timeline.kill, 4),
        "restart_to_ready_s": round(timeline.restarted_ready - timeline.down, 3),
        "rejoin_s": round(timeline.rejoined - timeline.restarted_ready, 4),
        "calls_by_endpoint": {
            "before_kill": calls_before,
            "kill_to_restart": {u: calls_at_restart[u] - calls_before[u] for u in (victim, survivor)},
            "after_restart": {u: final[u] - calls_at_restart[u] for u in (victim, survivor)},
        },
        "killed_endpoint": victim,
        "latency_before_kill": summarize(_latencies(samples, 0.0, timeline.kill)),
        "latency_kill_to_rejoin": summarize(_latencies(samples, timeline.kill, timeline.rejoined)),
        "latency_after_rejoin": summarize(_latencies(samples, timeline.rejoined, float("inf"))),
    }


def markdown(result: dict[str, Any], machine: str, command: str) -> str:
    before, during = result["latency_before_kill"], result["latency_kill_to_rejoin"]
    killed = result["killed_endpoint"]
    after = result["calls_by_endpoint"]["after_restart"]
    rows = [
        ("requests sent", result["requests_sent"]),
        ("requests failed", result["requests_failed"]),
        ("calls in flight on the killed Triton at the kill", result["in_flight_on_killed_at_kill"]),
        ("calls retried on the other Triton (failovers)", result["failovers"]),
        ("time to rebalance (kill -> out of rotation)", f"{result['rebalance_s'] * 1e3:.1f} ms"),
        ("restarted Triton: start to ready", f"{result['restart_to_ready_s']:.1f} s"),
        ("time to rejoin (ready -> answering again)", f"{result['rejoin_s'] * 1e3:.0f} ms"),
        ("calls answered by the restarted Triton", int(after[killed])),
        ("p50 / p99 before the kill", f"{before['p50_ms']} / {before['p99_ms']} ms"),
        ("p50 / p99 kill -> rejoin (one Triton)", f"{during['p50_ms']} / {during['p99_ms']} ms"),
    ]
    lines = [
        f"Measured with `{command}` on {machine}; {result['concurrency']} closed-loop clients, "
        f"gateway deadline {result['request_timeout_s']:g} s, probe every {result['probe_interval_s']:g} s.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import report, services

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.failover", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--before-kill", type=float, default=3.0, help="seconds of load before the kill")
    parser.add_argument("--after-kill", type=float, default=3.0, help="seconds on one Triton before restart")
    parser.add_argument("--after-rejoin", type=float, default=3.0, help="seconds of load after the rejoin")
    parser.add_argument("--payloads", type=int, default=16)
    parser.add_argument("--out", type=Path, default=services.RESULTS_DIR)
    parser.add_argument("--name", default="failover")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be >= 1, got {args.concurrency}")

    setup = services.scenario(args.payloads)
    machine, ckpt, repo, payloads = setup.machine, setup.checkpoint, setup.repo, setup.payloads
    result = asyncio.run(
        run_failover(
            repo,
            payloads.bodies,
            concurrency=args.concurrency,
            before_kill_s=args.before_kill,
            after_kill_s=args.after_kill,
            after_rejoin_s=args.after_rejoin,
            log_dir=services.WORK_DIR,
        )
    )
    command = "python -m benchmarks.failover " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(result, report.machine_line(machine), command.strip())
    json_path, md_path = report.save(
        args.name,
        {"machine": machine, "checkpoint": ckpt.description, "payloads": payloads.source, **result},
        table,
        out_dir=args.out,
    )
    print(table)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return 0 if result["requests_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
