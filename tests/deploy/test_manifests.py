"""deploy/: every manifest validates, and the manifests agree with the code they deploy.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that the kubernetes-validate
package ships (offline, strict: unknown fields fail). Custom resources (ServiceMonitor,
InferenceService), the Kustomization and prometheus-adapter's rule file have no schema there;
their structure is checked with the small schemas below.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers.skips import requires_haproxy

from server.main import ENDPOINTS
from server.metrics import GatewayMetrics
from server.settings import GatewaySettings
from strategist import contract
from strategist.paths import PROJECT_ROOT
from strategist.serving.edge_proxy import (
    EdgeLimits,
    behind_edge,
    find_haproxy,
    render_config,
)

K8S = PROJECT_ROOT / "deploy" / "k8s"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "virtual-strategist.json"
K8S_VERSION = "1.30.0"
NOT_IN_KUSTOMIZATION = {"kserve-inferenceservice.yaml"}  # the alternative to triton.yaml

_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_SELECTOR = {"type": "object", "required": ["matchLabels"]}
CUSTOM_SCHEMAS: dict[str, dict[str, Any]] = {
    "monitoring.coreos.com/v1/ServiceMonitor": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": _SELECTOR,
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                            },
                        },
                    },
                },
            },
        },
    },
    "serving.kserve.io/v1beta1/InferenceService": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["predictor"],
                "properties": {
                    "predictor": {
                        "type": "object",
                        "required": ["triton"],
                        "properties": {
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 1},
                            "triton": {
                                "type": "object",
                                "required": ["storageUri"],
                                "properties": {
                                    "storageUri": {"type": "string"},
                                    "runtimeVersion": {"type": "string"},
                                    "args": {"type": "array", "items": {"type": "string"}},
                                    "ports": {"type": "array"},
                                    "resources": {"type": "object"},
                                },
                                "additionalProperties": False,
                            },
                        },
                    }
                },
            },
        },
    },
    "kustomize.config.k8s.io/v1beta1/Kustomization": {
        "type": "object",
        "required": ["resources"],
        "properties": {
            "namespace": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
    },
}
ADAPTER_RULES_SCHEMA = {
    "type": "object",
    "required": ["rules"],
    "properties": {
        "rules": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["seriesQuery", "resources", "name", "metricsQuery"],
                "additionalProperties": False,
                "properties": {
                    "seriesQuery": {"type": "string"},
                    "resources": {"type": "object", "required": ["overrides"]},
                    "name": {"type": "object", "required": ["matches", "as"]},
                    "metricsQuery": {"type": "string"},
                },
            },
        }
    },
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _container(deployment: str) -> dict[str, Any]:
    return _one("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("file,doc", _documents(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_manifest_validates(file, doc):
    key = f"{doc['apiVersion']}/{doc['kind']}"
    if key in CUSTOM_SCHEMAS:
        jsonschema.validate(doc, CUSTOM_SCHEMAS[key])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_wrong_manifest_is_rejected():
    bad = json.loads(json.dumps(_one("Service", "triton-grpc")))
    bad["spec"]["ports"][0]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    monitor = json.loads(json.dumps(_one("ServiceMonitor", "gateway")))
    monitor["spec"]["endpoints"][0]["pathh"] = "/metrics"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, CUSTOM_SCHEMAS["monitoring.coreos.com/v1/ServiceMonitor"])


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} - NOT_IN_KUSTOMIZATION
    assert sorted(kustomization["resources"]) == sorted(files)


def test_gateway_env_names_are_settings_and_the_model_is_the_contracts():
    env = {e["name"]: e for e in _container("gateway")["env"]}
    fields = {f"STRATEGIST_{name.upper()}" for name in GatewaySettings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert env["STRATEGIST_MODEL_NAME"]["value"] == contract.GPU_MODEL_NAME
    assert env["STRATEGIST_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "strategist-api-key"
    # The gateway's own parser accepts what the manifest sets.
    values = {k.removeprefix("STRATEGIST_").lower(): v["value"] for k, v in env.items() if "value" in v}
    settings = GatewaySettings(**values)
    assert settings.triton_discovery == "dns"
    host, _, port = settings.triton_endpoints()[0].rpartition(":")
    service = _one("Service", "triton-grpc")
    assert host == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert int(port) == service["spec"]["ports"][0]["port"] == _port(_container("triton"), "grpc")


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_gateway_probes_port_and_hardening_match_the_app_and_its_image():
    gateway = _container("gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz", "/metrics"} <= ENDPOINTS
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile.gateway").read_text()
    exposed = int(re.search(r"^EXPOSE (\d+)", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert _port(gateway, "gateway") == exposed and gateway["args"][
        gateway["args"].index("--port") + 1
    ] == str(exposed)
    uid = re.search(r"--uid (\d+)", dockerfile).group(1)  # type: ignore[union-attr]
    pod = _one("Deployment", "gateway")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] and str(pod["runAsUser"]) == uid
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    monitor = _one("ServiceMonitor", "gateway")["spec"]["endpoints"][0]
    assert monitor["path"] == "/metrics"


def test_triton_runs_every_model_with_gpu_and_ready_probes():
    triton = _container("triton")
    assert "--model-control-mode=none" in triton["args"]
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe"):
        assert triton[probe]["httpGet"]["path"] == "/v2/health/ready"
    kserve = _one("InferenceService", "virtual-strategist")["spec"]["predictor"]["triton"]
    assert "--model-control-mode=none" in kserve["args"]


def _triton_listens_on() -> dict[str, int]:
    """The ports tritonserver opens with the manifest's arguments (its defaults unless overridden)."""
    ports = {"http": 8000, "grpc": 8001, "metrics": 8002}
    for arg in _container("triton")["args"]:
        if match := re.fullmatch(r"--(http|grpc|metrics)-port=(\d+)", arg):
            ports[match[1]] = int(match[2])
    return ports


def test_triton_container_ports_are_the_ones_it_listens_on():
    triton = _container("triton")
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == _triton_listens_on()


def test_only_the_gateway_reaches_triton():
    policy = _one("NetworkPolicy", "triton-from-gateway-only")["spec"]
    triton_labels = _one("Deployment", "triton")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = _one("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= triton_labels.items()
    listens = _triton_listens_on()
    grpc_rule = next(
        r for r in policy["ingress"] if {"port": listens["grpc"], "protocol": "TCP"} in r["ports"]
    )
    assert [f["podSelector"]["matchLabels"] for f in grpc_rule["from"]] == [
        {k: gateway_labels[k] for k in grpc_rule["from"][0]["podSelector"]["matchLabels"]}
    ]
    # The gateway may open Triton's HTTP and gRPC ports, Prometheus its metrics port: each rule
    # opens exactly the ports Triton listens on for that client.
    opened = {
        "podSelector" if "podSelector" in rule["from"][0] else "namespaceSelector": {
            p["port"] for p in rule["ports"]
        }
        for rule in policy["ingress"]
    }
    assert opened == {
        "podSelector": {listens["http"], listens["grpc"]},
        "namespaceSelector": {listens["metrics"]},
    }


def test_services_and_monitors_name_ports_that_exist():
    docs = [d for _, d in _documents()]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    services = [d for d in docs if d["kind"] == "Service"]
    for service in services:
        selector = service["spec"]["selector"].items()
        pods = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        named = {
            p["name"] for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str):
                assert port["targetPort"] in named, (service["metadata"]["name"], port)
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"].items()
        scraped = [s for s in services if selector <= s["metadata"].get("labels", {}).items()]
        assert scraped, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["endpoints"]:
            for service in scraped:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, (
                    monitor["metadata"]["name"],
                    service["metadata"]["name"],
                )


def test_triton_autoscales_on_the_adapter_queue_metric():
    config = yaml.safe_load(_one("ConfigMap", "prometheus-adapter-triton-rules")["data"]["config.yaml"])
    jsonschema.validate(config, ADAPTER_RULES_SCHEMA)
    (rule,) = config["rules"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    (metric,) = _one("HorizontalPodAutoscaler", "triton")["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    gateway_hpa = _one("HorizontalPodAutoscaler", "gateway")["spec"]["metrics"][0]
    assert gateway_hpa["resource"]["name"] == "cpu"


def test_dashboard_uses_metric_names_the_gateway_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(strategist_[a-z_]+)", e)}
    exported = set()
    for family in GatewayMetrics().registry.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    assert used and used <= exported, used - exported
    assert any("nv_inference_queue_duration_us" in e for e in exprs)
    assert any("nv_inference_compute_infer_duration_us" in e for e in exprs)
    assert any("strategist_stage_seconds_bucket" in e for e in exprs)


def test_train_job_runs_elastic_torchrun_on_the_trainer():
    (container,) = _one("Job", "strategist-train")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[0] == "torchrun" and "--rdzv-backend=c10d" in command
    assert any(a.startswith("--max-restarts=") and int(a.split("=")[1]) > 0 for a in command)
    assert command[command.index("-m") + 1 : command.index("-m") + 3] == ["strategist.cli", "train"]
    import argparse

    from strategist.commands.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.parse_args(command[command.index("-m") + 3 :])  # the trainer's own parser accepts them


def _manifest_gateway_settings() -> GatewaySettings:
    env = {e["name"]: e for e in _container("gateway")["env"]}
    values = {k.removeprefix("STRATEGIST_").lower(): v["value"] for k, v in env.items() if "value" in v}
    return GatewaySettings(**values)


def test_the_edge_sidecar_runs_the_config_rendered_from_the_gateways_settings():
    settings = _manifest_gateway_settings()
    # The gateway behind it is set as `strategist serve` sets one behind its edge.
    unset = GatewaySettings(**settings.model_dump(exclude={"trust_request_start", "max_in_flight"}))
    behind = behind_edge(unset)
    assert (settings.trust_request_start, settings.max_in_flight) == (True, behind.max_in_flight)
    (edge,) = [
        c
        for c in _one("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "edge"
    ]
    gateway = _container("gateway")
    config_map = _one("ConfigMap", "gateway-edge")["data"]["haproxy.cfg"]
    expected = render_config(
        EdgeLimits.from_settings(settings),
        listen=("0.0.0.0", _port(edge, "http")),
        gateway=("127.0.0.1", _port(gateway, "gateway")),
        metrics_port=_port(edge, "edge-metrics"),
        metrics_host="0.0.0.0",
    )
    assert config_map == expected, "deploy/k8s/gateway.yaml: regenerate gateway-edge (the command at its top)"
    mount = next(m for m in edge["volumeMounts"] if m["name"] == "edge-config")
    assert edge["args"][-1] == f"{mount['mountPath']}/haproxy.cfg"
    assert edge["securityContext"]["readOnlyRootFilesystem"] is True
    service_ports = {p["name"]: p["targetPort"] for p in _one("Service", "gateway")["spec"]["ports"]}
    assert service_ports == {"http": "http", "edge-metrics": "edge-metrics"}  # clients reach the edge only


@requires_haproxy
def test_the_edge_sidecar_config_is_one_haproxy_accepts(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(_one("ConfigMap", "gateway-edge")["data"]["haproxy.cfg"])
    checked = subprocess.run([str(find_haproxy()), "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
