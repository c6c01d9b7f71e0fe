"""The real services tests talk to, and what a test does when one is missing.

On this machine and in CI the servers run on 127.0.0.1. A test that needs a missing
server is skipped with a one-line reason on a developer's machine, and fails under
``CI=true``: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.support.processes import listening

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def in_ci() -> bool:
    """CI=true: a test must fail, never skip, for want of something."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) the calling test when nothing listens on host:port."""
    if listening(port, host):
        return
    reason = f"{name} is not listening on {host}:{port}"
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)")
    pytest.skip(reason)


def require_redis() -> str:
    """The base Redis URL (no DB number); pick a DB or a key prefix of your own."""
    require("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def require_postgres() -> str:
    require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


def require_rabbitmq() -> str:
    require("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


def unique_prefix() -> str:
    """A Redis key prefix no other test uses."""
    return f"issueflow-test-{uuid.uuid4().hex[:12]}:"


def require_own_postgres() -> None:
    """What a PostgreSQL server of a test's own (``servers.PostgresServer``) needs."""
    from tests.support.servers import pg_binary

    missing = [name for name in ("initdb", "postgres") if pg_binary(name) is None]
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        missing.append("setpriv (PostgreSQL will not run as root)")
    if missing:
        reason = f"cannot run a PostgreSQL cluster of the test's own: no {', '.join(missing)}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
