"""/readyz warns about a Redis broker that evicts keys (a redis-server of the test's own)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from fastapi.testclient import TestClient

import app.api.health
from app import broker_policy
from app.broker_policy import eviction_warning
from app.celery_app import celery_config
from app.config import Settings
from app.main import create_app
from tests.support.processes import processes
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with processes({}, tmp_path) as group:
        yield RedisServer(group, workdir=tmp_path).start()


def test_only_noeviction_is_accepted(server: RedisServer) -> None:
    assert eviction_warning(server.url()) is None  # Redis's default
    server.client.config_set("maxmemory-policy", "volatile-lru")
    warning = eviction_warning(server.url())
    assert warning is not None
    assert "maxmemory-policy volatile-lru" in warning
    assert "noeviction" in warning
    # An unreachable broker is the broker check's to report, not a policy warning.
    server.stop()
    assert eviction_warning(server.url()) is None


def test_readyz_stays_ready_and_lists_the_warning_which_the_api_also_logs_at_startup(
    server: RedisServer,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    monkeypatch.setattr(broker_policy, "_cache", {})
    settings = Settings(
        database_url=sqlite_url,
        celery_broker_url=server.url(),
        celery_result_backend=server.url(1),
    )
    monkeypatch.setenv("CELERY_BROKER_URL", server.url())
    celery = Celery("issueflow-eviction", set_as_current=False)
    celery.conf.update(celery_config(settings))
    monkeypatch.setattr(app.api.health, "celery_app", celery)
    caplog.set_level(logging.WARNING, logger="app.main")
    with TestClient(create_app(settings, sweep_outbox=False)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready"
        [warning] = body["warnings"]
        assert "maxmemory-policy allkeys-lru" in warning
        assert "maxmemory-policy allkeys-lru" in caplog.text

        server.client.config_set("maxmemory-policy", "noeviction")
        monkeypatch.setattr(broker_policy, "_cache", {})  # past CHECK_EVERY
        assert client.get("/readyz").json()["warnings"] == []
