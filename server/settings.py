"""Gateway settings, read from the environment (prefix `STRATEGIST_`) once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from strategist import contract, limits
from strategist.paths import MODEL_REPOSITORY_DIR, PROJECT_ROOT

BackendKind = Literal["triton", "onnxruntime"]


def _check_endpoint(setting: str, value: str) -> None:
    if "://" in value:
        raise ValueError(f"{setting} takes gRPC host:port without a scheme, got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{setting} takes host:port (port 1-65535), got {value!r}")


class GatewaySettings(BaseSettings):
    """Every knob of the gateway. Environment variable = `STRATEGIST_` + field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="STRATEGIST_", extra="ignore", protected_namespaces=())

    backend: BackendKind = Field(
        default="triton",
        description="'triton': Triton over gRPC. 'onnxruntime': the same ONNX in-process (fallback where the "
        "Triton binary cannot run).",
    )
    triton_url: str = Field(default="127.0.0.1:8001", description="Triton gRPC endpoint host:port.")
    triton_urls: str = Field(
        default="",
        description="Several Triton gRPC endpoints, comma-separated host:port,host:port; when set it replaces "
        "triton_url and the gateway balances across them (least outstanding requests among healthy ones).",
    )
    triton_discovery: Literal["static", "dns"] = Field(
        default="static",
        description="'static': each host:port is one endpoint. 'dns': each host name is re-resolved "
        "every triton_resolve_interval_s and every address it gives is an endpoint (a Kubernetes "
        "headless Service: one address per Triton pod).",
    )
    triton_probe_interval_s: float = Field(
        default=0.5, gt=0, le=60, description="Background health probe period of each Triton endpoint."
    )
    triton_resolve_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often 'dns' discovery re-resolves the host names."
    )
    model_name: str = Field(
        default=contract.CPU_MODEL_NAME, description="Model name in the Triton repository."
    )
    model_version: str = Field(default="", description="Model version to ask for; empty = Triton's latest.")
    model_repository: Path = Field(
        default=MODEL_REPOSITORY_DIR,
        description="Triton model repository; the onnxruntime backend reads "
        "<model_repository>/<model_name>/<version>/model.onnx from it.",
    )
    onnx_path: Path | None = Field(
        default=None, description="Explicit ONNX file for the onnxruntime backend."
    )
    onnx_threads: int = Field(
        default=1, ge=1, le=64, description="ONNX Runtime intra-op threads (onnxruntime backend)."
    )

    request_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Deadline for one backend call; slower -> 503 (never a hang)."
    )
    request_deadline_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Deadline of a whole prediction request from its arrival (body, queueing, backend); "
        "past it -> 503 + Retry-After. A client may ask for its own with X-Request-Deadline-Ms or "
        "grpc-timeout, up to max_request_deadline_s.",
    )
    max_request_deadline_s: float = Field(
        default=10.0, gt=0, le=300, description="Longest deadline a client header may ask for."
    )
    deadline_answer_margin_ms: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description="The 503 for a request that cannot finish in time is sent this long before its "
        "deadline (at most a tenth of the deadline), so that it reaches the client within the deadline "
        "even while the event loop is busy: on a loaded 2-core machine a due timer runs up to ~15 ms "
        "late, and with 25 ms one SIGSTOP answer of 985 still reached the client 5 ms late (chaos).",
    )
    max_in_flight: int = Field(
        default=8,
        ge=1,
        le=100_000,
        description="Most prediction requests running at once in one gateway worker; more wait in the "
        "queue (max_queued), beyond it -> 429 + Retry-After at once. 8 keep Triton's batcher fed on a "
        "2-core machine while each admitted request gets the event loop often enough to finish within "
        "its deadline under overload (32 did not: benchmarks/results/chaos_ablation).",
    )
    max_queued: int = Field(
        default=256,
        ge=0,
        le=100_000,
        description="Prediction requests that may wait for one of the max_in_flight slots, in arrival "
        "order, their deadline running; one more, or one whose expected wait passes half its deadline, "
        "is refused with 429; one still without a slot after half its deadline gets 429 then. "
        "Waiting costs no CPU, so clients beyond the in-flight bound queue instead of retrying into a "
        "storm of 429s. 0: refuse as soon as every slot is busy.",
    )
    max_loop_lag_ms: float | None = Field(
        default=None,
        gt=0,
        le=60_000,
        description="When set, requests wait for a slot only while the gateway's event loop runs due "
        "work less than this late; over it every request beyond the in-flight bound is refused with "
        "429 at once. Off by default: the bounded wait (half the deadline) keeps admitted answers in "
        "time under open-loop overload as well, and with the rule 256 closed-loop clients that do "
        "not back off kept the loop busy with their own 429s (11 % of the best rate; "
        "benchmarks/results/closed_loop_check_before_lag_rule_off.md).",
    )
    trust_request_start: bool = Field(
        default=False,
        description="A proxy in front sets X-Request-Start (t=<microseconds since the epoch>) when a "
        "request reaches it, and the deadline runs from then, covering the wait in the proxy's queue. "
        "Set by `strategist serve --edge-proxy`; leave off when clients reach the gateway directly.",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="The whole request body must arrive within this; else 408."
    )
    readiness_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="Deadline of the /readyz backend check."
    )
    max_body_bytes: int = Field(
        default=8_000_000, ge=1024, description="Largest accepted request body; larger -> 413 before parsing."
    )
    max_batch_cars: int = Field(
        default=limits.MAX_BATCH_CARS,
        ge=1,
        le=4096,
        description="Most cars in one /predict/batch call. Each car is 2 model rows (as raced + clean air): "
        "keep 2 x this <= the model's max_batch_size.",
    )
    request_decoder: Literal["fast", "pydantic"] = Field(
        default="fast",
        description="fast: JSON bodies decoded by msgspec straight into arrays, checked with numpy "
        "(server/decode.py); pydantic: the former path (model_validate_json), kept to measure against. "
        "Both give the same answers and the same 422 messages.",
    )
    lean_routes: bool = Field(
        default=True,
        description="POST /predict and /predict/batch served by a pure-ASGI layer that skips FastAPI's "
        "routing and dependency resolution (server/fast_path.py); same answers, status codes and "
        "headers. false: through the FastAPI routes only, kept to measure against.",
    )
    default_race_laps: int = Field(
        default=57,
        ge=2,
        le=200,
        description="Race length used for the default fuel model when a request gives neither `fuel` nor "
        "`race_laps` (57: a typical Grand Prix).",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the prediction endpoints; unset = no authentication."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging level of the gateway's own loggers (server.*)."
    )

    # --- race sessions (server/live, docs/live.md) ---
    live_store: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="Where race sessions live: 'sqlite' (one file, embedded) or 'redis' (several gateway "
        "replicas serving one race).",
    )
    live_sqlite_path: Path = Field(
        default=PROJECT_ROOT / "runs" / "live" / "sessions.sqlite", description="SQLite file of the sessions."
    )
    live_redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis server of the sessions (live_store=redis)."
    )

    @field_validator("api_key")
    @classmethod
    def _no_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty STRATEGIST_API_KEY= would otherwise silently mean "every empty token is valid".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("triton_url")
    @classmethod
    def _no_scheme(cls, value: str) -> str:
        _check_endpoint("triton_url", value)
        return value

    @field_validator("triton_urls")
    @classmethod
    def _endpoint_list(cls, value: str) -> str:
        if value.strip():
            for part in value.split(","):
                _check_endpoint("triton_urls", part.strip())
        return value

    def triton_endpoints(self) -> list[str]:
        """The Triton host:port targets: triton_urls when set (order kept, duplicates dropped), else
        triton_url alone."""
        if not self.triton_urls.strip():
            return [self.triton_url]
        return list(dict.fromkeys(part.strip() for part in self.triton_urls.split(",")))

    def onnx_file(self) -> Path:
        """The ONNX the in-process backend runs: `onnx_path`, else the repository's model.onnx."""
        if self.onnx_path is not None:
            return self.onnx_path
        model_dir = self.model_repository / self.model_name
        if self.model_version:
            return model_dir / self.model_version / "model.onnx"
        versions = sorted((int(p.name) for p in model_dir.glob("[0-9]*") if p.name.isdigit()), reverse=True)
        for version in versions:
            candidate = model_dir / str(version) / "model.onnx"
            if candidate.exists():
                return candidate
        return model_dir / "1" / "model.onnx"
