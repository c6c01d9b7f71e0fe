"""Fixtures of the process-level tests: each test builds its own stack (see ``stack.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database, migrate
from tests.e2e.fake_llm import FakeLLM, fake_llm
from tests.e2e.stack import Stack, rabbitmqctl_available
from tests.support.processes import Processes
from tests.support.servers import PostgresServer
from tests.support.services import in_ci, require_own_postgres, require_postgres, require_rabbitmq

StackFactory = Callable[..., Stack]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with fake_llm() as server:
        yield server


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """``make_stack(database="sqlite"|"postgres"|<url>, broker="redis"|"amqp", env=, llm=)``

    starts the stack's own redis-server (unless ``start_redis=False``) and, for amqp, a
    RabbitMQ vhost of its own; the test starts the API and workers it needs. Everything is
    stopped and removed afterwards.
    """
    stacks: list[Stack] = []

    def build(
        *,
        database: str = "sqlite",
        broker: str = "redis",
        env: dict[str, str] | None = None,
        llm: FakeLLM | None = None,
        start_redis: bool = True,
    ) -> Stack:
        cleanups = []
        if database == "sqlite":
            url = request.getfixturevalue("sqlite_url")
        elif database == "postgres":
            require_postgres()
            name = f"issueflow_e2e_{uuid.uuid4().hex[:12]}"
            url = create_database(name)
            migrate(url)
            cleanups.append(lambda: drop_database(name))
        else:
            url = database
        if broker == "amqp":
            require_rabbitmq()
            if not rabbitmqctl_available():
                reason = "rabbitmqctl is not installed: cannot create a vhost of the test's own"
                if in_ci():
                    pytest.fail(reason)
                pytest.skip(reason)
        stack = Stack(
            tmp_path=tmp_path,
            database_url=url,
            broker=broker,
            env={**(llm.env() if llm else {}), **(env or {})},
        )
        for cleanup in cleanups:
            stack.add_cleanup(cleanup)
        if llm is not None:
            # Stop hanging calls first, so workers can shut down warm and quickly.
            stack.before_stop(llm.release)
        stacks.append(stack)
        if start_redis:
            stack.start_redis()
        return stack

    yield build
    for stack in reversed(stacks):
        stack.close()


@pytest.fixture
def pg_cluster(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own (initdb + postgres on a free port), migrated."""
    require_own_postgres()
    group = Processes({}, tmp_path)
    cluster = PostgresServer(group, tmp_path)
    try:
        cluster.init()
        cluster.start()
        migrate(cluster.url)
        yield cluster
    finally:
        cluster.remove()
        group.stop_all()
