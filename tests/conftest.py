"""Shared fixtures: databases (SQLite and PostgreSQL, each test isolated), the API client,
and the Celery broker on a Redis database of the tests' own.

The environment is set before any ``app`` module is imported: the Celery app reads its
broker URL once, at import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import POSTGRES_URL, REDIS_URL, require_postgres, require_redis

TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "11"))
BROKER_URL = f"{REDIS_URL}/{TEST_REDIS_DB}"
os.environ.update(
    {
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_RESULT_BACKEND": BROKER_URL,
        "DATABASE_URL": "sqlite:///./issueflow-test-unused.db",
        "REDIS_KEY_PREFIX": f"issueflow-test-{os.getpid()}:",
    }
)
for _name in ("API_KEYS", "NOTIFY_WEBHOOK_URL", "ENRICH_PROVIDER", "PROVIDER_RATE_LIMIT"):
    os.environ.pop(_name, None)

import sqlalchemy as sa  # noqa: E402
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.main import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def migrate(url: str, revision: str = "head") -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


def create_database(name: str) -> str:
    """A new, empty PostgreSQL database; its URL."""
    admin = sa.create_engine(require_postgres(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def create_migrated_database(prefix: str) -> tuple[str, str]:
    """A new PostgreSQL database of this test session, migrated to head: (name, URL)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = create_database(name)
    migrate(url)
    return name, url


def drop_database(name: str) -> None:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "issueflow.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session, dropped at the end."""
    require_postgres()
    name, url = create_migrated_database("issueflow_test")
    yield url
    drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def session_factory(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of the test's own.

    SQLite: a fresh file. PostgreSQL: one connection inside a transaction that is rolled
    back at the end; every ``session.begin()`` of the code under test becomes a SAVEPOINT.
    """
    if request.param == "sqlite":
        engine = make_engine(request.getfixturevalue("sqlite_url"))
        yield sessionmaker(engine, expire_on_commit=False)
        engine.dispose()
        return
    engine = make_engine(request.getfixturevalue("postgres_url"))
    with engine.connect() as connection:
        transaction = connection.begin()
        yield sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        transaction.rollback()
    engine.dispose()


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="sqlite://", enrich_provider="local")


@pytest.fixture
def client(session_factory: sessionmaker[Session], settings: Settings) -> Iterator[TestClient]:
    """The API on the test's database. Chains go to the tests' Redis DB (no worker runs)."""
    app = create_app(settings, sweep_outbox=False)
    app.state.session_factory = session_factory
    app.state.autocommit_session_factory = session_factory  # the test's transaction
    with TestClient(app) as test_client:
        yield test_client
    flush_broker()


def flush_broker() -> None:
    """Drop every message the test sent to the tests' Redis database."""
    import redis

    with contextlib.suppress(redis.exceptions.ConnectionError):  # no Redis: nothing was sent
        redis.Redis.from_url(BROKER_URL).flushdb()


@pytest.fixture
def redis_url() -> str:
    require_redis()
    return BROKER_URL
