"""Every place a chain is published: a new run (create, edit, re-run) and the outbox.

A run is recorded in the caller's transaction and its chain, with every stage's task id
fixed in advance, is published before the caller commits (``POST /issues`` commits first:
``create_and_start``). If the broker is unreachable the run stays in the outbox
(``dispatched = false``) and ``OutboxSweeper`` sends it once the broker is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

from celery import Task
from kombu import Connection
from kombu.exceptions import KombuError
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import EnrichmentRun, Issue, utcnow
from app.schemas import IssueCreate, IssueRead
from app.services.issues import create_issue_with_run, get_issue
from app.services.runs import (
    StageSpec,
    mark_new_run_undispatched,
    mark_undispatched,
    record_run,
)
from app.states import TaskState
from pipelines import prepared
from pipelines.enrichment import persist, summarise, tag
from pipelines.messages import chain_step, send_stage
from pipelines.queues import Stage

log = logging.getLogger(__name__)

# What a broker that cannot take the message raises.
BROKER_ERRORS = (KombuError, OSError)

# The stage tasks in chain order (``Stage`` order).
STAGE_TASKS: tuple[Task[Any, Any], ...] = (summarise, tag, persist)
# A new run whose send is not confirmed yet (``create_and_start(confirm_send=True)``) is
# left to its request this long before the outbox sends it: only a request that died
# between its commit and its send leaves one older.
UNCONFIRMED_SEND_GRACE = timedelta(seconds=30)


def _chain_parts(
    issue_id: int, task_ids: list[str], start: Stage
) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """The stages' keyword arguments, the first stage's position, and the later stages as
    the message's ``chain`` holds them (last stage first: the worker pops from the end)."""
    ids = {"run_id": task_ids[0], "issue_id": issue_id}
    first = start.position
    later = [
        chain_step(stage_task.name, task_id, ids)
        for stage_task, task_id in zip(STAGE_TASKS[first + 1 :], task_ids[first + 1 :], strict=True)
    ]
    later.reverse()
    return ids, first, later


def publish_chain(
    issue_id: int,
    task_ids: list[str],
    *,
    start: Stage = Stage.SUMMARISE,
    previous: Any = None,
    connection: Connection | None = None,
) -> None:
    """Send a run's chain, every stage's task id fixed in advance (the first one is the run
    id), as one slim task message (``pipelines.messages``): the first stage, and the rest
    of the chain as plain dicts (the message's ``chain``, which the stage before each one
    pops as it succeeds: ``send_next_stage``), the form a canvas ``chain`` publishes
    without building its objects. A resumed run (``pipelines.recovery``) starts at
    ``start``, whose task takes ``previous``, the result of the stage before it.

    A queued run costs its message's size in broker memory: about 1 KB.
    ``connection``: a broker connection of the caller's, else one of the app's pool.
    """
    ids, first, later = _chain_parts(issue_id, task_ids, start)
    stage = STAGE_TASKS[first]
    send_stage(
        stage.app,
        name=stage.name,
        task_id=task_ids[first],
        root_id=task_ids[0],
        args=() if first == 0 else (previous,),
        kwargs=ids,
        chain=later,
        connection=connection,
    )


def _kept_in_outbox(run_id: str, issue_id: int, exc: BaseException) -> None:
    log.warning(
        "broker unreachable; run %s kept in the outbox: %s",
        run_id,
        exc,
        extra={"run_id": run_id, "issue_id": issue_id},
    )


def stage_specs(task_ids: list[str]) -> list[StageSpec]:
    """What ``record_run`` records of each stage: name, queue and task id, in chain order."""
    return [
        StageSpec(stage.value, stage.queue.value, task_id)
        for stage, task_id in zip(Stage, task_ids, strict=True)
    ]


def start_enrichment(*, session: Session, issue: Issue, force: bool = False) -> str:
    """Record a run for ``issue`` and send its chain, inside the caller's transaction.

    Returns the run id: the chain's root (summarise) task id. A run still going for the
    issue is superseded. ``force``: call the provider even if the text was enriched before.

    The chain is published before the caller commits, so a crash in between leaves a
    message whose run never appears (the worker drops it after a few seconds) rather than
    a committed run that no message will ever carry.
    """
    task_ids = [str(uuid4()) for _ in Stage]
    run_id = task_ids[0]
    record_run(
        session=session, issue=issue, run_id=run_id, stages=stage_specs(task_ids), force=force
    )
    try:
        publish_chain(issue.id, task_ids)
    except BROKER_ERRORS as exc:
        _kept_in_outbox(run_id, issue.id, exc)
        mark_undispatched(session=session, issue=issue, run_id=run_id, reason=type(exc).__name__)
    return run_id


def create_and_start(
    *, session: Session, data: IssueCreate, confirm_send: bool = False
) -> tuple[IssueRead, str]:
    """``POST /issues``: a new issue with its run, committed, then its chain sent.

    Returns the issue as the API shows it and the run id. ``session`` is the API's
    autocommit session (``app.deps.AutocommitSessionDep``): on PostgreSQL the issue, the
    run and its stages are one statement and one round trip (``create_issue_with_run``),
    prepared once per database connection (``pipelines.prepared``: PostgreSQL no longer
    parses and plans it for every request, about a third of its CPU for it).

    Unlike ``start_enrichment`` the run commits before its message is sent. A broker that
    refuses the message leaves the run in the outbox (``dispatched = false``), sent by
    ``OutboxSweeper`` once the broker is back. An API process that dies between the commit
    and the send leaves a run with no message: with a Redis broker ``pipelines.recovery``
    finds it stalled and resumes it like a message the broker lost. Where no sweeper looks
    for lost messages (RabbitMQ, or ``RECOVER_INTERVAL=0``) the caller passes
    ``confirm_send``: the run is committed in the outbox and marked dispatched once its
    message is sent (one more round trip), so the outbox sends it if the process dies in
    between (``UNCONFIRMED_SEND_GRACE``; a message sent twice runs once:
    ``pipelines.deliveries``).
    """
    task_ids = [str(uuid4()) for _ in Stage]
    run_id = task_ids[0]
    with session.begin():
        issue = create_issue_with_run(
            session=session,
            data=data,
            run_id=run_id,
            stages=stage_specs(task_ids),
            dispatched=not confirm_send,
            run_sql=prepared.execute,
        )
    try:
        publish_chain(issue.id, task_ids)
        if confirm_send:
            with session.begin():
                session.execute(
                    update(EnrichmentRun)
                    .where(EnrichmentRun.id == run_id, EnrichmentRun.dispatched.is_(False))
                    .values(dispatched=True)
                )
    except BROKER_ERRORS as exc:
        _kept_in_outbox(run_id, issue.id, exc)
        with session.begin():
            issue.enrichment.error = mark_new_run_undispatched(
                session=session, issue_id=issue.id, run_id=run_id, reason=type(exc).__name__
            )
    return issue, run_id


def dispatch_pending(engine: Engine, *, limit: int = 100) -> int:
    """Send up to ``limit`` runs of the outbox, oldest first; how many were sent.

    Each run is sent once: the issue row is locked, then the run row, and only a run still
    marked undispatched is sent. A new run whose send is still unconfirmed (no
    ``dispatch_error`` yet) is left to its request for ``UNCONFIRMED_SEND_GRACE``.
    """
    with session_scope(engine) as session:
        pending = session.execute(
            select(EnrichmentRun.id, EnrichmentRun.issue_id)
            .where(
                EnrichmentRun.dispatched.is_(False),
                EnrichmentRun.state == TaskState.PENDING,
                or_(
                    EnrichmentRun.dispatch_error.is_not(None),
                    EnrichmentRun.created_at < utcnow() - UNCONFIRMED_SEND_GRACE,
                ),
            )
            .order_by(EnrichmentRun.created_at)
            .limit(limit)
        ).all()
    sent = 0
    for run_id, issue_id in pending:
        with session_scope(engine) as session:
            issue = get_issue(session=session, issue_id=issue_id, for_update=True)
            run = session.get(EnrichmentRun, run_id, with_for_update=True)
            if run is None or run.dispatched or run.state != TaskState.PENDING:
                continue
            try:
                publish_chain(issue_id, [stage.task_id for stage in run.stages])
            except BROKER_ERRORS as exc:
                log.info(
                    "outbox: broker still unreachable (%s); %d runs waiting",
                    type(exc).__name__,
                    len(pending) - sent,
                )
                return sent
            run.dispatched, run.dispatch_error = True, None
            if issue is not None and issue.enrichment_task_id == run_id:
                issue.enrichment_error = None
            sent += 1
    if sent:
        log.info("outbox: sent %d runs that were waiting for the broker", sent)
    return sent


class OutboxSweeper:
    """A daemon thread calling ``dispatch_pending`` and each of ``sweeps`` (other outboxes:
    ``pipelines.webhooks.send_undispatched``) every ``interval`` seconds, and ``recover``
    (``pipelines.recovery``: runs whose message the broker lost) every ``recover_every``
    seconds when given."""

    def __init__(
        self,
        engine: Engine,
        interval: float,
        *,
        recover: Callable[[], int] | None = None,
        recover_every: float = 300.0,
        sweeps: Sequence[Callable[[], int]] = (),
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._recover = recover
        self._recover_every = recover_every
        self._sweeps = sweeps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping, after one last sweep so nothing waits for the next process."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            dispatch_pending(self._engine)
            for sweep in self._sweeps:
                sweep()
        except Exception:
            log.exception("outbox: the last sweep failed; the next process sends those runs")

    def _loop(self) -> None:
        next_recovery = time.monotonic() + self._recover_every
        while not self._stop.wait(self._interval):
            try:
                dispatch_pending(self._engine)
            except Exception:
                log.exception("outbox sweep failed; trying again in %.0fs", self._interval)
            for sweep in self._sweeps:
                try:
                    sweep()
                except Exception:
                    log.exception("outbox sweep failed; trying again in %.0fs", self._interval)
            if self._recover is not None and time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self._recover_every
                try:
                    self._recover()
                except Exception:
                    log.exception(
                        "looking for lost runs failed; again in %.0fs", self._recover_every
                    )
