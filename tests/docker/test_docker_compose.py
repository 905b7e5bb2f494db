"""The GPU stack's compose file and gateway image, checked statically (no Docker engine here)."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest
import yaml

from server.settings import GatewaySettings
from strategist import cli, contract
from strategist.commands import export as export_command
from strategist.paths import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"


def resolve(value: str) -> str:
    """Compose's `${VAR:-default}` interpolation with nothing set in the environment."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_three_services_in_dependency_order(compose):
    services = compose["services"]
    assert set(services) == {"engine-build", "triton", "gateway"}
    assert services["triton"]["depends_on"] == {
        "engine-build": {"condition": "service_completed_successfully"}
    }
    assert services["gateway"]["depends_on"] == {"triton": {"condition": "service_healthy"}}


def test_engine_is_built_with_the_tensorrt_release_of_the_triton_image(compose):
    services = compose["services"]
    dockerfile = (DOCKER / "Dockerfile.engine").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert base == "nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3"
    (default,) = re.findall(r"^ARG TRITON_RELEASE=(\S+)$", dockerfile, flags=re.MULTILINE)
    build = services["engine-build"]["build"]
    assert build["dockerfile"] == "docker/Dockerfile.engine"
    release = resolve(build["args"]["TRITON_RELEASE"])
    serve_match = re.fullmatch(
        r"nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3", resolve(services["triton"]["image"])
    )
    assert serve_match and release == serve_match.group(1) == default
    # One variable drives both, so overriding it cannot split them either.
    assert build["args"]["TRITON_RELEASE"] == services["triton"]["image"].split(":", 1)[1].removesuffix(
        "-py3"
    )


def test_gpu_is_reserved_for_the_build_and_for_triton(compose):
    for name in ("engine-build", "triton"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
    assert "deploy" not in compose["services"]["gateway"]


def test_only_the_gateway_publishes_a_port(compose):
    services = compose["services"]
    assert [name for name, s in services.items() if s.get("ports")] == ["gateway"]
    (port,) = services["gateway"]["ports"]
    assert resolve(port).endswith(":8080")
    assert "8001" in [str(p) for p in services["triton"]["expose"]]


def test_health_checks_and_shared_memory(compose):
    services = compose["services"]
    triton_check = " ".join(services["triton"]["healthcheck"]["test"])
    assert f"/v2/models/{contract.GPU_MODEL_NAME}/ready" in triton_check
    assert "/readyz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert services["triton"]["shm_size"] == "1g"
    command = services["triton"]["command"]
    assert f"--load-model={contract.GPU_MODEL_NAME}" in command and "--model-repository=/models" in command


def test_gateway_environment_maps_to_real_settings_and_requires_a_key(compose):
    environment = compose["services"]["gateway"]["environment"]
    fields = set(GatewaySettings.model_fields)
    for key in environment:
        assert key.startswith("STRATEGIST_") and key.removeprefix("STRATEGIST_").lower() in fields, key
    assert environment["STRATEGIST_TRITON_URL"] == "triton:8001"
    assert environment["STRATEGIST_MODEL_NAME"] == contract.GPU_MODEL_NAME
    assert ":?" in environment["STRATEGIST_API_KEY"]  # compose refuses to start without a key


def test_engine_build_runs_the_export_command_with_no_shapes_of_its_own(compose):
    service = compose["services"]["engine-build"]
    assert service["command"][:2] == ["python", "/app/docker/build_engine.py"]
    assert "../model_repository:/models" in service["volumes"]
    assert any(v.endswith(":/checkpoint:ro") for v in service["volumes"])
    # Shapes come from strategist.contract through the export code, never spelled out in docker/.
    shapes = [f"x{'x'.join(map(str, dims))}" for dims in contract.INPUT_SHAPES.values()]
    for path in (p for p in DOCKER.iterdir() if p.is_file()):
        text = path.read_text()
        assert not any(shape in text for shape in shapes), f"{path.name} hard-codes an input shape"
        assert "trtexec " not in text and "prepare_engine_onnx" not in text, path.name


def test_gateway_image_is_multi_stage_non_root_and_copies_what_exists():
    dockerfile = (DOCKER / "Dockerfile.gateway").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", dockerfile, flags=re.MULTILINE)
    assert len(stages) >= 2
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE 8080$", dockerfile, flags=re.MULTILINE)
    assert "server.main:create_app" in dockerfile and "--factory" in dockerfile
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the project"


def test_gateway_requirements_are_project_dependencies():
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    lines = (DOCKER / "gateway-requirements.txt").read_text().splitlines()
    for line in lines:
        requirement = line.split("#")[0].strip()
        if requirement:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
            assert f'"{name}' in pyproject, f"{name} is not declared in pyproject.toml"


@pytest.fixture(scope="module")
def build_engine():
    spec = importlib.util.spec_from_file_location(
        "strategist_build_engine_under_test", DOCKER / "build_engine.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_engine_build_command_is_the_export_route(build_engine, tmp_path):
    args = cli.build_parser().parse_args(
        build_engine.export_command(tmp_path / "repo", tmp_path / "ckpt", 48, 32)
    )
    assert args.func is export_command.run  # `strategist export`, with its FP16 parity check
    assert (args.target, args.max_batch, args.opt_batch, args.version) == ("trt", 48, 32, 1)
    assert (args.repo, args.checkpoint) == (tmp_path / "repo", tmp_path / "ckpt")


def test_engine_build_uses_the_config_batch_and_keeps_an_engine_that_passed_parity(
    build_engine, tmp_path, monkeypatch
):
    """The step's own logic, with a stand-in for `strategist export` (no TensorRT or GPU here)."""
    monkeypatch.delenv("FORCE_REBUILD", raising=False)
    repo, checkpoint = tmp_path / "models", tmp_path / "checkpoint"
    version_dir = repo / contract.GPU_MODEL_NAME / "1"
    version_dir.mkdir(parents=True)
    (version_dir.parent / "config.pbtxt").write_text(
        f'name: "{contract.GPU_MODEL_NAME}"\nmax_batch_size: 48\n'
    )
    calls: list[list[str]] = []

    def fake_export(argv: list[str], *, passes: bool = True) -> int:
        calls.append(argv)
        (version_dir / "model.plan").write_text("plan\n")
        if passes:  # build_info.json is written only once parity has passed
            (version_dir / "build_info.json").write_text("{}\n")
        return 0 if passes else 1

    monkeypatch.setattr(build_engine.cli, "main", fake_export)
    argv = ["--repo", str(repo), "--checkpoint", str(checkpoint), "--opt-batch", "64"]
    assert build_engine.main(argv) == 1 and not calls  # no checkpoint mounted

    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    past = (checkpoint / "model.safetensors").stat().st_mtime - 10
    os.utime(checkpoint / "model.safetensors", (past, past))
    assert build_engine.main(argv) == 0
    (call,) = calls
    assert call[:3] == ["export", "--target", "trt"]
    assert call[call.index("--max-batch") + 1] == "48" and call[call.index("--opt-batch") + 1] == "48"

    assert build_engine.main(argv) == 0 and len(calls) == 1  # passed parity after the weights: kept
    assert build_engine.main([*argv, "--force"]) == 0 and len(calls) == 2

    os.utime(version_dir / "build_info.json", (past - 5, past - 5))  # weights changed since the build
    assert build_engine.main(argv) == 0 and len(calls) == 3

    monkeypatch.setattr(build_engine.cli, "main", lambda a: fake_export(a, passes=False))
    os.utime(version_dir / "build_info.json", (past - 5, past - 5))
    assert build_engine.main(argv) == 1 and len(calls) == 4
    assert build_engine.main(argv) == 1 and len(calls) == 5  # a plan that failed parity is never kept


@pytest.mark.parametrize("image", ["gateway", "engine"])
def test_build_contexts_leave_out_environments_and_weights(image):
    ignored = (DOCKER / f"Dockerfile.{image}.dockerignore").read_text().split()
    for path in (".git", ".venv", "model_repository", "strategist/assets"):
        assert path in ignored
    dockerfile = (DOCKER / f"Dockerfile.{image}").read_text()
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, flags=re.MULTILINE):
        for source in line.split()[:-1]:
            assert (PROJECT_ROOT / source).exists(), f"Dockerfile.{image} copies {source}, which is not there"
            assert source not in ignored, f"{source} is copied but excluded from the build context"
