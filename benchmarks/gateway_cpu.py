"""Where the gateway's own CPU goes in one /predict request, before and after the lean request path.

    .venv/bin/python -m benchmarks.gateway_cpu

The app is driven in-process through ASGI (no socket, no HTTP parser) with a backend that answers
at once with fixed outputs of the contract's shapes, so what is timed is the gateway alone: the
middleware, routing, decoding, preprocess (alignment), the model-input dict, postprocess and the
response. Each variant is a GatewaySettings change (`request_decoder`, `lean_routes`), measured interleaved in one
process on the same bodies (the example request, examples/predict_request.json, and the race bodies
of benchmarks.payloads). Then one cProfile per variant attributes the time to stages (by the
function that owns it) and the bar chart results/gateway_cpu.png shows both side by side.
Writes results/gateway_cpu.{json,md,png} and the README section gateway_cpu.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from benchmarks import report, services
from server import deps
from server.backend import ModelOutputs
from server.main import create_app
from server.settings import GatewaySettings
from strategist import contract
from strategist.paths import PROJECT_ROOT

# label -> GatewaySettings changes; measured interleaved, one app each. SYNC_DEPENDENCIES (not a
# setting) puts back the former plain-`def` dependencies, which FastAPI runs on its thread pool.
SYNC_DEPENDENCIES = "sync_dependencies"
VARIANTS: dict[str, dict[str, Any]] = {
    "before (pydantic decoder, FastAPI routes, thread-pool dependencies)": {
        "request_decoder": "pydantic",
        "lean_routes": False,
        SYNC_DEPENDENCIES: True,
    },
    "fast decoder, FastAPI routes, thread-pool dependencies": {
        "request_decoder": "fast",
        "lean_routes": False,
        SYNC_DEPENDENCIES: True,
    },
    "fast decoder, FastAPI routes": {"request_decoder": "fast", "lean_routes": False},
    "after (fast decoder, lean path)": {"request_decoder": "fast", "lean_routes": True},
}

# Stage -> (file suffix, function) whose cumulative time is that stage; "framework" is the rest of
# the request (middleware, FastAPI routing and dependencies, reading the body).
STAGES: dict[str, tuple[str, str]] = {
    "decode + validation": ("server/decode.py", "decode_predict"),
    "preprocess (alignment, context)": ("server/preprocess.py", "preprocess"),
    "postprocess": ("server/postprocess.py", "postprocess"),
    "response JSON": ("server/routes/predict.py", "_json_response"),
}
TOTAL = ("benchmarks/gateway_cpu.py", "post")
FRAMEWORK = "framework (middleware, routing, dependencies, body read)"


class FixedBackend:
    """Answers every batch at once with zeros of the contract's output shapes (no model cost)."""

    kind = "fixed"
    model_name = "fixed"

    def __init__(self, input_names: tuple[str, ...]) -> None:
        self._inputs = input_names

    async def start(self) -> None: ...

    async def input_names(self) -> tuple[str, ...]:
        return self._inputs

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> ModelOutputs:
        rows = next(iter(inputs.values())).shape[0]
        return ModelOutputs(
            pace_quantiles=np.zeros((rows, 3), np.float32),
            risk_probs=np.full((rows, 3), 1 / 3, np.float32),
            tire_health=np.ones((rows, 1), np.float32),
        )

    async def is_ready(self) -> bool:
        return True

    async def model_version(self) -> str:
        return "1"

    async def close(self) -> None: ...


class AsgiClient:
    """POST one body through the ASGI app, as uvicorn would hand it over (one http.request message)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, body: bytes) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status


def _sync_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _sync_predictor(request: Request) -> Any:
    return request.app.state.predictor


def _sync_guard(settings: Annotated[GatewaySettings, Depends(_sync_settings)]) -> None:
    return None  # the benchmark app has no API key


def _use_sync_dependencies(app: Any) -> None:
    """The dependencies as plain functions (what they were before they became `async def`)."""
    app.dependency_overrides.update(
        {
            deps.get_settings: _sync_settings,
            deps.get_predictor: _sync_predictor,
            deps.require_api_key: _sync_guard,
        }
    )


async def _lifespan_started(app: Any) -> asyncio.Queue[dict[str, Any]]:
    """Run the app's lifespan startup (the predictor is built there); the queue ends it later."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    asyncio.get_running_loop().create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await started.wait()
    return inbox


def stage_breakdown(profile: cProfile.Profile, n_requests: int) -> dict[str, float]:
    """Cumulative time per stage, ms per request; the framework stage is the request's rest."""
    stats = pstats.Stats(profile)

    def cumulative(where: tuple[str, str]) -> float:
        return sum(
            cumtime
            for (filename, _, function), (_, _, _, cumtime, _) in stats.stats.items()  # type: ignore[attr-defined]
            if filename.endswith(where[0]) and function == where[1]
        )

    stages = {stage: cumulative(where) * 1e3 / n_requests for stage, where in STAGES.items()}
    stages[FRAMEWORK] = max(0.0, cumulative(TOTAL) * 1e3 / n_requests - sum(stages.values()))
    return stages


async def _measure(bodies: list[bytes], input_names: tuple[str, ...], repeats: int) -> dict[str, Any]:
    clients = {}
    for label, changes in VARIANTS.items():
        settings = {k: v for k, v in changes.items() if k != SYNC_DEPENDENCIES}
        app = create_app(GatewaySettings(**settings), backend=FixedBackend(input_names))
        if changes.get(SYNC_DEPENDENCIES):
            _use_sync_dependencies(app)
        await _lifespan_started(app)
        clients[label] = AsgiClient(app)
    for client in clients.values():  # warm-up: first-call imports and caches
        for body in bodies[:4]:
            assert await client.post("/predict", body) == 200
    wall: dict[str, list[float]] = {label: [] for label in clients}
    cpu: dict[str, float] = dict.fromkeys(clients, 0.0)
    for _ in range(repeats):
        for body in bodies:
            for label, client in clients.items():
                c0, t0 = time.process_time(), time.perf_counter()
                status = await client.post("/predict", body)
                wall[label].append((time.perf_counter() - t0) * 1e3)
                cpu[label] += time.process_time() - c0
                assert status == 200, status
    n = repeats * len(bodies)
    profiles = {}
    for label, client in clients.items():
        profile = cProfile.Profile()
        profile.enable()
        for body in bodies:
            await client.post("/predict", body)
        profile.disable()
        profiles[label] = stage_breakdown(profile, len(bodies))
    return {
        label: {
            "wall": report.summarize(wall[label]),
            "cpu_ms_per_request": cpu[label] * 1e3 / n,
            "stages": profiles[label],
        }
        for label in clients
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payloads", type=int, default=16, help="race bodies besides the example request")
    parser.add_argument("--repeats", type=int, default=30, help="passes over all bodies")
    parser.add_argument(
        "--inputs", choices=("two", "three"), default="three", help="model inputs the fixed backend reports"
    )
    parser.add_argument("--name", default="gateway_cpu")
    args = parser.parse_args(argv)

    from benchmarks.payloads import race_payloads

    machine = services.machine()
    example = (PROJECT_ROOT / "examples" / "predict_request.json").read_bytes()
    payloads = race_payloads(args.payloads, services.WORK_DIR)
    bodies = [example, *payloads.encoded()]
    input_names: tuple[str, ...] = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL)
    if args.inputs == "three":
        input_names += (contract.INPUT_CONTEXT,)
    results = asyncio.run(_measure(bodies, input_names, args.repeats))

    command = "python -m benchmarks.gateway_cpu " + " ".join(argv if argv is not None else sys.argv[1:])
    mean_kib = float(np.mean([len(b) for b in bodies]) / 1024)
    labels = list(results)
    lines = [
        f"Machine: {report.machine_line(machine)}.",
        f"Bodies: {len(bodies)} raw-telemetry /predict bodies (examples/predict_request.json + {payloads.source}), "
        f"mean {mean_kib:.1f} KiB; model inputs: {', '.join(input_names)} (fixed-output backend, no model cost). "
        f"{args.repeats} passes, variants interleaved per body. Command: `{command}`",
        "",
        "| variant | gateway CPU ms / request | wall p50 ms | wall p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for label in labels:
        r = results[label]
        lines.append(
            f"| {label} | {r['cpu_ms_per_request']:.3f} | {report.fmt(r['wall']['p50_ms'], 3)} | "
            f"{report.fmt(r['wall']['p99_ms'], 3)} |"
        )
    stages = [*STAGES, FRAMEWORK]
    lines += [
        "",
        "Profile (cProfile cumulative time per stage, ms / request; the profiler adds its own overhead):",
        "",
    ]
    lines += ["| stage | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for stage in stages:
        lines.append(
            f"| {stage} | "
            + " | ".join(f"{results[lb]['stages'].get(stage, 0.0):.3f}" for lb in labels)
            + " |"
        )
    plot_path = services.RESULTS_DIR / f"{args.name}.png"
    _plot(results, stages, plot_path, report.machine_line(machine))
    lines += ["", f"![gateway CPU profile]({plot_path.name})"]
    md = "\n".join(lines)
    payload = {
        "command": command,
        "machine": machine,
        "payload_source": payloads.source,
        "inputs": input_names,
        "results": results,
    }
    report.save(args.name, payload, md)
    report.update_readme(
        args.name, f"### {args.name}\n\n" + md.replace(f"]({plot_path.name})", f"](results/{plot_path.name})")
    )
    print(md)
    print(json.dumps({k: v["cpu_ms_per_request"] for k, v in results.items()}))
    return 0


def _plot(results: dict[str, Any], stages: list[str], path: Any, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    y = np.arange(len(stages))
    width = 0.8 / len(results)
    for k, (label, r) in enumerate(results.items()):
        ax.barh(
            y + (k - (len(results) - 1) / 2) * width,
            [r["stages"].get(s, 0.0) for s in stages],
            width,
            label=label,
        )
    ax.set_yticks(y, stages, fontsize=8)
    ax.set_xlabel("ms of gateway CPU per /predict request (cProfile)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
