"""What a refused request costs the server's CPU, and how much of that the HTTP server alone costs.

    .venv/bin/python -m benchmarks.refusal_floor              # ~1 min; writes results/refusal_floor.{json,md}

Under overload most arrivals are refused, and on one event loop every refusal takes CPU from the
admitted requests: at `factor` x the saturated rate the goodput can be at most about
1 - (factor - 1) x refusal / admitted of the saturated throughput (benchmarks.chaos). This measures
the refusal side directly, under the same uvicorn set-up as the chaos run (uvloop, httptools, one
worker, no access log), with open-loop load from benchmarks.http_load in a process of its own:

- `bare`: an ASGI app that answers every request 429 with a 2-byte body and does nothing else: the
  floor of HTTP/1.1 handling (socket reads, parsing, the task uvicorn starts per request, writing
  the answer), what any app under this server pays per refusal;
- `gateway`: the real gateway (server.main.create_app) with every prediction slot taken and no
  queue, so each /predict is refused by its admission control before the body is read, exactly the
  in_flight refusal of an overload;
- `outermost`: the same two middlewares wrapped around the whole app instead of inside FastAPI's
  stack (what moving the refusal outermost would save).

Each runs with the example request's body (examples/predict_request.json, ~70 kB) and with an
empty JSON body, at each --rate. The server's CPU (user + system, from /proc) over the run, per
answered request, is the figure; the bound uses the admitted request's gateway CPU from the
committed chaos result (its saturated phase) unless --admitted-ms is given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report, services
from benchmarks.services import PROJECT_ROOT, RESULTS_DIR

EXAMPLE_BODY = PROJECT_ROOT / "examples" / "predict_request.json"
VARIANTS = {
    "bare": "benchmarks.refusal_floor:bare_refusal_app",
    "gateway": "benchmarks.refusal_floor:gateway_with_slots_taken",
    "outermost": "benchmarks.refusal_floor:admission_outermost",
}


def bare_refusal_app() -> Any:
    """uvicorn --factory target: 429 for every HTTP request but /healthz (200, the readiness wait)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-length", b"2"), (b"content-type", b"application/json"), (b"retry-after", b"1")]
        status = 200 if scope["path"] == "/healthz" else 429
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def gateway_with_slots_taken() -> Any:
    """uvicorn --factory target: the gateway whose admission control counts every slot as busy and
    has no queue, so every /predict gets its in_flight 429 (the backend is never reached)."""
    from server.admission import AdmissionMiddleware
    from server.main import create_app
    from server.settings import GatewaySettings

    app = create_app(GatewaySettings(max_queued=0))
    build = app.build_middleware_stack

    def build_with_slots_taken() -> Any:
        stack = build()
        layer: Any = stack  # each middleware holds the next in .app
        while not isinstance(layer, AdmissionMiddleware):
            layer = layer.app
        layer.in_flight = layer.max_in_flight
        return stack

    app.build_middleware_stack = build_with_slots_taken  # type: ignore[method-assign]
    return app


def admission_outermost() -> Any:
    """uvicorn --factory target: the same refusal with the gateway's two middlewares (request id and
    metrics, then admission control) wrapped around the whole FastAPI app instead of inside it, so a
    refusal skips FastAPI's and Starlette's own layers: what moving admission outermost would save."""
    from server.admission import AdmissionMiddleware
    from server.main import ENDPOINTS, admission_options, create_app
    from server.middleware import GatewayMiddleware
    from server.settings import GatewaySettings

    settings = GatewaySettings(max_queued=0)
    app = create_app(settings)
    metrics = app.state.metrics
    admission = AdmissionMiddleware(app, **admission_options(settings, metrics))
    admission.in_flight = admission.max_in_flight
    return GatewayMiddleware(
        admission, max_body_bytes=settings.max_body_bytes, metrics=metrics, endpoints=ENDPOINTS
    )


def _admitted_ms_from_chaos() -> float | None:
    """The gateway's CPU per admitted request in the committed chaos run's saturated phase."""
    path = RESULTS_DIR / "chaos.json"
    if not path.is_file():
        return None
    saturated = json.loads(path.read_text())["baseline"]["saturated"]
    cores = saturated.get("cores_used") or {}
    if "gateway" not in cores or not saturated.get("throughput_rps"):
        return None
    return 1e3 * cores["gateway"] / saturated["throughput_rps"]


def measure(variant: str, body: Path, rate: float, seconds: float, work: Path) -> dict[str, Any]:
    """One server of `variant` under `rate` arrivals/s of `body` for `seconds`: its CPU per answer."""
    with services.uvicorn_server(VARIANTS[variant], {}, "/healthz", f"refusal_floor_{variant}") as server:
        out = work / f"{variant}_{body.stem}_{rate:g}.json"
        command = [
            sys.executable, "-m", "benchmarks.http_load", "--url", server.url + "/predict",
            "--body", str(body), "--rate", str(rate), "--duration", str(seconds), "--warmup", "1",
            "--max-connections", "512", "--out", str(out),
        ]  # fmt: skip
        cpu_before = services.group_cpu_s(server.pgid)
        started = time.monotonic()
        subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True)
        wall_s = time.monotonic() - started
        cpu_s = services.group_cpu_s(server.pgid) - cpu_before
    load = json.loads(out.read_text())
    answered = sum(n for status, n in load["statuses"].items() if status != "0")
    # The warm-up's requests were answered in the server's CPU window too: count every one sent.
    sent = answered * (seconds + 1.0) / seconds
    return {
        "variant": variant,
        "body": body.name,
        "body_bytes": body.stat().st_size,
        "rate": rate,
        "statuses": load["statuses"],
        "server_cpu_ms_per_request": round(1e3 * cpu_s / sent, 3) if sent else None,
        "server_cores": round(cpu_s / wall_s, 2),
        "load_cpu_ms_per_request": round(1e3 * load["cpu_s"] / sent, 3) if sent else None,
    }


def bound(refusal_ms: float | None, admitted_ms: float | None, factor: float) -> str:
    if not refusal_ms or not admitted_ms:
        return "-"
    return f"{1 - (factor - 1) * refusal_ms / admitted_ms:.2f}x"


def markdown(result: dict[str, Any], command: str) -> str:
    admitted = result["admitted_ms"]
    factor = result["factor"]
    lines = [
        f"Measured with `{command}` on {result['machine']}; server under uvicorn (uvloop, httptools, 1 worker, "
        f"no access log), open-loop load from benchmarks.http_load in its own process, {result['seconds']:g} s "
        f"per row; admitted request's gateway CPU {admitted if admitted is None else f'{admitted:.2f}'} ms "
        f"({result['admitted_source']}).",
        "",
        f"| server | body | rate, req/s | answers | server CPU per request | server cores over the row | load CPU per request | goodput bound at {factor:g}x |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['variant']} | {row['body_bytes']:,} B | {row['rate']:g} | {json.dumps(row['statuses'])} | "
            f"{row['server_cpu_ms_per_request']} ms | {row['server_cores']} | {row['load_cpu_ms_per_request']} ms | "
            f"{bound(row['server_cpu_ms_per_request'], admitted, factor)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--rate", type=float, action="append", help="arrivals/s (repeat); default 450 and 1500"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--factor", type=float, default=4.0, help="overload factor of the bound")
    parser.add_argument(
        "--admitted-ms", type=float, help="gateway CPU per admitted request (default: chaos.json)"
    )
    parser.add_argument("--variants", default="bare,gateway,outermost", help="of " + ", ".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for refusal_floor.{json,md}")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}, the choices are {sorted(VARIANTS)}")
    rates = args.rate or [450.0, 1500.0]
    admitted_ms, source = args.admitted_ms, "--admitted-ms"
    if admitted_ms is None:
        admitted_ms, source = _admitted_ms_from_chaos(), "benchmarks/results/chaos.json, saturated phase"
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        empty = work / "empty.json"
        empty.write_text("{}")
        cases = [(v, b, r) for r in rates for b in (EXAMPLE_BODY, empty) for v in variants]
        for variant, body, rate in tqdm(cases, desc="refusal floor", unit="row"):
            rows.append(measure(variant, body, rate, args.seconds, work))
    result = {
        "benchmark": "refusal_floor",
        "machine": report.machine_line(services.machine()),
        "seconds": args.seconds,
        "factor": args.factor,
        "admitted_ms": admitted_ms,
        "admitted_source": source,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refusal_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result, "python -m benchmarks.refusal_floor " + " ".join(argv or sys.argv[1:]))
    (args.out / "refusal_floor.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
