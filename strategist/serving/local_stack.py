"""`strategist serve` on one machine: build what is missing, start local Triton, run the gateway.

repository  <repo>/virtual_strategist_cpu/1/model.onnx from the checkpoint (export code) when
            missing, older than the checkpoint's weights or exported from another checkpoint
backend     local Triton (nvidia-pytriton's tritonserver, Python backend + ONNX Runtime), supervised:
            restarted by itself when it dies or hangs (strategist.serving.supervisor); when it
            cannot start and the backend is "auto", the same ONNX in-process (ONNX Runtime),
            said in the log
gateway     uvicorn in the foreground; Ctrl-C stops it, then Triton (its work folder removed)
edge        HAProxy on the public address in front of the gateway (which then listens on a free
            port of 127.0.0.1) when haproxy is installed or --edge-proxy on: it holds the gateway's
            admission limits and refuses overload in C, before it costs the gateway's event loop
            (strategist.serving.edge_proxy); restarted within a second when it exits

The API key is never printed: the "Try it" line reads it from $STRATEGIST_API_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from export.repository import BUILD_INFO_FILE, build_cpu_repository
from server.settings import GatewaySettings
from strategist.contract import CPU_MODEL_NAME
from strategist.errors import StrategistError
from strategist.serving.edge_proxy import EdgeLimits, EdgeProxy, EdgeProxyError, behind_edge, find_haproxy
from strategist.serving.example_payload import write_example_request
from strategist.serving.supervisor import TritonSupervisor
from strategist.serving.triton_launcher import LocalTriton, TritonLaunchError, free_port

log = logging.getLogger("strategist.serve")

BackendChoice = Literal["auto", "triton", "onnxruntime"]
EdgeChoice = Literal["auto", "on", "off"]


@dataclass
class ServeOptions:
    host: str
    port: int
    repo: Path
    checkpoint: Path
    backend: BackendChoice = "auto"
    api_key: str | None = None
    triton_timeout_s: float = 120.0
    triton_grpc_port: int | None = None
    example: Path | None = None
    workers: int = 1  # gateway processes (uvicorn workers sharing one socket), one event loop each
    # HAProxy in front, refusing overload before the gateway; auto: when haproxy is installed.
    edge_proxy: EdgeChoice = "auto"


def onnx_path(repo: Path) -> Path:
    return repo / CPU_MODEL_NAME / "1" / "model.onnx"


def _exported_from(onnx: Path) -> str | None:
    """The checkpoint the ONNX next to its build_info.json was exported from (None when unrecorded)."""
    try:
        return str(json.loads((onnx.parent / BUILD_INFO_FILE).read_text())["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_cpu_repository(repo: Path, checkpoint: Path) -> Path:
    """The CPU model's ONNX, exported from `checkpoint` first if missing, older than its weights or
    exported from another checkpoint (build_info.json), so that the repository serves `checkpoint`."""
    onnx = onnx_path(repo)
    config = repo / CPU_MODEL_NAME / "config.pbtxt"
    weights = checkpoint / "model.safetensors"
    stale = onnx.exists() and weights.exists() and weights.stat().st_mtime > onnx.stat().st_mtime
    source = _exported_from(onnx) if onnx.exists() else None
    other = source is not None and source != str(checkpoint.resolve())
    if onnx.exists() and config.exists() and not stale and not other:
        log.info("model repository ready: %s (from %s)", onnx, source or "an unrecorded checkpoint")
        return onnx
    why = f"exported from {source}" if other else "older than the checkpoint" if stale else "missing"
    log.info("CPU model %s: exporting %s into %s", why, checkpoint, repo)
    built = build_cpu_repository(checkpoint, repo)
    log.info("exported %s in %.1f s", built.artefact, built.seconds)
    return built.artefact


def start_backend(options: ServeOptions) -> tuple[GatewaySettings, LocalTriton | None]:
    """Gateway settings for the chosen backend, and the Triton process when one was started."""
    common: dict[str, Any] = {"model_name": CPU_MODEL_NAME, "model_repository": options.repo}
    if options.api_key:
        common["api_key"] = options.api_key
    if options.backend != "onnxruntime":
        triton = LocalTriton(options.repo, (CPU_MODEL_NAME,), grpc_port=options.triton_grpc_port)
        try:
            triton.start(timeout_s=options.triton_timeout_s)
        except TritonLaunchError as exc:
            triton.close()
            if options.backend == "triton":
                raise
            log.warning(
                "Triton could not start (%s); falling back to the in-process ONNX Runtime backend "
                "(same ONNX: %s)",
                str(exc).splitlines()[0],
                onnx_path(options.repo),
            )
        else:
            log.info("local Triton ready: gRPC %s, log %s", triton.grpc_url, triton.log_path)
            return GatewaySettings(backend="triton", triton_url=triton.grpc_url, **common), triton
    log.info("backend: ONNX Runtime in-process on %s", onnx_path(options.repo))
    return GatewaySettings(backend="onnxruntime", **common), None


def settings_environment(settings: GatewaySettings) -> dict[str, str]:
    """The STRATEGIST_* variables that rebuild `settings` in another process (a uvicorn worker builds its
    app from the environment: server.main:create_app). Only fields set explicitly are written."""
    env = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"STRATEGIST_{name.upper()}"] = str(value)
    return env


API_KEY_ENV = "STRATEGIST_API_KEY"


def curl_example(url: str, example: Path | None, with_key: bool) -> str:
    """A curl line to paste; with a key it refers to $STRATEGIST_API_KEY (the key itself is never
    printed: terminals, logs and screen shares keep what is printed)."""
    parts = [shlex.join(["curl", "-s", f"{url}/predict", "-H", "Content-Type: application/json"])]
    if with_key:
        parts.append(f'-H "Authorization: Bearer ${API_KEY_ENV}"')
    if example is not None:
        parts.append(shlex.join(["--data", f"@{example}"]))
    return " ".join(parts)


def ensure_example(path: Path | None) -> Path | None:
    """The example payload for the curl line, written from a simulated race when missing."""
    if path is None or path.exists():
        return path
    try:
        return write_example_request(path)
    except (StrategistError, ImportError, OSError) as exc:
        log.warning(
            "no example payload at %s and none could be made (%s): the curl line has no body", path, exc
        )
        return None


def wants_edge_proxy(choice: EdgeChoice) -> bool:
    """Whether to run the edge proxy: "on" needs haproxy (EdgeProxyError naming it otherwise)."""
    if choice == "off":
        return False
    try:
        find_haproxy()
    except EdgeProxyError:
        if choice == "on":
            raise
        log.warning(
            "no edge proxy (haproxy is not installed): the gateway refuses overload itself, on the "
            "event loop that serves the admitted requests, which lowers goodput under overload "
            "(docs/serving.md); apt-get install haproxy, or --edge-proxy off to silence this"
        )
        return False
    return True


def _run_edge(
    edge: EdgeProxy,
    up: threading.Event,
    failed: threading.Event,
    stop: threading.Event,
    period_s: float = 1.0,
) -> None:
    """Start the edge proxy once the gateway accepts connections (so its health check finds it
    up), set `up`, then restart the proxy whenever it exits, until `stop`. When it cannot start,
    `failed` is set and the gateway stopped (SIGINT to this process): a stack nobody can reach is
    no use."""
    while not stop.is_set():
        with contextlib.suppress(OSError), socket.create_connection(edge.gateway, timeout=0.5):
            break
        stop.wait(0.05)
    try:
        edge.start()
    except EdgeProxyError as exc:
        log.error("edge proxy did not start, stopping: %s", exc)
        failed.set()
        up.set()
        os.kill(os.getpid(), signal.SIGINT)
        return
    host, port = edge.gateway
    log.info("edge proxy (HAProxy pid %s) on %s -> gateway on http://%s:%s; its metrics %s; limits %s",
             edge.pid, edge.url, host, port, edge.metrics_url, edge.limits)  # fmt: skip
    up.set()
    while not stop.wait(period_s):
        try:
            code = edge.restart_if_exited()
        except EdgeProxyError as exc:
            log.error("edge proxy could not be restarted (trying again in %.0f s): %s", period_s, exc)
            continue
        if code is not None:
            log.warning("edge proxy exited with code %s; restarted (pid %s)", code, edge.pid)


def serve(options: ServeOptions) -> int:
    """Run the whole local stack in the foreground until Ctrl-C; returns the exit code."""
    import uvicorn

    from server.main import create_app

    if not (options.checkpoint / "config.json").exists() and not onnx_path(options.repo).exists():
        raise StrategistError(
            f"no checkpoint at {options.checkpoint} and no exported model at {onnx_path(options.repo)}: "
            "train one (`strategist train`) or pass --checkpoint DIR"
        )
    ensure_cpu_repository(options.repo, options.checkpoint)
    example = ensure_example(options.example)
    settings, triton = start_backend(options)
    supervisor = (
        TritonSupervisor(triton, start_timeout_s=options.triton_timeout_s).start() if triton else None
    )
    url = f"http://{options.host}:{options.port}"
    gateway_host, gateway_port = options.host, options.port
    edge: EdgeProxy | None = None
    edge_up, edge_failed, stop_watch = threading.Event(), threading.Event(), threading.Event()
    if wants_edge_proxy(options.edge_proxy):
        gateway_host, gateway_port = "127.0.0.1", free_port()
        settings = behind_edge(settings)
        edge = EdgeProxy(
            EdgeLimits.from_settings(settings, options.workers),
            listen=(options.host, options.port),
            gateway=(gateway_host, gateway_port),
            metrics_port=free_port(),
        )
        threading.Thread(
            target=_run_edge, args=(edge, edge_up, edge_failed, stop_watch), name="edge-proxy", daemon=True
        ).start()

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if edge is not None:  # the edge starts once the gateway listens: wait for it to say so
                await asyncio.to_thread(edge_up.wait, 30.0)
            if self.started and (edge is None or edge.is_running()):
                lines = [
                    f"Virtual Strategist serving on {url} (backend: {settings.backend}; docs: {url}/docs)",
                    "Try it:",
                    "  " + curl_example(url, example, settings.api_key is not None),
                    "Ctrl-C stops the gateway and Triton.",
                ]
                print("\n".join(lines), file=sys.stderr, flush=True)

    if options.workers < 1:
        raise StrategistError(f"--workers must be at least 1, got {options.workers}")
    started = False
    # Built in both modes: with workers it only answers `started` (the worker processes build their own).
    server = AnnouncingServer(
        uvicorn.Config(
            create_app(settings), host=gateway_host, port=gateway_port, log_level="info", access_log=False
        )
    )
    try:
        if options.workers == 1:
            server.run()
        else:
            # Each worker is its own process with its own event loop and backend client, built from
            # the environment; uvicorn binds the socket once and the kernel spreads connections.
            os.environ.update(settings_environment(settings))
            print(f"{options.workers} gateway workers on {url}; try:\n  " + curl_example(url, example, settings.api_key is not None),
                  file=sys.stderr, flush=True)  # fmt: skip
            uvicorn.run(
                "server.main:create_app",
                factory=True,
                workers=options.workers,
                host=gateway_host,
                port=gateway_port,
                log_level="info",
                access_log=False,
            )
            started = True  # the supervisor ran its workers until the stop
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal; the stop is intended.
        log.info("Ctrl-C: gateway stopped")
    finally:
        stop_watch.set()
        if edge is not None:
            log.info("stopping the edge proxy")
            edge.close()
        if supervisor is not None:
            log.info("stopping Triton")
            supervisor.close()
    return 0 if (started or server.started) and not edge_failed.is_set() else 1
