"""The workers accept JSON only: a pickled message is refused, never unpickled, and the
worker goes on with its work.

A real ``celery worker`` process on a Redis database of this test's own (13), with the
``noop`` provider and a migrated SQLite file; a real API process sends it a normal chain
afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from kombu import Connection

from app.celery_app import celery_config
from app.config import Settings
from tests.conftest import migrate
from tests.support.processes import Processes, free_port, processes, wait_until
from tests.support.services import require_redis, unique_prefix

REDIS_DB = int(os.environ.get("TEST_CELERY_JSON_REDIS_DB", "13"))


class _CreatesFileWhenUnpickled:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_the_configuration_names_json_only() -> None:
    config = celery_config(Settings())
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["result_serializer"] == "json"
    assert config["event_serializer"] == "json"
    assert config.get("result_accept_content") in (None, ["json"])


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = f"{require_redis()}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def stack(tmp_path: Path, broker_url: str) -> Iterator[Processes]:
    database_url = f"sqlite:///{tmp_path / 'issueflow.db'}"
    migrate(database_url)
    env = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "ENRICH_PROVIDER": "noop",
        "REDIS_KEY_PREFIX": unique_prefix(),
    }
    with processes(env, tmp_path) as group:
        yield group


def _publish_pickled(broker_url: str, marker: Path) -> str:
    """A Celery protocol-2 message for enrichment.summarise whose body is a pickle."""
    queue = next(q for q in celery_config(Settings())["task_queues"] if q.name == "summarise")
    task_id = str(uuid.uuid4())
    body = (
        (_CreatesFileWhenUnpickled(marker), task_id),
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    )
    with Connection(broker_url) as connection:
        connection.Producer().publish(
            body,
            serializer="pickle",
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers={
                "lang": "py",
                "task": "enrichment.summarise",
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "argsrepr": "(...)",
                "kwargsrepr": "{}",
                "origin": "test",
            },
            correlation_id=task_id,
            content_type=None,
        )
    return task_id


def test_a_pickled_message_is_refused_and_the_worker_carries_on(
    stack: Processes, broker_url: str, tmp_path: Path
) -> None:
    worker = stack.worker(None, "--pool", "solo")
    wait_until(
        lambda: "ready." in stack.log("worker-all"),
        timeout=60,
        what="the worker to start",
        process=worker,
        log=tmp_path / "worker-all.log",
    )

    marker = tmp_path / "pwned"
    _publish_pickled(broker_url, marker)
    wait_until(
        lambda: any(
            text in stack.log("worker-all")
            for text in ("ContentDisallowed", "Refusing to deserialize")
        ),
        timeout=30,
        what="the worker to refuse the pickled message",
        process=worker,
        log=tmp_path / "worker-all.log",
    )
    assert not marker.exists(), "the worker unpickled the message"
    assert "pickle" in stack.log("worker-all")
    # Refused for good: not left in the queue, nor held to be redelivered.
    client = redis.Redis.from_url(broker_url)
    wait_until(
        lambda: client.llen("summarise") == 0 and client.hlen("unacked") == 0,
        timeout=10,
        what="the pickled message to leave the broker",
    )

    # The worker goes on: a real chain from a real API runs to SUCCESS.
    port = free_port()
    stack.api(port)
    base = f"http://127.0.0.1:{port}"
    created = httpx.post(f"{base}/issues", json={"title": "After the pickle"}, timeout=10)
    assert created.status_code == 201, created.text
    status_url = f"{base}{created.json()['status_url']}"

    def succeeded() -> bool:
        state = httpx.get(status_url, timeout=5).json()["state"]
        assert state not in ("FAILURE", "REVOKED"), httpx.get(status_url, timeout=5).text
        return state == "SUCCESS"

    wait_until(
        succeeded,
        timeout=60,
        what="the chain after the pickled message",
        process=worker,
        log=tmp_path / "worker-all.log",
    )
    assert worker.poll() is None
    assert not marker.exists()
