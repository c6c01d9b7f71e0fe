"""An embedded Celery worker (pytest-celery's ``celery_session_worker``) on real Redis,
serving all three queues, with the stage tasks writing to a PostgreSQL database of the
tests' own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.config import Settings, get_settings
from app.db import make_engine
from app.main import create_app
from pipelines.context import use_context
from tests.conftest import create_migrated_database, drop_database, flush_broker
from tests.support.services import require_postgres, require_redis


@pytest.fixture(scope="session")
def worker_database_url() -> Iterator[str]:
    require_postgres()
    name, url = create_migrated_database("issueflow_worker")
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    yield url
    stale = use_context(None)
    if stale is not None:
        stale.close()
    if previous is not None:
        os.environ["DATABASE_URL"] = previous
    get_settings.cache_clear()
    drop_database(name)


@pytest.fixture(scope="session")
def celery_session_app(worker_database_url: str) -> Celery:
    """The product's own Celery app, not a test double."""
    require_redis()
    flush_broker()
    from app.celery_app import celery_app

    return celery_app


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, object]:
    return {"perform_ping_check": False, "concurrency": 4, "shutdown_timeout": 30}


@pytest.fixture
def worker_engine(worker_database_url: str, celery_session_worker: object) -> Iterator[Engine]:
    """The worker's database; emptied after each test."""
    engine = make_engine(worker_database_url)
    yield engine
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "TRUNCATE issues, issue_tags, enrichment_runs, enrichment_stages,"
                " enrichment_retries RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()


@pytest.fixture
def api(worker_engine: Engine, worker_database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=worker_database_url), sweep_outbox=False)
    with TestClient(app) as client:
        yield client
