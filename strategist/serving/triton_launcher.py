"""Run a real Triton Inference Server locally, without Docker and without a GPU.

The `nvidia-pytriton` wheel bundles a `tritonserver` binary with the Python backend. This module
starts that binary on a model repository (normally the CPU model `virtual_strategist_cpu`):

- a backend directory is assembled in a private work folder: the wheel's `backends/python/` plus
  the `triton_python_backend_stub` built for *this* interpreter's Python version (the stub embeds
  Python, so it must match the numpy/onnxruntime it imports);
- `LD_LIBRARY_PATH` gains the wheel's `nvidia_pytriton.libs/` (the copied backend links to it),
  `PYTHONPATH` gains this interpreter's site-packages (numpy, onnxruntime for the stub);
- gRPC / HTTP / metrics ports are free ports unless given, all on 127.0.0.1; the server reads a
  repository of links to the named models only, with model control mode "none": nothing can load or
  unload a model through its ports (any local process could reach them, the gateway is the public face);
- the server's log is kept in a file; `stop()` sends SIGTERM, then SIGKILL, to the server's process
  group (the stubs included) and removes its shared-memory regions; `start()` again restarts it on
  the same ports (strategist.serving.supervisor does that by itself); `close()` also removes the
  work folder. The server dies with its parent (PR_SET_PDEATHSIG) and at interpreter exit (atexit).

    with LocalTriton("model_repository").start(timeout_s=60) as triton:  # close()d on exit
        client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from strategist.contract import CPU_MODEL_NAME
from strategist.errors import StrategistError

DEFAULT_MODELS: tuple[str, ...] = (CPU_MODEL_NAME,)
MIN_GLIBC = (2, 35)  # the wheel's binary is built against it
_PR_SET_PDEATHSIG = 1


class TritonLaunchError(StrategistError):
    """Triton could not be found, could not start, or did not become ready."""


def _pytriton_package_dir() -> Path:
    """Where the nvidia-pytriton wheel is installed, found without importing it: only its bundled
    tritonserver binary is used, and importing the package loads its whole client stack."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonLaunchError(
            "the nvidia-pytriton wheel is not installed (it bundles tritonserver): "
            "pip install 'nvidia-pytriton==0.7.0' (Linux x86_64, glibc >= 2.35)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _check_glibc() -> None:
    name, version = platform.libc_ver()
    if name != "glibc":
        raise TritonLaunchError(
            f"the bundled tritonserver needs glibc >= 2.35; this system's C library is {name!r}"
        )
    found = tuple(int(part) for part in version.split(".")[:2])
    if found < MIN_GLIBC:
        raise TritonLaunchError(
            f"the bundled tritonserver needs glibc >= 2.35; this system has glibc {version}"
        )


def find_tritonserver() -> Path:
    """Path of the `tritonserver` binary inside the nvidia-pytriton wheel (checks glibc too)."""
    _check_glibc()
    binary = _pytriton_package_dir() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise TritonLaunchError(f"{binary} is missing or not executable: reinstall nvidia-pytriton")
    return binary


def _libs_dir() -> Path:
    package_dir = _pytriton_package_dir()
    for candidate in (
        package_dir.parent / "nvidia_pytriton.libs",
        package_dir / "tritonserver" / "external_libs",
    ):
        if candidate.is_dir():
            return candidate
    raise TritonLaunchError(
        f"nvidia_pytriton.libs not found next to {package_dir}: reinstall nvidia-pytriton"
    )


def prepare_backend_dir(target: Path) -> Path:
    """Assemble `<target>/backends/python` (backend library + utils + this Python's stub); returns backends/."""
    dist = _pytriton_package_dir() / "tritonserver"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        available = sorted(p.name for p in (dist / "python_backend_stubs").iterdir())
        raise TritonLaunchError(
            f"no Python-backend stub for Python {python_version} in the wheel (has {available})"
        )
    backends = Path(target) / "backends"
    python_backend = backends / "python"
    shutil.copytree(
        dist / "backends" / "python", python_backend, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(stub, python_backend / stub.name)
    return backends


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGTERM the child when the parent (thread) dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _server_environment(libs: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    site_dirs = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*site_dirs, env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class LocalTriton:
    """A tritonserver process serving `model_names` from `model_repository` on 127.0.0.1."""

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        model_names: Sequence[str] = DEFAULT_MODELS,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.model_names = tuple(model_names)
        if not self.model_names:
            raise TritonLaunchError("no model to load: give at least one model name")
        free = iter(_distinct_free_ports(3))
        self.grpc_port = grpc_port or next(free)
        self.http_port = http_port or next(free)
        self.metrics_port = metrics_port or next(free)
        self._log_path = Path(log_path).resolve() if log_path else None
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_file: object | None = None
        self._shm_prefix = f"strategist_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self._served_repository: Path | None = None

    # --- addresses -----------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # --- lifecycle -----------------------------------------------------------------------
    def command(self, binary: Path, backends: Path) -> list[str]:
        """The tritonserver command line (without starting anything)."""
        cache_dir = binary.parent.parent / "caches"
        args = [
            str(binary),
            f"--model-repository={self._served_repository or self.model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={cache_dir}",
            # "none": every model of the (links-only) repository loads at start, and the repository
            # API refuses load/unload, so no local process can take the model away.
            "--model-control-mode=none",
            "--grpc-address=127.0.0.1",  # loopback only: the gateway is the public face
            f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-grpc=true",
            "--allow-http=true",
            "--allow-metrics=true",
            "--pinned-memory-pool-byte-size=0",  # no CUDA here: skip the pinned-memory attempt
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
            *self.extra_args,
        ]
        return args

    def start(self, timeout_s: float = 60.0) -> LocalTriton:
        """Start the server and wait until every model is ready; raise TritonLaunchError with the log tail."""
        if self._process is not None:
            raise TritonLaunchError(f"tritonserver already started (pid {self._process.pid})")
        if not self.model_repository.is_dir():
            raise TritonLaunchError(f"model repository {self.model_repository} does not exist")
        for name in self.model_names:
            if not (self.model_repository / name / "config.pbtxt").is_file():
                raise TritonLaunchError(f"{self.model_repository / name / 'config.pbtxt'} not found")
        binary = find_tritonserver()
        if self._workdir is None:  # a restart reuses the folder (and appends to its log)
            self._workdir = Path(tempfile.mkdtemp(prefix="strategist-triton-"))
        backends = self._workdir / "backends"
        if not (backends / "python").is_dir():
            backends = prepare_backend_dir(self._workdir)
        self._served_repository = self._link_repository(self._workdir / "repository")
        if self._log_path is None:
            self._log_path = self._workdir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log_file
        self._process = subprocess.Popen(
            self.command(binary, backends),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_server_environment(_libs_dir()),
            cwd=self._workdir,
            preexec_fn=die_with_parent,
            start_new_session=True,  # own process group: stop() reaches the stubs, Ctrl-C goes to us
        )
        atexit.register(self.close)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            # Not ready in time: it may be hung (a stopped process does not act on SIGTERM), and it
            # has nothing in flight worth draining, so it is killed at once.
            self.stop(kill=True)
            raise
        return self

    def _link_repository(self, target: Path) -> Path:
        """A repository holding links to the named models only (model control mode "none" loads
        everything it finds)."""
        target.mkdir(parents=True, exist_ok=True)
        for name in self.model_names:
            link = target / name
            if not link.is_symlink():
                link.symlink_to(self.model_repository / name, target_is_directory=True)
        return target

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise TritonLaunchError(
                    f"tritonserver exited with code {code} before it was ready; log {self._log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.2)
        raise TritonLaunchError(
            f"tritonserver not ready after {timeout_s:.0f} s; log {self._log_path}:\n{self.log_tail()}"
        )

    def _http_ok(self, path: str, timeout_s: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout_s) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def is_ready(self, timeout_s: float = 1.0) -> bool:
        """Server live and ready, and every requested model ready (HTTP health endpoints; a hung
        server fails after timeout_s)."""
        if self._process is None or self._process.poll() is not None:
            return False
        return self._http_ok("/v2/health/ready", timeout_s) and all(
            self._http_ok(f"/v2/models/{name}/ready", timeout_s) for name in self.model_names
        )

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """The server's exit status once it has exited (None while running or not started)."""
        return None if self._process is None else self._process.poll()

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        if self._process is None:
            raise TritonLaunchError("tritonserver was not started")
        return self._process.wait()

    def stop(self, timeout_s: float = 10.0, *, kill: bool = False) -> None:
        """SIGTERM the server's process group, SIGKILL it after `timeout_s` (at once with `kill`: a
        hung server does not act on SIGTERM); reap it, its stubs and their shared memory. Idempotent;
        start() may follow."""
        process, self._process = self._process, None
        if process is not None:
            if kill:
                self._signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
            elif process.poll() is None:
                self._signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal_group(process.pid, signal.SIGKILL)
                    process.wait(timeout=timeout_s)
            # Stubs left behind by a killed server would hold shared memory: clear the group.
            self._signal_group(process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        self._remove_shared_memory()

    def close(self) -> None:
        """stop(), then remove the work folder (the copied backend, the links and a log kept there);
        idempotent."""
        self.stop()
        with contextlib.suppress(ValueError):
            atexit.unregister(self.close)
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            if self._log_path is not None and self._log_path.is_relative_to(workdir):
                self._log_path = None
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _remove_shared_memory(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self._shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def __enter__(self) -> LocalTriton:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
