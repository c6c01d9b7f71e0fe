"""Enrichment runs and their stages: recorded at dispatch, kept current by the stage tasks.

Writes that touch an issue and its runs lock in one order: the issue row first
(``SELECT ... FOR UPDATE``), then the run, then its stages. Stage bookkeeping that does
not touch the issue updates one stage row only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from app.models import (
    FINISHED_STATES,
    EnrichmentRun,
    EnrichmentStage,
    EnrichmentStatus,
    Issue,
    IssueTag,
    TaskState,
    utcnow,
)
from app.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.services.issues import get_issue

_UNFINISHED = [TaskState.PENDING, TaskState.STARTED, TaskState.RETRY]
_RUNS: Table = EnrichmentRun.__table__  # type: ignore[assignment]
_STAGES: Table = EnrichmentStage.__table__  # type: ignore[assignment]

# Stage bookkeeping is plain SQL: it runs on a Connection (the workers' cheap path) or in a
# Session's transaction (the API's).
Executor = Session | Connection


class StageSpec(NamedTuple):
    name: str
    queue: str
    task_id: str


class StaleRun(Exception):
    """The run may not go on: it was superseded, its issue deleted, or it already ended."""


class RunNotFound(Exception):
    """No run has this id (yet: a worker can see a message before the API's commit)."""


@dataclass(frozen=True)
class StageInput:
    """What a stage task reads at its start."""

    issue_id: int
    title: str
    body: str


def record_run(*, session: Session, issue: Issue, run_id: str, stages: Sequence[StageSpec]) -> str:
    """Record a new run for ``issue`` (whose row the caller holds) and make it current.

    The run and its stages are inserted with plain INSERTs (no ORM objects to track): this
    is on the path of every ``POST /issues``.
    """
    if issue.enrichment_task_id is not None:
        _end_run(session, issue.enrichment_task_id, TaskState.REVOKED, f"superseded by {run_id}")
    issue.enrichment_status = EnrichmentStatus.PENDING
    issue.enrichment_task_id = run_id
    issue.enrichment_error = None
    if issue.id is None:
        session.flush()  # a new issue is inserted with its run id already set
    session.execute(insert(_RUNS), {"id": run_id, "issue_id": issue.id})
    session.execute(
        insert(_STAGES),
        [
            {
                "run_id": run_id,
                "position": position,
                "name": spec.name,
                "queue": spec.queue,
                "task_id": spec.task_id,
            }
            for position, spec in enumerate(stages)
        ],
    )
    return run_id


def revoke_runs_of(*, session: Session, issue: Issue, reason: str) -> None:
    """End the issue's current run, if unfinished, before the issue goes away."""
    if issue.enrichment_task_id is not None:
        _end_run(session, issue.enrichment_task_id, TaskState.REVOKED, reason)


def mark_undispatched(*, session: Session, issue: Issue, run_id: str, reason: str) -> None:
    """The broker refused the chain: keep the run in the outbox and say so on the issue."""
    session.execute(
        update(_RUNS).where(_RUNS.c.id == run_id).values(dispatched=False, dispatch_error=reason)
    )
    issue.enrichment_error = f"waiting for the broker; dispatch is retried automatically ({reason})"


# Statements the stage tasks run for every chain, built once: building a statement costs
# more Python time than sending it. Parameters are named p_* (SET columns are reserved).
_STAGE_INPUT = (
    select(
        EnrichmentRun.state,
        EnrichmentRun.issue_id,
        Issue.enrichment_task_id,
        Issue.title,
        Issue.body,
    )
    .outerjoin(Issue, Issue.id == EnrichmentRun.issue_id)
    .where(EnrichmentRun.id == bindparam("p_run"))
)
_ISSUE_RUNNING = (
    update(Issue)
    .where(Issue.id == bindparam("p_issue"), Issue.enrichment_task_id == bindparam("p_run"))
    .values(enrichment_status=EnrichmentStatus.RUNNING)
)
_UNFINISHED_STAGE = update(EnrichmentStage).where(
    EnrichmentStage.run_id == bindparam("p_run"),
    EnrichmentStage.position == bindparam("p_position"),
    EnrichmentStage.state.in_(_UNFINISHED),
)
_STAGE_STARTED = _UNFINISHED_STAGE.values(state=TaskState.STARTED, started_at=bindparam("p_now"))
_STAGE_SUCCEEDED = _UNFINISHED_STAGE.values(
    state=TaskState.SUCCESS,
    error=None,
    finished_at=bindparam("p_now"),
    started_at=func.coalesce(EnrichmentStage.started_at, bindparam("p_now")),
)
_STAGE_RETRYING = _UNFINISHED_STAGE.values(
    state=TaskState.RETRY, retries=bindparam("p_retries"), error=bindparam("p_error")
)
_LOCK_ISSUE = (
    select(Issue.enrichment_task_id).where(Issue.id == bindparam("p_issue")).with_for_update()
)
_LOCK_RUN = (
    select(EnrichmentRun.state).where(EnrichmentRun.id == bindparam("p_run")).with_for_update()
)
_ISSUE_RESULT = (
    update(Issue)
    .where(Issue.id == bindparam("p_issue"))
    .values(
        ai_summary=bindparam("p_summary"),
        enrichment_status=EnrichmentStatus.SUCCEEDED,
        enrichment_error=None,
        enriched_at=bindparam("p_now"),
        updated_at=bindparam("p_now"),
    )
)
_DROP_TAGS = delete(IssueTag).where(IssueTag.issue_id == bindparam("p_issue"))
_RUN_SUCCEEDED = (
    update(EnrichmentRun)
    .where(EnrichmentRun.id == bindparam("p_run"))
    .values(
        state=TaskState.SUCCESS,
        error=None,
        result=bindparam("p_result"),
        finished_at=bindparam("p_now"),
    )
)


def begin_stage(*, session: Executor, run_id: str, position: int) -> StageInput:
    """Mark a stage STARTED and read its input. Raises RunNotFound or StaleRun."""
    row = session.execute(_STAGE_INPUT, {"p_run": run_id}).one_or_none()
    if row is None:
        raise RunNotFound(run_id)
    state, issue_id, current_run, title, body = row
    if state in FINISHED_STATES:
        raise StaleRun(f"run {run_id} already ended {state}")
    if current_run != run_id:
        if title is None:
            raise StaleRun(f"issue {issue_id} was deleted")
        raise StaleRun(f"superseded by {current_run}")
    if position == 0:
        session.execute(_ISSUE_RUNNING, {"p_issue": issue_id, "p_run": run_id})
    session.execute(_STAGE_STARTED, {"p_run": run_id, "p_position": position, "p_now": utcnow()})
    return StageInput(issue_id=issue_id, title=title, body=body)


def finish_stage(*, session: Executor, run_id: str, position: int) -> None:
    session.execute(_STAGE_SUCCEEDED, {"p_run": run_id, "p_position": position, "p_now": utcnow()})


def retry_stage(*, session: Executor, run_id: str, position: int, retries: int, error: str) -> None:
    """The stage waits for retry number ``retries`` after ``error``."""
    session.execute(
        _STAGE_RETRYING,
        {"p_run": run_id, "p_position": position, "p_retries": retries, "p_error": error},
    )


def fail_run(*, session: Session, run_id: str, position: int, error: str) -> None:
    """A stage failed for good: the stage, the run and (if still current) the issue say why."""
    run = session.get(EnrichmentRun, run_id)
    if run is None:
        return
    issue = get_issue(session=session, issue_id=run.issue_id, for_update=True)
    run = session.get(EnrichmentRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or run.state in FINISHED_STATES:
        return
    now = utcnow()
    name = "?"
    for stage in run.stages:
        if stage.position == position:
            name = stage.name
            stage.state, stage.error, stage.finished_at = TaskState.FAILURE, error, now
        elif stage.position > position and stage.state not in FINISHED_STATES:
            stage.state, stage.error = TaskState.REVOKED, f"not run: {name} failed"
    run.state, run.error, run.finished_at = TaskState.FAILURE, f"{name}: {error}", now
    if issue is not None and issue.enrichment_task_id == run_id:
        issue.enrichment_status = EnrichmentStatus.FAILED
        issue.enrichment_error = run.error


def persist_result(
    *,
    session: Executor,
    run_id: str,
    issue_id: int,
    position: int,
    summary: str,
    tags: Sequence[str],
) -> bool:
    """Write the run's result onto its issue, once. False when there was nothing to do.

    Idempotent: a redelivered persist finds the run SUCCESS and changes nothing. A run that
    is no longer the issue's current one never overwrites the newer run's result. Locks the
    issue, then the run (the one order every writer follows).
    """
    issue = session.execute(_LOCK_ISSUE, {"p_issue": issue_id}).first()
    state = session.execute(_LOCK_RUN, {"p_run": run_id}).scalar_one_or_none()
    if state is None:
        raise RunNotFound(run_id)
    if state == TaskState.SUCCESS:
        return False
    if state in FINISHED_STATES:
        raise StaleRun(f"run {run_id} already ended {state}")
    if issue is None:
        raise StaleRun(f"issue {issue_id} was deleted")
    if issue.enrichment_task_id != run_id:
        raise StaleRun(f"superseded by {issue.enrichment_task_id}")
    now = utcnow()
    unique = list(dict.fromkeys(tags))
    session.execute(_ISSUE_RESULT, {"p_issue": issue_id, "p_summary": summary, "p_now": now})
    session.execute(_DROP_TAGS, {"p_issue": issue_id})
    if unique:
        session.execute(
            insert(IssueTag),
            [{"issue_id": issue_id, "tag": tag, "position": n} for n, tag in enumerate(unique)],
        )
    session.execute(
        _RUN_SUCCEEDED,
        {"p_run": run_id, "p_now": now, "p_result": {"ai_summary": summary, "tags": unique}},
    )
    session.execute(_STAGE_SUCCEEDED, {"p_run": run_id, "p_position": position, "p_now": now})
    return True


def end_stale_run(*, session: Executor, run_id: str, reason: str) -> None:
    """A stage found its run stale: make sure the run reads REVOKED with the reason."""
    _end_run(session, run_id, TaskState.REVOKED, reason)


def get_run(*, session: Session, task_id: str) -> EnrichmentRun | None:
    """The run whose root id, or one of whose stage ids, is ``task_id``: one round trip."""
    by_stage = select(EnrichmentStage.run_id).where(EnrichmentStage.task_id == task_id)
    query = (
        select(EnrichmentRun)
        .options(joinedload(EnrichmentRun.stages))
        .where(or_(EnrichmentRun.id == task_id, EnrichmentRun.id.in_(by_stage)))
    )
    return session.scalars(query).unique().one_or_none()


def list_runs(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    state: str | None = None,
    issue_id: int | None = None,
) -> tuple[Sequence[EnrichmentRun], str | None]:
    """Runs newest first, optionally only those that ended in ``state`` or of one issue.

    Raises InvalidCursor.
    """
    query = select(EnrichmentRun).order_by(EnrichmentRun.created_at.desc(), EnrichmentRun.id.desc())
    if state is not None:
        query = query.where(EnrichmentRun.state == state)
    if issue_id is not None:
        query = query.where(EnrichmentRun.issue_id == issue_id)
    if cursor is not None:
        position = decode_cursor(cursor, keys={"created_at": str, "id": str})
        try:
            created_at = datetime.fromisoformat(position["created_at"])
            # The cursors this API makes are aware; one near the ends of time may have no UTC.
            if created_at.tzinfo is None:
                raise ValueError("naive timestamp")
            created_at = created_at.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise InvalidCursor("invalid cursor") from exc
        query = query.where(
            or_(
                EnrichmentRun.created_at < created_at,
                (EnrichmentRun.created_at == created_at) & (EnrichmentRun.id < position["id"]),
            )
        )
    runs = session.scalars(query.limit(limit + 1)).all()
    if len(runs) <= limit:
        return runs, None
    last = runs[limit - 1]
    return runs[:limit], encode_cursor({"created_at": last.created_at.isoformat(), "id": last.id})


def _end_run(session: Executor, run_id: str, state: TaskState, reason: str) -> None:
    now = utcnow()
    ended = session.execute(
        update(EnrichmentRun)
        .where(EnrichmentRun.id == run_id, EnrichmentRun.state.not_in(FINISHED_STATES))
        .values(state=state, error=reason, finished_at=now)
    )
    if ended.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(EnrichmentStage)
            .where(EnrichmentStage.run_id == run_id, EnrichmentStage.state.in_(_UNFINISHED))
            .values(state=state, finished_at=now)
        )
