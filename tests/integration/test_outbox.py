"""POST /issues' confirmed send, for brokers no sweeper searches for lost messages
(RabbitMQ, or ``RECOVER_INTERVAL=0``): the run is committed in the outbox and marked
dispatched once its message is sent, and the outbox sends a run whose request died in
between — but not one whose request is still sending it (PostgreSQL, the tests' Redis
broker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.db import make_autocommit_engine, make_engine
from app.models import EnrichmentRun, utcnow
from app.schemas import IssueCreate
from app.services.issues import create_issue_with_run
from pipelines.dispatch import (
    UNCONFIRMED_SEND_GRACE,
    create_and_start,
    dispatch_pending,
    stage_specs,
)
from pipelines.queues import Stage
from tests.conftest import create_migrated_database, drop_database, flush_broker

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def database_url() -> Iterator[str]:
    name, url = create_migrated_database("issueflow_outbox")
    flush_broker()
    yield url
    flush_broker()
    drop_database(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def dispatched(engine: Engine, run_id: str) -> bool:
    with engine.connect() as connection:
        value: bool = connection.execute(
            select(EnrichmentRun.dispatched).where(EnrichmentRun.id == run_id)
        ).scalar_one()
    return value


def test_a_confirmed_send_marks_the_run_dispatched(database_url: str, engine: Engine) -> None:
    autocommit = make_autocommit_engine(database_url, engine)
    try:
        with Session(autocommit, expire_on_commit=False) as session:
            issue, run_id = create_and_start(
                session=session, data=IssueCreate(title="sent and confirmed"), confirm_send=True
            )
    finally:
        autocommit.dispose()
    assert issue.enrichment.task_id == run_id
    assert dispatched(engine, run_id)
    assert dispatch_pending(engine) == 0  # nothing left in the outbox to send again


def test_the_outbox_sends_an_unconfirmed_run_only_once_its_request_is_surely_gone(
    engine: Engine,
) -> None:
    """A request that died between its commit and its send leaves its run undispatched with
    no error; the outbox leaves it alone for ``UNCONFIRMED_SEND_GRACE``, then sends it."""
    task_ids = [f"unconfirmed-{stage.value}" for stage in Stage]
    with Session(engine) as session, session.begin():
        create_issue_with_run(
            session=session,
            data=IssueCreate(title="committed, never sent"),
            run_id=task_ids[0],
            stages=stage_specs(task_ids),
            dispatched=False,
        )
    assert dispatch_pending(engine) == 0  # its request may still be sending it
    assert not dispatched(engine, task_ids[0])

    with engine.begin() as connection:
        connection.execute(
            update(EnrichmentRun)
            .where(EnrichmentRun.id == task_ids[0])
            .values(created_at=utcnow() - UNCONFIRMED_SEND_GRACE - timedelta(seconds=1))
        )
    assert dispatch_pending(engine) == 1
    assert dispatched(engine, task_ids[0])
