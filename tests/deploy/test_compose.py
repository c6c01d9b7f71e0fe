"""deploy/compose.yaml, parsed (no Docker engine here) and its invariants tested: the
services, one scalable worker per queue in exec form, healthchecks everywhere, the start
order, stop grace periods above the stage time limits, Flower behind required auth."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.common import (
    COMPOSE,
    EXTRA_ENV,
    QUEUES,
    ROOT,
    is_cheap_probe,
    longest_time_limit,
    settings_env_names,
)

SERVICES: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
APP_SERVICES = ["api", *QUEUES]
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")


def duration(text: str | int) -> float:
    """Compose's duration syntax: 150s, 2m30s, 1h, 500ms (a bare number is seconds)."""
    if isinstance(text, int):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(number) * unit[suffix] for number, suffix in parts)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """The Compose Specification's JSON schema, as check-jsonschema ships it (offline)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            *("--builtin-schema", "vendor.compose-spec", "--color", "never", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_valid_against_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    typo = tmp_path / "compose.yaml"
    typo.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:", 1))
    result = check_compose_schema(typo)
    assert result.returncode == 1
    assert "stop_grace_periods" in result.stdout


def test_duration() -> None:
    assert duration("150s") == 150
    assert duration("2m30s") == 150
    assert duration(90) == 90
    with pytest.raises(ValueError, match="compose duration"):
        duration("150 seconds")


def test_services() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "flower", *QUEUES}


@pytest.mark.parametrize("queue", QUEUES)
def test_a_worker_per_queue_in_exec_form(queue: str) -> None:
    command = SERVICES[queue]["command"]
    assert isinstance(command, list), "exec form: celery is PID 1, no shell in between"
    assert command[:4] == ["celery", "-A", "app.celery_app", "worker"]
    assert command[command.index("-Q") + 1] == queue
    assert command[command.index("-n") + 1] == f"{queue}@%h", "unique per scaled container"
    assert command[command.index("--include") + 1] == "app.heartbeat"
    assert "entrypoint" not in SERVICES[queue], "the image's exec-form CMD is replaced whole"


@pytest.mark.parametrize("queue", QUEUES)
def test_workers_scale(queue: str) -> None:
    """`--scale <queue>=N` needs no fixed container name and no host port."""
    assert "container_name" not in SERVICES[queue]
    assert "ports" not in SERVICES[queue]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_commands_and_healthchecks_are_exec_form(name: str) -> None:
    service = SERVICES[name]
    if "command" in service:
        assert isinstance(service["command"], list), f"{name}: command in exec form"
    check = service["healthcheck"]
    if check.get("disable"):
        return
    assert check["test"][0] == "CMD", f"{name}: exec-form healthcheck (no CMD-SHELL)"
    assert duration(check["interval"]) > 0
    assert duration(check["timeout"]) < duration(check["interval"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    if check.get("disable"):
        # Only a one-shot service that others wait for to *finish*.
        assert SERVICES[name]["restart"] == "no"
        waiters = [
            other
            for other, service in SERVICES.items()
            if service.get("depends_on", {}).get(name, {}).get("condition")
            == "service_completed_successfully"
        ]
        assert waiters, f"{name} has no healthcheck and nobody waits for it to complete"
        return
    assert check["test"][1:], name


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_healthcheck_is_cheap(queue: str) -> None:
    test = SERVICES[queue]["healthcheck"]["test"]
    assert test[1:5] == ["python", "-m", "app.probes", "worker"]
    assert is_cheap_probe(test[1:])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_waits_for_healthy_dependencies_and_the_migration(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_every_dependency_has_a_condition() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions, not a list"
        for other, rule in depends.items():
            assert other in SERVICES
            assert rule["condition"] in ("service_healthy", "service_completed_successfully")
            if rule["condition"] == "service_healthy":
                assert not SERVICES[other]["healthcheck"].get("disable"), (name, other)


def test_migration_is_one_shot() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_stop_grace_period_above_the_longest_time_limit(queue: str) -> None:
    grace = duration(SERVICES[queue]["stop_grace_period"])
    limit = longest_time_limit(environment(SERVICES[queue]))
    assert grace > limit, f"{queue}: {grace}s grace, time limit {limit}s"
    assert SERVICES[queue].get("stop_signal", "SIGTERM") == "SIGTERM"


def test_flower_requires_basic_auth() -> None:
    flower = SERVICES["flower"]
    assert flower["command"][:4] == ["celery", "-A", "app.celery_app", "flower"]
    match = VARIABLE.fullmatch(environment(flower)["FLOWER_BASIC_AUTH"])
    assert match, "FLOWER_BASIC_AUTH comes from the environment"
    assert match["op"] == ":?", "required: compose refuses to start without it"
    assert not [arg for arg in flower["command"] if "basic" in arg and ":" in arg], (
        "no credentials on the command line"
    )


@pytest.mark.parametrize("name", ["migrate", "flower", *APP_SERVICES])
def test_image_built_from_the_repository_dockerfile(name: str) -> None:
    build = SERVICES[name]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", ["migrate", "flower", *APP_SERVICES])
def test_environment_names_are_settings(name: str) -> None:
    unknown = set(environment(SERVICES[name])) - settings_env_names() - EXTRA_ENV
    assert not unknown, f"{name}: not settings of app/config.py: {unknown}"


def test_every_variable_has_a_default_or_is_required() -> None:
    """No ${VAR} that silently becomes empty: a default (:-) or an error (:?)."""
    found = VARIABLE.findall(COMPOSE.read_text())
    assert found
    bare = [name for name, op, _ in found if op not in (":-", ":?")]
    assert not bare, f"variables without a default or a required mark: {bare}"
    required = {name for name, op, _ in found if op == ":?"}
    assert required == {"POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}


@pytest.mark.parametrize("queue", QUEUES)
def test_worker_command_is_the_procfile_one_plus_the_heartbeat(queue: str) -> None:
    """compose and scripts/run (the Procfile) start the same worker; both interpolate
    ${VAR:-default} the same way. compose adds only the heartbeat the probes read; the
    metrics port, which the Procfile sets per process, is in the worker's environment."""
    procfile = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    words = procfile[queue].split()
    assignments = [word for word in words if "=" in word and word.split("=")[0].isupper()]
    assert {word.split("=")[0] for word in assignments} == {
        "WORKER_METRICS_PORT",
        "PROMETHEUS_MULTIPROC_DIR",
    }
    command = list(SERVICES[queue]["command"])
    at = command.index("--include")
    del command[at : at + 2]
    assert " ".join(command) == " ".join(words[len(assignments) :])
    environment = SERVICES[queue]["environment"]
    assert environment["WORKER_METRICS_PORT"] == "9100"
    assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")  # the tmpfs
