"""Stalled runs, whose messages the Redis broker lost: found and resumed (``issueflow recover``).

Kombu's Redis transport moves a message from its queue to the worker (``BRPOP``) and only
then records it as unacknowledged. A worker killed in between, a Redis restart while a
worker restores its unacknowledged messages (celery/kombu#305), a Redis restarted without
persistence, a failover to a replica that missed recent writes, ``FLUSHALL`` or eviction
under ``maxmemory``: each loses messages, and their runs stay unfinished with nothing to
carry them on. The soak test (``tests/e2e/test_soak.py``) shows it happening.

A run is *stalled* when it is unfinished and dispatched, has made no progress (created,
a stage started or finished, resumed) for ``stalled_after`` seconds, no stage waits for a
retry due later (``retry_at``), and none of its stage task ids is in a queue or among the
broker's unacknowledged messages (which include countdowns and rate-limit waits). The
broker's own view is what tells a long backlog from a loss: a run waiting its turn has its
message in a queue, however long the queue is.

A stalled run is resumed from its first unfinished stage, with the run's own task ids and
the stored result of the stage before it (``EnrichmentStage.result``); stages already done
do not run again. Exactly one sweeper resumes it: besides the cluster-wide Redis lock of
``recover_lost_runs``, the resume is a compare-and-set on ``EnrichmentRun.resumes`` that
also checks the run is still idle, and the chain is published before that commits. A run
stalled more than ``MAX_RESUMES`` times ends FAILURE with the reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import Connection, Engine, and_, bindparam, exists, or_, select, update

from app.celery_app import UNACKED_RESTORE_INTERVAL, celery_app
from app.config import Settings, get_settings
from app.models import EnrichmentRun, EnrichmentStage, utcnow
from app.services.webhooks import RunEvents
from app.states import UNFINISHED_STATES, TaskState
from pipelines.bookkeeping import fail_run
from pipelines.dispatch import publish_chain
from pipelines.policies import policies_for
from pipelines.queues import Queue, Stage
from pipelines.webhooks import events_after_commit

log = logging.getLogger(__name__)

# Seconds added to the derived STALLED_RUN_AFTER: clock differences between hosts, and a
# database write that lands a little after its attempt began.
STALLED_MARGIN = 30.0


def stalled_run_after(settings: Settings) -> float:
    """``STALLED_RUN_AFTER``, or its default: the longest a healthy run goes without writing.

    A stage attempt writes when it starts and when it ends, so between two writes lie at
    most one attempt (the stage's hard time limit) and one wait for the next (the retry
    countdown: the backoff cap, itself kept below the visibility timeout minus the time
    limit, ``StagePolicy.longest_wait``); a dead worker's message is back in its queue within
    ``UNACKED_RESTORE_INTERVAL`` of the visibility timeout and is visible to the broker
    scan meanwhile. So: max over stages of (time limit + min(backoff cap, longest wait)),
    + ``UNACKED_RESTORE_INTERVAL`` + ``STALLED_MARGIN``. With the defaults (120 s, 600 s,
    3600 s): 120 + 600 + 10 + 30 = 760 s.
    """
    if settings.stalled_run_after is not None:
        return settings.stalled_run_after
    longest = max(
        policy.time_limit + min(policy.backoff_max, policy.longest_wait)
        for policy in policies_for(settings).values()
    )
    return longest + UNACKED_RESTORE_INTERVAL + STALLED_MARGIN


@dataclass(frozen=True)
class StalledRun:
    run_id: str
    issue_id: int
    task_ids: list[str]
    resumes: int
    # The first stage not done (or the one before it, when that one's result was not kept),
    # and the result of the stage before it.
    start: Stage
    previous: dict[str, Any] | None = None


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


def _idle(run: Any, idle_since: Any, now: Any) -> Any:
    """SQL: the run made no progress since ``idle_since`` and waits for no retry after now."""
    stage = EnrichmentStage
    moved = exists().where(
        stage.run_id == run.id,
        or_(stage.started_at >= idle_since, stage.finished_at >= idle_since, stage.retry_at > now),
    )
    return and_(
        run.state.in_(UNFINISHED_STATES),
        run.dispatched.is_(True),
        run.created_at < idle_since,
        or_(run.resumed_at.is_(None), run.resumed_at < idle_since),
        ~moved,
    )


def find_stalled_runs(
    engine: Engine, client: redis.Redis, *, stalled_after: float
) -> list[StalledRun]:
    """Runs idle for ``stalled_after`` seconds with no message anywhere in the broker."""
    now = utcnow()
    idle_since = now - timedelta(seconds=stalled_after)
    with engine.connect() as connection:
        candidates = connection.execute(
            select(EnrichmentRun.id, EnrichmentRun.issue_id, EnrichmentRun.resumes)
            .where(_idle(EnrichmentRun, idle_since, now))
            .order_by(EnrichmentRun.created_at)
        ).all()
        if not candidates:
            return []
        rows = connection.execute(
            select(
                EnrichmentStage.run_id,
                EnrichmentStage.task_id,
                EnrichmentStage.state,
                EnrichmentStage.result,
            )
            .where(EnrichmentStage.run_id.in_([run_id for run_id, _, _ in candidates]))
            .order_by(EnrichmentStage.run_id, EnrichmentStage.position)
        ).all()
    # Read the broker after the database: a message published since is seen.
    in_broker = task_ids_in_broker(client)
    stages: dict[str, list[Any]] = {}
    for row in rows:
        stages.setdefault(row.run_id, []).append(row)
    stalled = []
    for run_id, issue_id, resumes in candidates:
        task_ids = [row.task_id for row in stages[run_id]]
        if in_broker.intersection(task_ids):
            continue
        start, previous = _resume_point(stages[run_id])
        stalled.append(StalledRun(run_id, issue_id, task_ids, resumes, start, previous))
    return stalled


def _resume_point(stages: list[Any]) -> tuple[Stage, dict[str, Any] | None]:
    """The first stage not done, and the stored result it takes; earlier when a done
    stage's result was not kept (it succeeded before results were)."""
    position = next(
        (n for n, row in enumerate(stages) if row.state != TaskState.SUCCESS), len(stages) - 1
    )
    while position > 0 and stages[position - 1].result is None:
        position -= 1
    previous = stages[position - 1].result if position > 0 else None
    return list(Stage)[position], previous


# The compare-and-set: only the sweeper that saw ``resumes`` at :p_seen, on a run still idle,
# resumes it; a racing sweeper's UPDATE waits for this one's commit and then matches nothing.
_RESUMED = (
    update(EnrichmentRun)
    .where(
        EnrichmentRun.id == bindparam("p_run"),
        EnrichmentRun.resumes == bindparam("p_seen"),
        _idle(EnrichmentRun, bindparam("p_idle_since"), bindparam("p_now")),
    )
    .values(
        resumes=EnrichmentRun.resumes + 1,
        resumed_at=bindparam("p_now"),
        resumed_from=bindparam("p_stage"),
    )
)


def resume(
    engine: Engine,
    runs: Iterable[StalledRun],
    *,
    stalled_after: float,
    max_resumes: int,
    broker_url: str | None = None,
    settings: Settings | None = None,
) -> tuple[int, int]:
    """Resume each stalled run once, or fail it after ``max_resumes``: (resumed, failed).

    To the Celery app's broker, or to ``broker_url``. A failed run's ``run.failed`` webhook
    follows ``settings`` (the process's own by default).
    """
    resumed = failed = 0
    settings = settings or get_settings()
    with celery_app.connection_for_write(broker_url) as broker:
        for run in runs:
            now = utcnow()
            if run.resumes >= max_resumes:
                with events_after_commit(settings, engine) as events, engine.begin() as connection:
                    failed += _give_up(connection, run, max_resumes, events)
                continue
            with engine.begin() as connection:
                claimed = connection.execute(
                    _RESUMED,
                    {
                        "p_run": run.run_id,
                        "p_seen": run.resumes,
                        "p_now": now,
                        "p_idle_since": now - timedelta(seconds=stalled_after),
                        "p_stage": run.start.value,
                    },
                ).rowcount
                if not claimed:
                    continue  # another sweeper resumed it, or it moved meanwhile
                # Published before the claim commits: a failed publish rolls the claim back.
                publish_chain(
                    run.issue_id,
                    run.task_ids,
                    start=run.start,
                    previous=run.previous,
                    connection=broker,
                )
            resumed += 1
            log.warning(
                "run %s of issue %s stalled (no progress for %.0fs, no message in the broker): "
                "resumed from %s (resume %d of at most %d)",
                run.run_id,
                run.issue_id,
                stalled_after,
                run.start.value,
                run.resumes + 1,
                max_resumes,
                extra={"run_id": run.run_id, "issue_id": run.issue_id},
            )
    return resumed, failed


def _give_up(
    connection: Connection, run: StalledRun, max_resumes: int, events: RunEvents | None
) -> int:
    """End the run FAILURE (and record its ``run.failed`` webhook, when one is set up)."""
    reason = (
        f"stalled: its message was lost again after {run.resumes} resumes "
        f"(MAX_RESUMES={max_resumes})"
    )
    if not fail_run(connection, run_id=run.run_id, stage=run.start, error=reason, events=events):
        return 0
    log.error("run %s of issue %s failed: %s: %s", run.run_id, run.issue_id, run.start, reason)
    return 1


# Above this many messages in the stage queues and held by workers, a pass waits for the
# backlog to drain rather than read every message of it.
SCAN_LIMIT = 10_000


def recover_lost_runs(
    engine: Engine,
    *,
    broker_url: str,
    stalled_after: float,
    max_resumes: int,
    lock_key: str,
    lock_seconds: float,
) -> int:
    """One cluster-wide pass of ``find_stalled_runs`` + ``resume``; the runs resumed.

    The API's ``OutboxSweeper`` calls this every ``RECOVER_INTERVAL`` seconds. However many
    API processes there are, one pass runs per ``lock_seconds`` (a Redis ``SET NX EX``
    lock that is left to expire); the compare-and-set in ``resume`` covers a pass that
    outlives its lock and ``issueflow recover`` run by hand meanwhile. 0 without a pass:
    another process holds the lock, or the backlog is longer than ``SCAN_LIMIT`` messages.
    """
    client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if not client.set(lock_key, "1", nx=True, ex=max(1, int(lock_seconds))):
            return 0
        backlog = sum(int(client.llen(queue.value)) for queue in Queue)
        backlog += int(client.hlen("unacked"))
        if backlog > SCAN_LIMIT:
            log.info("recovery: %d messages waiting; looking for stalled runs once fewer", backlog)
            return 0
        stalled = find_stalled_runs(engine, client, stalled_after=stalled_after)
        if not stalled:
            return 0
        resumed, _failed = resume(
            engine,
            stalled,
            stalled_after=stalled_after,
            max_resumes=max_resumes,
            broker_url=broker_url,
        )
        return resumed
    finally:
        client.close()
