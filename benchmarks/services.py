"""What a benchmark needs running, started by the benchmark and stopped by it.

- a checkpoint: the shipped base model if present, else a freshly initialised default-size model
  (same architecture and cost, random weights; latency does not depend on the weights);
- a CPU model repository built from it by the export code (`build_cpu_repository`);
- a local Triton (strategist.serving.triton_launcher.LocalTriton) on that repository;
- the gateway (uvicorn, one worker, in a subprocess) pointed at that Triton, or the in-process
  PyTorch peer (benchmarks/peer_app.py).
All servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.repository import build_cpu_repository
from export.triton_config import ServingSettings, checkpoint_input_names, render_cpu_config
from strategist.contract import CPU_MODEL_NAME, GPU_MODEL_NAME
from strategist.machine import describe_machine
from strategist.paths import PROJECT_ROOT, SERVED_CHECKPOINT_DIR
from strategist.serving.triton_launcher import LocalTriton, die_with_parent, free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WORK_DIR = RESULTS_DIR / "tmp"  # git-ignored
NO_BATCHING_MODEL = f"{CPU_MODEL_NAME}_nobatch"


@dataclass(frozen=True)
class Server:
    url: str
    pgid: int  # its own process group (started in a new session)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds so far of every live process in process group `pgid` (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@dataclass(frozen=True)
class Sample:
    """One request of a scenario benchmark: when it was sent, how long it took, its status."""

    sent_at: float  # monotonic
    latency_ms: float
    status: int
    waited_ms: float = 0.0  # of latency_ms, the wait on the client side for a free connection


@dataclass(frozen=True)
class Scenario:
    """What every scenario benchmark starts from: the machine, the served checkpoint, its CPU
    Triton repository and race payloads."""

    machine: dict[str, object]
    checkpoint: Checkpoint
    repo: Path
    payloads: Any  # benchmarks.payloads.Payloads


def scenario(n_payloads: int) -> Scenario:
    from benchmarks.payloads import race_payloads

    ckpt = checkpoint()
    return Scenario(machine(), ckpt, build_repository(ckpt), race_payloads(n_payloads, WORK_DIR / "payloads"))


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    description: str


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return describe_machine()


def checkpoint() -> Checkpoint:
    """The shipped checkpoint, else a freshly initialised default-size one (written once, reused)."""
    if (SERVED_CHECKPOINT_DIR / "config.json").is_file():
        return Checkpoint(SERVED_CHECKPOINT_DIR, f"shipped checkpoint {SERVED_CHECKPOINT_DIR.name}")
    fresh = WORK_DIR / "fresh-default-checkpoint"
    if not (fresh / "config.json").is_file():
        import torch

        from strategist.model import ModelConfig, build_model
        from strategist.model.checkpoint import save_checkpoint

        torch.manual_seed(0)
        cfg = ModelConfig()
        save_checkpoint(build_model(cfg).eval(), cfg, fresh, stats={})
    return Checkpoint(
        fresh,
        "freshly initialised default-size model (no shipped checkpoint at "
        f"{SERVED_CHECKPOINT_DIR.relative_to(PROJECT_ROOT)}); random weights, same architecture and cost",
    )


def build_repository(
    ckpt: Checkpoint, *, with_unbatched_copy: bool = False, serving: ServingSettings | None = None
) -> Path:
    """CPU repository from `ckpt`; optionally a second model identical but for `dynamic_batching`.

    The unbatched twin's config comes from the same generator with `dynamic_batching=False` and its
    own name: nothing else differs (same ONNX, same Python model, same max_batch_size, instances, warmup).
    """
    serving = serving or ServingSettings()
    repo = WORK_DIR / ("repo-batching-on-off" if with_unbatched_copy else "repo")
    stamp = repo / "built-from.json"
    weights = sorted(ckpt.path.glob("*.safetensors"))
    source = json.dumps(
        {
            "checkpoint": str(ckpt.path),
            "weights_mtime": [w.stat().st_mtime for w in weights],
            "serving": repr(serving),  # other settings: other config.pbtxt, so rebuild
        }
    )
    if stamp.is_file() and stamp.read_text() == source:
        return repo  # same checkpoint, same weights: the export would write the same files again
    shutil.rmtree(repo, ignore_errors=True)
    build_cpu_repository(ckpt.path, repo, settings=serving)
    shutil.rmtree(repo / GPU_MODEL_NAME, ignore_errors=True)  # GPU model: not servable here
    if with_unbatched_copy:
        twin = repo / NO_BATCHING_MODEL
        shutil.copytree(repo / CPU_MODEL_NAME, twin)
        unbatched = dataclasses.replace(serving, dynamic_batching=False)
        inputs = checkpoint_input_names(ckpt.path)
        (twin / "config.pbtxt").write_text(render_cpu_config(unbatched, inputs, name=NO_BATCHING_MODEL))
    stamp.write_text(source)
    return repo


@contextlib.contextmanager
def local_triton(repo: Path, models: tuple[str, ...] = (CPU_MODEL_NAME,)) -> Iterator[LocalTriton]:
    triton = LocalTriton(repo, model_names=models, log_path=WORK_DIR / "tritonserver.log")
    triton.start(timeout_s=120)
    try:
        yield triton
    finally:
        triton.stop()


def _wait_http_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log {log_path}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s; log {log_path}")


@contextlib.contextmanager
def uvicorn_server(
    app: str, env: dict[str, str], ready_path: str, name: str, *, workers: int = 1
) -> Iterator[Server]:
    """`uvicorn --factory <app>` in a subprocess on a free loopback port; yields its URL and pid.

    One worker by default, uvloop + httptools: the setup the serving notes recommend for a 2-core
    box shared with Triton and the load generator. With `workers` > 1 uvicorn binds the socket once
    and forks that many processes (what `strategist serve --workers N` runs), all in the server's
    process group, so `group_cpu_s(server.pgid)` counts them all.
    """
    port = free_port()
    log_path = WORK_DIR / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "uvicorn", "--factory", app,
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # a benchmark stopped without cleanup leaves no server behind
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http_ok(url + ready_path, process, 120, log_path)
            yield Server(url, process.pid)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def gateway(
    triton: LocalTriton, *, workers: int = 1, env: dict[str, str] | None = None, name: str = "gateway"
) -> contextlib.AbstractContextManager[Server]:
    """The gateway on `triton`; `env` adds GatewaySettings (STRATEGIST_*) for a variant."""
    settings = {
        "STRATEGIST_BACKEND": "triton",
        "STRATEGIST_TRITON_URL": triton.grpc_url,
        "STRATEGIST_MODEL_NAME": CPU_MODEL_NAME,
        "STRATEGIST_LOG_LEVEL": "warning",
        **(env or {}),
    }
    return uvicorn_server("server.main:create_app", settings, "/readyz", name, workers=workers)


def peer(ckpt: Checkpoint) -> contextlib.AbstractContextManager[Server]:
    env = {"PEER_CHECKPOINT": str(ckpt.path)}
    return uvicorn_server("benchmarks.peer_app:create_app", env, "/healthz", "peer")
