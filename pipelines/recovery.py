"""Runs whose message the Redis broker lost: found and sent again (``issueflow recover``).

Kombu's Redis transport moves a message from its queue to the worker (``BRPOP``) and only
then records it as unacknowledged. A worker killed in between, or a Redis restart while a
worker restores its unacknowledged messages (celery/kombu#305), loses the message: its run
stays unfinished and nothing will ever carry it on. The soak test
(``tests/e2e/test_soak.py``) shows it happening.

A run is lost when it is unfinished and dispatched, nothing happened to it for ``grace``
seconds, and none of its stage task ids is in a queue or among the broker's
unacknowledged messages (which include retries waiting for their countdown). Such a run
is sent again with the same task ids, from summarise: the stages already done run once
more (their results are not stored between stages), persist writes once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import Engine, func, select

from app.celery_app import celery_app
from app.models import EnrichmentRun, EnrichmentStage, utcnow
from app.states import UNFINISHED_STATES
from pipelines.dispatch import build_chain
from pipelines.queues import Queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LostRun:
    run_id: str
    issue_id: int
    task_ids: list[str]


def task_ids_in_broker(client: redis.Redis, *, batch: int = 1000) -> set[str]:
    """Task ids of every message in a stage queue or held unacknowledged by a worker."""
    found: set[str] = set()
    for queue in Queue:
        length = int(client.llen(queue.value))
        for start in range(0, length, batch):
            for raw in client.lrange(queue.value, start, start + batch - 1):
                found.add(_task_id(json.loads(raw)))
    for _tag, raw in client.hscan_iter("unacked", count=batch):
        found.add(_task_id(json.loads(raw)[0]))
    return found


def _task_id(message: dict[str, object]) -> str:
    headers = message.get("headers")
    assert isinstance(headers, dict), "a Celery task message (protocol 2) has headers"
    return str(headers["id"])


def find_lost_runs(engine: Engine, client: redis.Redis, *, grace: float) -> list[LostRun]:
    """Unfinished, dispatched runs idle for ``grace`` seconds with no message anywhere."""
    idle_since = utcnow() - timedelta(seconds=grace)
    last_activity = func.max(
        func.coalesce(EnrichmentStage.finished_at, EnrichmentStage.started_at, idle_since)
    )
    with engine.connect() as connection:
        candidates = connection.execute(
            select(EnrichmentRun.id, EnrichmentRun.issue_id)
            .join(EnrichmentStage, EnrichmentStage.run_id == EnrichmentRun.id)
            .where(
                EnrichmentRun.state.in_(UNFINISHED_STATES),
                EnrichmentRun.dispatched.is_(True),
                EnrichmentRun.created_at < idle_since,
            )
            .group_by(EnrichmentRun.id, EnrichmentRun.issue_id)
            .having(last_activity <= idle_since)
        ).all()
        if not candidates:
            return []
        stages = connection.execute(
            select(EnrichmentStage.run_id, EnrichmentStage.task_id)
            .where(EnrichmentStage.run_id.in_([run_id for run_id, _ in candidates]))
            .order_by(EnrichmentStage.run_id, EnrichmentStage.position)
        ).all()
    # Read the broker after the database: a message published since is seen.
    in_broker = task_ids_in_broker(client)
    task_ids: dict[str, list[str]] = {}
    for run_id, task_id in stages:
        task_ids.setdefault(run_id, []).append(task_id)
    return [
        LostRun(run_id, issue_id, task_ids[run_id])
        for run_id, issue_id in candidates
        if not in_broker.intersection(task_ids[run_id])
    ]


def redeliver(runs: Iterable[LostRun], *, broker_url: str | None = None) -> int:
    """Send each lost run's chain again, with its own task ids; how many were sent.

    To the Celery app's broker, or to ``broker_url``."""
    sent = 0
    with celery_app.connection_for_write(broker_url) as connection:
        for run in runs:
            build_chain(run.issue_id, run.task_ids).apply_async(connection=connection)
            log.warning(
                "run %s of issue %s had lost its message: sent again", run.run_id, run.issue_id
            )
            sent += 1
    return sent


# Above this many messages in the stage queues and held by workers, a pass waits for the
# backlog to drain rather than read every message of it.
SCAN_LIMIT = 10_000


def recover_lost_runs(
    engine: Engine, *, broker_url: str, grace: float, lock_key: str, lock_seconds: float
) -> int:
    """One cluster-wide pass of ``find_lost_runs`` + ``redeliver``; the runs sent again.

    The API's ``OutboxSweeper`` calls this every ``RECOVER_INTERVAL`` seconds. However many
    API processes there are, one pass runs per ``lock_seconds`` (a Redis ``SET NX EX``
    lock that is left to expire), so a lost run is sent once. 0 without a pass: another
    process holds the lock, or the backlog is longer than ``SCAN_LIMIT`` messages.
    """
    client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if not client.set(lock_key, "1", nx=True, ex=max(1, int(lock_seconds))):
            return 0
        backlog = sum(int(client.llen(queue.value)) for queue in Queue)
        backlog += int(client.hlen("unacked"))
        if backlog > SCAN_LIMIT:
            log.info("recovery: %d messages waiting; looking for lost runs once fewer", backlog)
            return 0
        lost = find_lost_runs(engine, client, grace=grace)
        return redeliver(lost, broker_url=broker_url) if lost else 0
    finally:
        client.close()
