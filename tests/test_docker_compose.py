"""The GPU stack's compose file and gateway image, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from server.settings import GatewaySettings
from strategist import contract
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
    builder = resolve(services["engine-build"]["image"])
    server = resolve(services["triton"]["image"])
    build_match = re.fullmatch(r"nvcr\.io/nvidia/tensorrt:(\d\d\.\d\d)-py3", builder)
    serve_match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3", server)
    assert build_match and serve_match, (builder, server)
    assert build_match.group(1) == serve_match.group(1)
    # One variable drives both tags, so overriding it cannot split them either.
    raw = services["engine-build"]["image"].split(":", 1)[1], services["triton"]["image"].split(":", 1)[1]
    assert raw[0] == raw[1]


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
    assert "/v2/models/virtual_strategist/ready" in triton_check
    assert "/readyz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert services["triton"]["shm_size"] == "1g"
    command = services["triton"]["command"]
    assert "--load-model=virtual_strategist" in command and "--model-repository=/models" in command


def test_gateway_environment_maps_to_real_settings_and_requires_a_key(compose):
    environment = compose["services"]["gateway"]["environment"]
    fields = set(GatewaySettings.model_fields)
    for key in environment:
        assert key.startswith("STRATEGIST_") and key.removeprefix("STRATEGIST_").lower() in fields, key
    assert environment["STRATEGIST_TRITON_URL"] == "triton:8001"
    assert environment["STRATEGIST_MODEL_NAME"] == "virtual_strategist"
    assert ":?" in environment["STRATEGIST_API_KEY"]  # compose refuses to start without a key


def test_engine_build_script_uses_the_contract_shapes(compose):
    script = (DOCKER / "build_engine.sh").read_text()
    volumes = compose["services"]["engine-build"]["volumes"]
    assert "./build_engine.sh:/opt/strategist/build_engine.sh:ro" in volumes
    (shape_line,) = [line for line in script.splitlines() if line.startswith("shape()")]
    for name, dims in contract.INPUT_SHAPES.items():
        assert f"{name}:${{1}}x{'x'.join(map(str, dims))}" in shape_line
    assert "--stronglyTyped" in script and "max_batch_size" in script


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


def _run_build_script(repo: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MODEL_REPOSITORY": str(repo)}
    return subprocess.run(
        ["bash", str(DOCKER / "build_engine.sh")], env=env, capture_output=True, text=True, timeout=30
    )


def test_engine_build_script_runs_trtexec_with_the_config_batch_and_keeps_a_fresh_plan(tmp_path):
    """The script's own logic, with a stand-in trtexec that records its arguments (no TensorRT here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "trtexec_calls.txt"
    fake = bin_dir / "trtexec"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> {calls}\n'
        'for arg in "$@"; do case "$arg" in --saveEngine=*) echo plan > "${arg#--saveEngine=}";; esac; done\n'
    )
    fake.chmod(0o755)
    repo = tmp_path / "models"
    model_dir = repo / "virtual_strategist"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text('name: "virtual_strategist"\nmax_batch_size: 48\n')

    missing = _run_build_script(repo, bin_dir)
    assert missing.returncode == 1 and "prepare_engine_onnx.py" in missing.stderr

    (model_dir / "1" / "model.onnx").write_bytes(b"onnx")
    built = _run_build_script(repo, bin_dir)
    assert built.returncode == 0, built.stderr
    (args,) = calls.read_text().splitlines()
    assert "--stronglyTyped" in args
    assert "--maxShapes=telemetry:48x5x100x5,tactical:48x2x2" in args
    assert "--optShapes=telemetry:32x5x100x5,tactical:32x2x2" in args
    assert (model_dir / "1" / "model.plan").read_text() == "plan\n"

    kept = _run_build_script(repo, bin_dir)  # plan newer than the ONNX: no second build
    assert kept.returncode == 0 and "keeping it" in kept.stdout
    assert len(calls.read_text().splitlines()) == 1


def test_gateway_build_context_leaves_out_environments_and_weights():
    ignored = (DOCKER / "Dockerfile.gateway.dockerignore").read_text().split()
    for path in (".git", ".venv", "model_repository", "strategist/assets"):
        assert path in ignored
    dockerfile = (DOCKER / "Dockerfile.gateway").read_text()
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert source not in ignored, f"{source} is copied but excluded from the build context"
