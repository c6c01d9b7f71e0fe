"""The kustomize base in deploy/k8s, rendered without a cluster and validated against the
Kubernetes JSON schemas (kubernetes-validate ships them: no network), plus the invariants
that make it a deployment a team can run: one worker Deployment, PodDisruptionBudget and
KEDA ScaledObject per queue, cheap probes, grace periods above the stage time limits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.common import (
    EXTRA_ENV,
    K8S,
    QUEUES,
    ROOT,
    is_cheap_probe,
    longest_time_limit,
    settings_env_names,
)
from tests.deploy.kustomize import KustomizeError, render, split_image

# The Kubernetes version the manifests are validated for (kubernetes-validate's schemas).
K8S_VERSION = "1.32"
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
SECRETS = {"issueflow", "issueflow-flower"}

# What KEDA's ScaledObject CRD requires (keda.sh_scaledobjects.yaml: spec.scaleTargetRef.name,
# spec.triggers[].type and .metadata, metadata values strings), and the redis scaler's keys.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}},
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                            },
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
REDIS_SCALER_KEYS = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "databaseIndex",
    "listName",
    "listLength",
    "activationListLength",
    "enableTLS",
    "unsafeSsl",
}

MANIFESTS = render(K8S)


def key(manifest: dict[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in MANIFESTS if m["kind"] == kind}


def worker(queue: str) -> dict[str, Any]:
    return of_kind("Deployment")[f"issueflow-worker-{queue}"]


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(manifest)
    return [*spec.get("initContainers", []), *spec["containers"]]


def validate_scaled_object(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, SCALED_OBJECT_SCHEMA)
    spec = manifest["spec"]
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    for trigger in spec["triggers"]:
        if trigger["type"] == "redis":
            unknown = set(trigger["metadata"]) - REDIS_SCALER_KEYS
            assert not unknown, f"unknown redis scaler keys {unknown}"
            assert trigger["metadata"].get("listName"), "the redis scaler needs listName"


# --- the renderer --------------------------------------------------------------------------


def test_render_lists_every_resource_file_once() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    assert len({key(m) for m in MANIFESTS}) == len(MANIFESTS)


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="does not exist"):
        render(tmp_path)


def test_renderer_sets_images(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
        "spec:\n  initContainers: [{name: i, image: 'app:1'}]\n"
        "  containers: [{name: a, image: app}, {name: b, image: 'localhost:5000/other:2'}]\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [pod.yaml]\nimages: [{name: app, newName: registry.example/app, newTag: '3'}]\n"
    )
    [pod] = render(tmp_path)
    images = [c["image"] for c in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]]
    assert images == ["registry.example/app:3", "registry.example/app:3", "localhost:5000/other:2"]


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("issueflow", ("issueflow", None, None)),
        ("issueflow:0.1.0", ("issueflow", "0.1.0", None)),
        ("localhost:5000/issueflow", ("localhost:5000/issueflow", None, None)),
        ("r.io:5000/a/b:7@sha256:ab", ("r.io:5000/a/b", "7", "sha256:ab")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == parts


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_render_matches_kubectl_kustomize() -> None:
    """Where kubectl is installed (it is on this machine kind), its kustomize agrees."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True
    ).stdout
    theirs = [doc for doc in yaml.safe_load_all(output) if doc]
    assert sorted(theirs, key=key) == sorted(MANIFESTS, key=key)


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest", MANIFESTS, ids=key)
def test_manifest_is_valid(manifest: dict[str, Any]) -> None:
    if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_KINDS:
        validate_scaled_object(manifest)
    else:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_schema_validation_catches_mistakes() -> None:
    """The validators are real: a misspelt field and a ScaledObject without listName fail."""
    deployment = yaml.safe_load(yaml.safe_dump(worker("tag")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaled = yaml.safe_load(yaml.safe_dump(of_kind("ScaledObject")["issueflow-worker-tag"]))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 20
    with pytest.raises(jsonschema.ValidationError):
        validate_scaled_object(scaled)
    del scaled["spec"]["triggers"][0]["metadata"]["listName"]
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = "20"
    with pytest.raises(AssertionError, match="listName"):
        validate_scaled_object(scaled)


# --- invariants ----------------------------------------------------------------------------


def test_namespace_agnostic() -> None:
    assert [key(m) for m in MANIFESTS if "namespace" in m["metadata"]] == []


@pytest.mark.parametrize("queue", QUEUES)
def test_a_worker_deployment_per_queue(queue: str) -> None:
    [container] = pod_spec(worker(queue))["containers"]
    command = container["command"]
    assert command[:4] == ["celery", "-A", "app.celery_app", "worker"]
    assert command[command.index("-Q") + 1] == queue
    assert command[command.index("-n") + 1] == f"{queue}@%h"
    # The heartbeat the probes read is loaded into the worker.
    assert command[command.index("--include") + 1] == "app.heartbeat"
    assert "args" not in container, "the command is the whole process: no shell, no args"


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_probes_are_cheap(queue: str) -> None:
    [container] = pod_spec(worker(queue))["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:4] == ["python", "-m", "app.probes", "worker"], probe
        assert is_cheap_probe(command), probe
    liveness = container["livenessProbe"]
    # The liveness probe tolerates a worker busy for a while before it restarts it.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_grace_period_above_the_longest_time_limit(queue: str) -> None:
    config = of_kind("ConfigMap")["issueflow-config"]["data"]
    grace = pod_spec(worker(queue))["terminationGracePeriodSeconds"]
    assert grace > longest_time_limit(config)


@pytest.mark.parametrize("queue", QUEUES)
def test_a_disruption_budget_per_worker(queue: str) -> None:
    budget = of_kind("PodDisruptionBudget")[f"issueflow-worker-{queue}"]
    labels = worker(queue)["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    # ... and only this worker's pods.
    others = [d for d in of_kind("Deployment").values() if d is not worker(queue)]
    assert not [
        d for d in others if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable")


@pytest.mark.parametrize("queue", QUEUES)
def test_a_scaled_object_per_queue_on_its_redis_list(queue: str) -> None:
    scaled = of_kind("ScaledObject")[f"issueflow-worker-{queue}"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker(queue)["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == queue
    assert int(trigger["metadata"]["listLength"]) > 0
    # The same Redis and database the workers consume from.
    broker = urlsplit(of_kind("ConfigMap")["issueflow-config"]["data"]["CELERY_BROKER_URL"])
    assert trigger["metadata"]["address"] == f"{broker.hostname}:{broker.port or 6379}"
    assert int(trigger["metadata"]["databaseIndex"]) == int(broker.path.strip("/") or 0)
    assert scaled["spec"]["minReplicaCount"] >= 1, "a worker per queue stays up"
    # KEDA's HorizontalPodAutoscaler owns the replica count: `kubectl apply` must not reset it.
    assert "replicas" not in worker(queue)["spec"]


def test_api_probes_and_service() -> None:
    api = of_kind("Deployment")["issueflow-api"]
    [container] = pod_spec(api)["containers"]
    assert container["command"][:2] == ["uvicorn", "app.main:app"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    service = of_kind("Service")["issueflow-api"]
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_flower_needs_its_secret_and_has_a_service() -> None:
    flower = of_kind("Deployment")["issueflow-flower"]
    [container] = pod_spec(flower)["containers"]
    assert container["command"][:4] == ["celery", "-A", "app.celery_app", "flower"]
    [auth] = [env for env in container["env"] if env["name"] == "FLOWER_BASIC_AUTH"]
    ref = auth["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "issueflow-flower"
    assert ref.get("optional", False) is False, "Flower never starts without auth"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    service = of_kind("Service")["issueflow-flower"]
    assert (
        service["spec"]["selector"].items()
        <= flower["spec"]["template"]["metadata"]["labels"].items()
    )


def test_migration_job() -> None:
    job = of_kind("Job")["issueflow-migrate"]
    [container] = pod_spec(job)["containers"]
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    # The API and the workers start once the schema is at head.
    for name, deployment in of_kind("Deployment").items():
        if name == "issueflow-flower":
            continue
        [init] = pod_spec(deployment)["initContainers"]
        assert init["command"] == ["python", "-m", "app.probes", "migrated"], name


def test_pods_run_as_non_root_from_the_image() -> None:
    for manifest in MANIFESTS:
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        security = pod_spec(manifest)["securityContext"]
        assert security["runAsNonRoot"] is True, key(manifest)
        assert security["runAsUser"] != 0, key(manifest)
        for container in containers(manifest):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert split_image(container["image"])[0] == "issueflow", key(manifest)


def test_environment_comes_from_known_settings_and_secrets() -> None:
    config = of_kind("ConfigMap")["issueflow-config"]["data"]
    unknown = set(config) - settings_env_names() - EXTRA_ENV
    assert not unknown, f"not settings of app/config.py: {unknown}"
    for manifest in MANIFESTS:
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(manifest):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] == "issueflow-config"
                else:
                    assert source["secretRef"]["name"] in SECRETS, key(manifest)
    readme = (ROOT / "README.md").read_text()
    for secret in SECRETS:
        assert f"secret generic {secret} " in readme, f"README does not say how to create {secret}"
