"""Chaos against the local stack: kill -9 of Triton under load, SIGSTOP of Triton, 4x overload.

    python -m benchmarks.chaos [--edge-proxy auto|on|off] [--concurrency N] [--deadline 1.0] [--stop 10] [--overload 30] [--factor 4]

The pieces `strategist serve` runs: a local Triton (strategist.serving.triton_launcher) watched by
the supervisor (strategist.serving.supervisor, its default checks, in this process), and the gateway
(server.main:create_app under uvicorn in a process of its own, admission control at its defaults but
the deadline) behind the edge proxy where HAProxy is installed (strategist.serving.edge_proxy, with
the gateway's settings behind it: `behind_edge`), loaded over HTTP on 127.0.0.1 by this process (keep-alive connections, pre-encoded
requests: benchmarks.http_load), so the load generator never takes the gateway's event loop or GIL.
Every request carries the gateway deadline. Phases:

1. baseline: 1 client (normal latency), then `concurrency` closed-loop clients (saturated throughput);
2. kill -9 of the Triton server (the process alone) under the closed-loop load: time to the first
   503, time back to 200 without anyone stepping in, this stack's tritonserver / stub processes
   afterwards (and any left in the killed server's process group);
3. SIGSTOP of Triton for `--stop` s under the same load, then SIGCONT (to whatever is left): every
   request must be answered within its deadline; the supervisor replaces the hung server;
4. open-loop load at `--factor` x the saturated throughput for `--overload` s: 5xx other than the
   deliberate 503 (deadline / Triton down), 429s (in-flight bound), p99 of the admitted requests
   vs the deadline, goodput vs the saturated throughput; then 1 client again: time until latency is
   back to normal (median of 5 in a row <= 1.5 x the baseline median);
5. `concurrency` closed-loop clients again: the saturated throughput after the phases, and the
   goodput vs the mean of both saturated runs (the box's own speed drifts between them).

Results: a printed table, JSON and markdown under benchmarks/results/ (chaos.json, chaos.md).
Bounded: every phase has a fixed duration and the open loop never keeps more than 4,096 requests
outstanding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import http_load
from benchmarks.services import Sample, group_cpu_s, uvicorn_server
from server.settings import GatewaySettings
from strategist.contract import CPU_MODEL_NAME
from strategist.serving.edge_proxy import EdgeLimits, EdgeProxy, behind_edge
from strategist.serving.local_stack import settings_environment, wants_edge_proxy
from strategist.serving.supervisor import TritonSupervisor
from strategist.serving.triton_launcher import LocalTriton, free_port

MAX_OUTSTANDING = 4096
# Connections the load keeps to the gateway, as a fleet of clients would: more requests than that
# at once wait on this side, and the wait counts in their latency (it is measured from when each
# was due). Unbounded, an overload opens connections faster than the gateway accepts them and the
# kernel's SYN retries (1 s, 3 s, 7 s) show up as 10 s "latencies" that no server setting can touch.
MAX_CONNECTIONS = 512
PHASES = ("kill", "stop", "overload")
ANSWER_TIMEOUT_S = 30.0
NORMAL_FACTOR = 1.5  # "back to normal": median of 5 in a row <= 1.5 x the baseline median


def stack_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, name) of the live processes whose command line holds `marker` (this stack's Triton
    server and its Python-backend stubs carry its shared-memory prefix)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                stat = (entry / "stat").read_text()
                name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append((int(entry.name), name))
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


class Load:
    """Requests to the gateway over keep-alive HTTP connections, every answer kept as a Sample
    (status 0: no answer within ANSWER_TIMEOUT_S or the connection failed)."""

    def __init__(self, url: str, payloads: Sequence[bytes], connections: int = 512) -> None:
        self.requests = http_load.encode_requests(url + "/predict", list(payloads), "application/json", {})
        parts = url.split("//", 1)[1].split(":")
        self.pool = http_load.Pool(parts[0], int(parts[1]), connections)
        self.samples: list[Sample] = []
        self._n = 0
        self.outstanding = 0

    async def one(self) -> Sample:
        request = self.requests[self._n % len(self.requests)]
        self._n += 1
        sent = time.monotonic()
        connected = [sent]
        self.outstanding += 1
        try:
            status = await self.pool.call(
                request, ANSWER_TIMEOUT_S, lambda: connected.append(time.monotonic())
            )
        finally:
            self.outstanding -= 1
        sample = Sample(sent, (time.monotonic() - sent) * 1e3, status, (connected[-1] - sent) * 1e3)
        self.samples.append(sample)
        return sample

    async def closed(self, clients: int, stop: asyncio.Event) -> None:
        async def user() -> None:
            while not stop.is_set():
                await self.one()

        await asyncio.gather(*(user() for _ in range(clients)))

    async def open(self, rate: float, duration_s: float) -> dict[str, Any]:
        """`rate` requests/s for `duration_s`, whatever the answers take; returns what was offered."""
        tasks: set[asyncio.Task[Sample]] = set()
        started = time.monotonic()
        sent = skipped = 0
        while (now := time.monotonic()) - started < duration_s:
            due = int((now - started) * rate) + 1
            while sent + skipped < due:
                if len(tasks) >= MAX_OUTSTANDING:
                    skipped += 1
                    continue
                task = asyncio.create_task(self.one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        offered_s = time.monotonic() - started
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"sent": sent, "skipped_outstanding_cap": skipped, "offered_rate": round(sent / offered_s, 1)}

    def window(self, start: float, end: float = float("inf")) -> list[Sample]:
        return [s for s in self.samples if start <= s.sent_at < end]


def _gateway_metrics(url: str) -> dict[str, float]:
    """The gateway's admission figures from /metrics: refusals by reason, client disconnects, the
    event-loop lag gauge (one worker's, when there are several)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=5.0) as answer:
        text = answer.read().decode()
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "strategist_requests_shed_total":
                figures[f"shed_{sample.labels['reason']}"] = sample.value
            elif sample.name in ("strategist_client_disconnects_total", "strategist_event_loop_lag_seconds"):
                figures[sample.name.removeprefix("strategist_")] = sample.value
    return figures


async def _watch_gateway(url: str, stop: asyncio.Event, period_s: float = 0.25) -> dict[str, Any]:
    """Polls the gateway's /metrics until `stop`: refusals by reason over the watch, and the loop
    lag it read (median and max of the polls), so a run says why requests were refused."""
    first = await asyncio.to_thread(_gateway_metrics, url)
    lags: list[float] = []
    last = first
    while not stop.is_set():
        with contextlib.suppress(OSError):  # a poll that times out under overload is skipped
            last = await asyncio.to_thread(_gateway_metrics, url)
            lags.append(last.get("event_loop_lag_seconds", 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)
    counted = {k: int(last[k] - first.get(k, 0.0)) for k in last if k != "event_loop_lag_seconds"}
    return {
        **counted,
        "loop_lag_polls": len(lags),
        "loop_lag_median_ms": round(statistics.median(lags) * 1e3, 1) if lags else None,
        "loop_lag_max_ms": round(max(lags) * 1e3, 1) if lags else None,
    }


def _statuses(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[str(s.status)] = counts.get(str(s.status), 0) + 1
    return dict(sorted(counts.items()))


def _cpu_now(gateway_pgid: int, triton_pgid: int | None, edge_pgid: int | None = None) -> dict[str, float]:
    """CPU seconds so far of the load generator (this process), the gateway and Triton (and the
    edge proxy when there is one)."""
    used = {
        "load generator": time.process_time(),
        "gateway": group_cpu_s(gateway_pgid),
        "Triton": group_cpu_s(triton_pgid) if triton_pgid else 0.0,
    }
    if edge_pgid is not None:
        used["edge proxy"] = group_cpu_s(edge_pgid)
    return used


def _cores_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each used over a phase: on a 2-core machine this says who took them."""
    return {k: round((after[k] - before[k]) / seconds, 2) for k in before}


@contextlib.asynccontextmanager
async def _under_load(load: Load, clients: int, settle_s: float = 1.0) -> AsyncIterator[int]:
    """`clients` closed-loop clients running through the block (which starts after `settle_s` of
    load): the block does the fault, the load stops when it ends."""
    stop = asyncio.Event()
    running = asyncio.create_task(load.closed(clients, stop))
    await asyncio.sleep(settle_s)
    try:
        yield clients
    finally:
        stop.set()
        await running


async def _closed_phase(load: Load, clients: int, seconds: float) -> tuple[float, float]:
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(load.closed(clients, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return started, time.monotonic()


async def run_chaos(
    repo: Path,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int | None = None,
    deadline_s: float = 1.0,
    baseline_s: float = 5.0,
    stop_s: float = 10.0,
    overload_s: float = 30.0,
    factor: float = 4.0,
    recovery_s: float = 5.0,
    log_dir: Path | None = None,
    phases: Sequence[str] = PHASES,
    gateway_env: dict[str, str] | None = None,
    connections: int = MAX_CONNECTIONS,
    workers: int = 1,
    edge_proxy: bool = False,
    edge_changes: dict[str, Any] | None = None,
    load_nice: int = 0,
) -> dict[str, Any]:
    """Run the baseline and `phases` once; returns the measured figures (see the module docstring).
    `gateway_env` adds gateway settings (STRATEGIST_*), `connections` caps the load's connections."""
    from benchmarks.report import summarize

    payloads = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    triton = LocalTriton(repo, (CPU_MODEL_NAME,), log_path=log_dir / "chaos_triton.log" if log_dir else None)
    await asyncio.to_thread(triton.start, 120.0)
    supervisor = TritonSupervisor(triton, start_timeout_s=60.0).start()
    marker = triton._shm_prefix  # on the server's and every stub's command line
    result: dict[str, Any] = {
        "deadline_s": deadline_s,
        "gateway_env": gateway_env or {},
        "connections": connections,
        "workers": workers,
        "edge_proxy": edge_proxy,
    }
    edge: EdgeProxy | None = None
    try:
        env = {
            "STRATEGIST_BACKEND": "triton",
            "STRATEGIST_TRITON_URL": triton.grpc_url,
            "STRATEGIST_MODEL_NAME": CPU_MODEL_NAME,
            "STRATEGIST_REQUEST_TIMEOUT_S": str(deadline_s),
            "STRATEGIST_REQUEST_DEADLINE_S": str(deadline_s),
            "STRATEGIST_READINESS_TIMEOUT_S": "0.5",
            "STRATEGIST_LOG_LEVEL": "error",  # one warning per refused request otherwise
            **(gateway_env or {}),
        }
        settings = GatewaySettings(
            **{k.removeprefix("STRATEGIST_").lower(): v for k, v in env.items()}  # type: ignore[arg-type]
        )
        if edge_proxy:  # as `strategist serve` runs the gateway behind its edge
            settings = behind_edge(settings)
            env.update(settings_environment(settings))
        if concurrency is None:  # enough closed-loop clients to fill every slot: the stack's best
            concurrency = settings.max_in_flight * workers
        result["concurrency"] = concurrency
        result["gateway_in_flight"] = settings.max_in_flight
        with uvicorn_server(
            "server.main:create_app", env, "/readyz", "chaos-gateway", workers=workers
        ) as gateway:
            if edge_proxy:
                host, port = gateway.url.split("//", 1)[1].split(":")
                limits = EdgeLimits.from_settings(settings, workers)
                limits = dataclasses.replace(limits, **(edge_changes or {}))
                edge = EdgeProxy(
                    limits,
                    listen=("127.0.0.1", free_port()),
                    gateway=(host, int(port)),
                )
                edge.start()
                result["edge_limits"] = dataclasses.asdict(edge.limits)
            if load_nice:
                # This thread only (Linux nice is per thread): the load stands in for clients on
                # other machines and should not outrank the stack it measures; the supervisor's
                # thread, which restarts Triton, keeps its priority.
                os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + load_nice)
                result["load_nice"] = load_nice
            load = Load(edge.url if edge else gateway.url, payloads, connections)
            edge_pid = edge.pid if edge else None
            processes_before = stack_processes(marker)

            # 1. baseline
            start, end = await _closed_phase(load, 1, 2.0)
            sequential = [s.latency_ms for s in load.window(start, end) if s.status == 200]
            normal_ms = statistics.median(sequential)
            cpu_at = _cpu_now(gateway.pgid, triton.pid, edge_pid)
            start, end = await _closed_phase(load, concurrency, baseline_s)
            saturated_cores = _cores_used(cpu_at, _cpu_now(gateway.pgid, triton.pid, edge_pid), end - start)
            saturated = load.window(start, end)
            ok = [s for s in saturated if s.status == 200]
            saturated_rps = len(ok) / (end - start)
            result["baseline"] = {
                "sequential": summarize(sequential),
                "saturated": {
                    "throughput_rps": round(saturated_rps, 1),
                    "cores_used": saturated_cores,
                    "statuses": _statuses(saturated),
                    **summarize([s.latency_ms for s in ok]),
                },
            }

            # 2. kill -9 under load
            if "kill" in phases:
                async with _under_load(load, concurrency):
                    victim = triton.pid
                    assert victim is not None
                    killed_at = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    restarted = await asyncio.to_thread(supervisor.wait_restarted, 1, 90.0)
                    deadline = time.monotonic() + 10.0
                    while time.monotonic() < deadline:  # until answers come back
                        after = load.window(killed_at)
                        first_bad = next((s for s in after if s.status != 200), None)
                        if first_bad and any(s.status == 200 for s in load.window(first_bad.sent_at)):
                            break
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)
                after = load.window(killed_at)
                first_bad = next((s for s in after if s.status != 200), None)
                first_503 = next((s for s in after if s.status == 503), None)
                back = (
                    next((s for s in load.window(first_bad.sent_at) if s.status == 200), None)
                    if first_bad
                    else None
                )
                result["kill"] = {
                    "supervisor_restarted": restarted,
                    "time_to_first_503_ms": _ms(
                        first_503.sent_at + first_503.latency_ms / 1e3 - killed_at if first_503 else None
                    ),
                    "time_back_to_200_s": (
                        round(back.sent_at + back.latency_ms / 1e3 - killed_at, 2) if back else None
                    ),
                    "statuses": _statuses(after),
                    "stack_processes_before": len(processes_before),
                    "stack_processes_after": len(stack_processes(marker)),
                    "left_in_killed_group": len(group_members(victim)),
                    "restart": [e.detail for e in supervisor.events if e.kind == "restarted"][:1],
                }

            # 3. SIGSTOP for stop_s
            if "stop" in phases:
                async with _under_load(load, concurrency):
                    stopped = triton.pid
                    assert stopped is not None
                    stopped_at = time.monotonic()
                    os.kill(stopped, signal.SIGSTOP)
                    await asyncio.sleep(stop_s)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(stopped, signal.SIGCONT)
                    # The supervisor kills a server that fails `hang_checks` checks in a row; one that
                    # was stopped for less than that is simply running again now.
                    hung_seen = any(e.kind == "hung" for e in supervisor.events)
                    replaced = hung_seen and await asyncio.to_thread(supervisor.wait_restarted, 2, 90.0)
                    await asyncio.sleep(1.0)
                window = load.window(stopped_at)
                hung = [e for e in supervisor.events if e.kind == "hung"]
                result["stop"] = {
                    "seconds": stop_s,
                    "statuses": _statuses(window),
                    "max_latency_ms": round(max(s.latency_ms for s in window), 1),
                    "over_deadline": sum(1 for s in window if s.latency_ms > deadline_s * 1e3),
                    "over_deadline_plus_100ms": sum(
                        1 for s in window if s.latency_ms > deadline_s * 1e3 + 100
                    ),
                    "supervisor_replaced_hung_server": replaced,
                    "hung_detected_after_s": round(hung[0].at - stopped_at, 2) if hung else None,
                    "stack_processes_after": len(stack_processes(marker)),
                    "left_in_stopped_group": len(group_members(stopped)),
                }

            # 4. overload
            overload_at = time.monotonic()
            cpu_at = _cpu_now(gateway.pgid, triton.pid, edge_pid)
            watch_stop = asyncio.Event()
            watch = asyncio.create_task(_watch_gateway(gateway.url, watch_stop))
            offered = await load.open(factor * saturated_rps, overload_s)
            overload_end = time.monotonic()
            watch_stop.set()
            gateway_seen = await watch
            overload_cores = _cores_used(
                cpu_at, _cpu_now(gateway.pgid, triton.pid, edge_pid), overload_end - overload_at
            )
            window = load.window(overload_at, overload_end)
            admitted = [s for s in window if s.status == 200]
            other_5xx = [s for s in window if s.status >= 500 and s.status != 503 or s.status <= 0]
            recovery_at = time.monotonic()
            normal_again: float | None = None
            recent: list[float] = []
            while time.monotonic() - recovery_at < recovery_s:
                sample = await load.one()
                recent = [*recent[-4:], sample.latency_ms if sample.status == 200 else float("inf")]
                if len(recent) == 5 and statistics.median(recent) <= NORMAL_FACTOR * normal_ms:
                    normal_again = time.monotonic() - recovery_at
                    break
            # 5. saturated again, as in the baseline: on a shared box the stack's own speed drifts by
            # 10-20 % between runs minutes apart, and the 5 s before the phases alone made the
            # goodput ratio move as much; the overload is compared with both sides of it too.
            start, end = await _closed_phase(load, concurrency, baseline_s)
            saturated_after_rps = sum(1 for s in load.window(start, end) if s.status == 200) / (end - start)
            goodput_rps = len(admitted) / (overload_end - overload_at)
            result["load_generator_failures"] = http_load.failure_counts([load.pool])
            result["overload"] = {
                "factor": factor,
                "seconds": overload_s,
                "target_rate": round(factor * saturated_rps, 1),
                **offered,
                "statuses": _statuses(window),
                "other_5xx": len(other_5xx),
                "admitted": summarize([s.latency_ms for s in admitted]),
                # The same from when each had a connection: what the gateway's deadline governs.
                "admitted_from_connection": summarize([s.latency_ms - s.waited_ms for s in admitted]),
                "waited_for_connection": summarize([s.waited_ms for s in window]),
                "goodput_rps": round(goodput_rps, 1),
                "goodput_vs_saturated": round(goodput_rps / saturated_rps, 2),
                "saturated_after_rps": round(saturated_after_rps, 1),
                "goodput_vs_saturated_mean": round(
                    goodput_rps / ((saturated_rps + saturated_after_rps) / 2), 2
                ),
                "cores_used": overload_cores,
                "gateway_metrics": gateway_seen,
                "back_to_normal_s": None if normal_again is None else round(normal_again, 2),
                "normal_median_ms": round(normal_ms, 2),
            }
            result["events"] = [
                {"at_s": round(e.at - supervisor.events[0].at, 2), "kind": e.kind, "detail": e.detail}
                for e in supervisor.events
            ]
    finally:
        if edge is not None:
            edge.close()
        supervisor.close()
    result["stack_processes_after_close"] = len(stack_processes(marker))
    return result


def _cores(used: dict[str, float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in used.values()) if used else "-"


def _refusal_cpu_ms(saturated: dict[str, Any], over: dict[str, Any]) -> str:
    """What one refusal costs the gateway, from the run's own figures: the CPU it used during the
    overload less what its admitted requests cost at the saturated run's CPU per request, shared
    over the refused ones. With it, at `factor` x overload the goodput can be at most about
    1 - (factor - 1) x refusal / admitted of the saturated throughput."""
    cores = over.get("cores_used")
    refused = sum(n for status, n in over["statuses"].items() if status != "200")
    if not cores or not saturated.get("cores_used") or not refused:
        return "-"
    per_admitted_s = saturated["cores_used"]["gateway"] / saturated["throughput_rps"]
    admitted = over["statuses"].get("200", 0)
    spent_s = cores["gateway"] * over["seconds"] - admitted * per_admitted_s
    per_refused_s = max(0.0, spent_s) / refused
    bound = 1 - (over["factor"] - 1) * per_refused_s / per_admitted_s
    return (
        f"{per_refused_s * 1e3:.2f} ms (an admitted one: {per_admitted_s * 1e3:.2f} ms; "
        f"goodput bound at {over['factor']:g}x: about {bound:.2f}x)"
    )


def _gateway_seen(seen: dict[str, Any] | None) -> str:
    if not seen:
        return "-"
    counts = {k: v for k, v in seen.items() if not k.startswith("loop_lag")}
    return f"{json.dumps(counts)}; {seen['loop_lag_median_ms']} / {seen['loop_lag_max_ms']} ms"


def _p50_p99_max(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['p50_ms']} / {summary['p99_ms']} / {summary['max_ms']} ms"


def markdown(result: dict[str, Any], machine: str, command: str) -> str:
    deadline_ms = result["deadline_s"] * 1e3
    base, over = result["baseline"], result["overload"]
    admitted = over["admitted"]
    rows: list[tuple[str, Any]] = [
        ("baseline: 1 client p50 / p99", f"{base['sequential']['p50_ms']} / {base['sequential']['p99_ms']} ms"),
        (
            f"baseline: {result['concurrency']} clients, saturated throughput / p99",
            f"{base['saturated']['throughput_rps']} req/s / {base['saturated']['p99_ms']} ms",
        ),
        (
            f"{over['factor']:g}x overload {over['seconds']:g} s: target / offered rate",
            f"{over['target_rate']} / {over['offered_rate']} req/s",
        ),
        ("overload: answers", over["statuses"]),
        ("overload: 5xx other than the deliberate 503", over["other_5xx"]),
        ("overload: admitted p50 / p99 / max (deadline), from when each was due", f"{admitted['p50_ms']} / {admitted['p99_ms']} / {admitted['max_ms']} ms ({deadline_ms:.0f} ms)"),
        (f"overload: the same from when each had one of the load's {result.get('connections', MAX_CONNECTIONS)} connections",
         _p50_p99_max(over.get("admitted_from_connection"))),
        ("overload: wait for a free connection on the load's side, p50 / p99 / max", _p50_p99_max(over.get("waited_for_connection"))),
        ("overload: goodput, vs saturated throughput", f"{over['goodput_rps']} req/s, {over['goodput_vs_saturated']}x"),
        ("overload: saturated throughput measured again after it; goodput vs the mean of both",
         f"{over['saturated_after_rps']} req/s; {over['goodput_vs_saturated_mean']}x"
         if "saturated_after_rps" in over else "-"),
        ("overload: gateway CPU per refused request, estimated (its overload CPU less the admitted at the saturated CPU per request)",
         _refusal_cpu_ms(base["saturated"], over)),
        ("overload: the gateway's refusals by reason, client disconnects; loop lag median / max (its /metrics)",
         _gateway_seen(over.get("gateway_metrics"))),
        (f"cores used by {' / '.join(over.get('cores_used') or ('load generator', 'gateway', 'Triton'))}: saturated; overload",
         f"{_cores(base['saturated'].get('cores_used'))}; {_cores(over.get('cores_used'))}"),
        ("after the overload: back to normal latency in", f"{over['back_to_normal_s']} s (normal median {over['normal_median_ms']} ms)"),
        ("this stack's Triton processes after close", result["stack_processes_after_close"]),
        ("load generator: failed connections by kind; stale keep-alive connections retried", result.get("load_generator_failures", {})),
    ]  # fmt: skip
    faults: list[tuple[str, Any]] = []
    if "kill" in result:
        kill = result["kill"]
        faults += [
            ("kill -9: time to first 503", f"{kill['time_to_first_503_ms']} ms"),
            ("kill -9: time back to 200 (supervisor restart, nobody stepping in)", f"{kill['time_back_to_200_s']} s"),
            ("kill -9: answers from the kill on", kill["statuses"]),
            ("kill -9: tritonserver + stub processes before / after; left in the killed group",
             f"{kill['stack_processes_before']} / {kill['stack_processes_after']}; {kill['left_in_killed_group']}"),
        ]  # fmt: skip
    if "stop" in result:
        stop = result["stop"]
        faults += [
            (f"SIGSTOP {stop['seconds']:g} s: answers", stop["statuses"]),
            (f"SIGSTOP: slowest answer (deadline {deadline_ms:.0f} ms); over the deadline / over it + 100 ms",
             f"{stop['max_latency_ms']} ms; {stop['over_deadline']} / {stop['over_deadline_plus_100ms']}"),
            ("SIGSTOP: supervisor saw the hang after / replaced it",
             f"{stop['hung_detected_after_s']} s / {stop['supervisor_replaced_hung_server']}"),
        ]  # fmt: skip
    rows[2:2] = faults
    settings = ", ".join(f"{k}={v}" for k, v in result.get("gateway_env", {}).items()) or "defaults"
    lines = [
        f"Measured with `{command}` on {machine}; gateway under uvicorn in its own process "
        f"({result.get('workers', 1)} worker{'s' if result.get('workers', 1) > 1 else ''})"
        f"{', behind the edge proxy (HAProxy, ' + str(result.get('edge_limits')) + ')' if result.get('edge_proxy') else ''}, "
        "loaded over HTTP by the benchmark's process; local Triton + supervisor, "
        f"deadline {deadline_ms:.0f} ms, admission control settings: {settings}; "
        f"the load keeps at most {result.get('connections', MAX_CONNECTIONS)} connections.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {json.dumps(value) if isinstance(value, dict) else value} |" for name, value in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import report, services

    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="closed-loop clients of the baseline, kill and stop phases (default: the stack's in-flight "
        "bound, so the baseline fills every slot)",
    )
    parser.add_argument("--deadline", type=float, default=1.0, help="gateway request deadline, s")
    parser.add_argument("--stop", type=float, default=10.0, help="seconds Triton stays SIGSTOPped")
    parser.add_argument("--overload", type=float, default=30.0, help="seconds of overload")
    parser.add_argument("--factor", type=float, default=4.0, help="overload rate / saturated throughput")
    parser.add_argument("--payloads", type=int, default=16)
    parser.add_argument("--out", type=Path, default=services.RESULTS_DIR)
    parser.add_argument("--name", default="chaos")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="of kill, stop, overload (the baseline always runs)"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for this run, e.g. STRATEGIST_MAX_QUEUED=0 (repeat)",
    )
    parser.add_argument("--connections", type=int, default=MAX_CONNECTIONS, help="connections the load keeps")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (serve --workers)")
    parser.add_argument(
        "--edge-proxy",
        choices=("auto", "on", "off"),
        default="auto",
        help="HAProxy in front of the gateway, as serve --edge-proxy (default auto: when installed)",
    )
    parser.add_argument(
        "--edge",
        action="append",
        default=[],
        metavar="FIELD=INT",
        help="an edge proxy limit for this run, e.g. buffer_bytes=16384, max_queued=32 or buffer_whole_body=0 "
        "(strategist.serving.edge_proxy.EdgeLimits; repeat)",
    )
    parser.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="lower the load generator's priority by this (nice), as if its clients were elsewhere",
    )
    args = parser.parse_args(argv)
    phases = tuple(p for p in args.phases.split(",") if p)
    if not set(phases) <= set(PHASES) or "overload" not in phases:
        parser.error(f"--phases: choose from {PHASES}; overload is always needed")
    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    edge_fields = {f.name for f in dataclasses.fields(EdgeLimits)}
    edge_changes: dict[str, Any] = {}
    for item in args.edge:
        name, _, value = item.partition("=")
        if name not in edge_fields or not value.isdigit():
            parser.error(f"--edge {item!r}: give FIELD=INT with FIELD one of {sorted(edge_fields)}")
        edge_changes[name] = bool(int(value)) if isinstance(getattr(EdgeLimits(), name), bool) else int(value)
    edge_proxy = wants_edge_proxy(args.edge_proxy)
    if edge_changes and not edge_proxy:
        parser.error("--edge changes the edge proxy's limits, and this run has none")
    if (args.concurrency is not None and args.concurrency < 1) or args.factor <= 0:
        parser.error("--concurrency must be >= 1 and --factor > 0")

    http_load.install_uvloop()  # the load generator runs in this process
    setup = services.scenario(args.payloads)
    machine, ckpt, repo, payloads = setup.machine, setup.checkpoint, setup.repo, setup.payloads
    result = asyncio.run(
        run_chaos(
            repo,
            payloads.bodies,
            concurrency=args.concurrency,
            deadline_s=args.deadline,
            stop_s=args.stop,
            overload_s=args.overload,
            factor=args.factor,
            log_dir=services.WORK_DIR,
            phases=phases,
            gateway_env=gateway_env,
            connections=args.connections,
            workers=args.workers,
            edge_proxy=edge_proxy,
            edge_changes=edge_changes,
            load_nice=args.load_nice,
        )
    )
    result["load_avg_at_end"] = os.getloadavg()
    command = "python -m benchmarks.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(result, report.machine_line(machine), command.strip())
    json_path, md_path = report.save(
        args.name,
        {"machine": machine, "checkpoint": ckpt.description, "payloads": payloads.source, **result},
        table,
        out_dir=args.out,
    )
    print(table)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    failed = (
        result["overload"]["other_5xx"]
        or ("stop" in result and result["stop"]["over_deadline_plus_100ms"])
        or ("kill" in result and result["kill"]["time_back_to_200_s"] is None)
        or result["stack_processes_after_close"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
