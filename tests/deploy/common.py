"""What the deployment tests compare the files against: the app's own settings and queues."""

from __future__ import annotations

import re
from pathlib import Path

from app.config import Settings
from pipelines.queues import Queue

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
QUEUES = [queue.value for queue in Queue]

# Environment variables the deployment files may set that are not Settings fields.
EXTRA_ENV = {
    "WORKER_HEARTBEAT_FILE",  # app.heartbeat / app.probes
    "FLOWER_BASIC_AUTH",  # read by Flower itself
    "PROMETHEUS_MULTIPROC_DIR",  # read by prometheus_client itself (pipelines.metrics)
}


def settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def time_limit(queue: str, overrides: dict[str, str] | None = None) -> float:
    """A stage's time limit: the override in a deployment's environment, or the default."""
    name = f"{queue}_time_limit"
    value = (overrides or {}).get(name.upper())
    if value is not None:
        return float(value)
    default = Settings.model_fields[name].default
    assert isinstance(default, int | float), f"{name} has no numeric default"
    return float(default)


def longest_time_limit(overrides: dict[str, str] | None = None) -> float:
    return max(time_limit(queue, overrides) for queue in QUEUES)


def is_cheap_probe(command: list[str]) -> bool:
    """An exec probe that does not ask the worker through the broker (celery inspect ping)."""
    text = " ".join(command)
    return not re.search(r"\b(inspect|ping|status)\b", text) and "celery" not in command[:1]
