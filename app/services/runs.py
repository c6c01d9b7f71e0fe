"""Enrichment runs as the API sees them: recorded at dispatch, ended, listed and reported.

The workers' own writes (a stage begins, finishes, retries, fails; persist) live in
``pipelines.bookkeeping``; publishing a chain lives in ``pipelines.dispatch``.

Writes that touch an issue and its runs lock in one order: the issue row first
(``SELECT ... FOR UPDATE``), then the run, then its stages.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.sql.elements import ColumnElement

from app.models import EnrichmentRun, EnrichmentStage, Issue, utcnow
from app.pagination import newest_first_page
from app.progress import note_ended
from app.schemas import EnrichmentResult, Progress, StageRead, TaskStatusRead, Usage
from app.states import (
    FINISHED_STATES,
    UNFINISHED_STATES,
    EnrichmentStatus,
    RunStateFilter,
    TaskState,
)

# Ending a run is plain SQL: the API runs it in a Session's transaction, a worker on its
# Connection.
Executor = Session | Connection


class StageSpec(NamedTuple):
    name: str
    queue: str
    task_id: str


def record_run(
    *,
    session: Session,
    issue: Issue,
    run_id: str,
    stages: Sequence[StageSpec],
    force: bool = False,
) -> None:
    """Record a new run for ``issue`` (whose row the caller holds) and make it current.

    ``force``: its stages call the provider even where an earlier result would do.

    A run still going for the issue ends REVOKED, superseded. The run and its stages are
    inserted with plain INSERTs (no ORM objects to track): this is on the path of every
    ``POST /issues``.
    """
    if issue.enrichment_task_id is not None:
        end_run(
            session,
            run_id=issue.enrichment_task_id,
            state=TaskState.REVOKED,
            reason=f"superseded by {run_id}",
        )
    issue.enrichment_status = EnrichmentStatus.PENDING
    issue.enrichment_task_id = run_id
    issue.enrichment_error = None
    if issue.id is None:
        session.flush()  # a new issue is inserted with its run id already set
    session.execute(insert(EnrichmentRun), {"id": run_id, "issue_id": issue.id, "force": force})
    session.execute(
        insert(EnrichmentStage),
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


def revoke_runs_of(*, session: Session, issue: Issue, reason: str) -> None:
    """End the issue's current run, if unfinished, before the issue goes away."""
    if issue.enrichment_task_id is not None:
        end_run(session, run_id=issue.enrichment_task_id, state=TaskState.REVOKED, reason=reason)


def mark_undispatched(*, session: Session, issue: Issue, run_id: str, reason: str) -> None:
    """The broker refused the chain: keep the run in the outbox and say so on the issue."""
    _keep_in_outbox(session, run_id, reason)
    issue.enrichment_error = undispatched_error(reason)


def mark_new_run_undispatched(*, session: Session, issue_id: int, run_id: str, reason: str) -> str:
    """``mark_undispatched`` for a run already committed with its new issue (``POST
    /issues``), in the caller's transaction; returns the issue's ``enrichment.error``."""
    error = undispatched_error(reason)
    _keep_in_outbox(session, run_id, reason)
    session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.enrichment_task_id == run_id)
        .values(enrichment_error=error)
    )
    return error


def _keep_in_outbox(session: Session, run_id: str, reason: str) -> None:
    session.execute(
        update(EnrichmentRun)
        .where(EnrichmentRun.id == run_id)
        .values(dispatched=False, dispatch_error=reason)
    )


def undispatched_error(reason: str) -> str:
    return f"waiting for the broker; dispatch is retried automatically ({reason})"


def end_run(executor: Executor, *, run_id: str, state: TaskState, reason: str) -> bool:
    """End an unfinished run, and its unfinished stages, in ``state`` with ``reason``.

    False when the run had already ended (nothing changes then).
    """
    now = utcnow()
    ended = executor.execute(
        update(EnrichmentRun)
        .where(EnrichmentRun.id == run_id, EnrichmentRun.state.not_in(FINISHED_STATES))
        .values(state=state, error=reason, finished_at=now)
    )
    if not ended.rowcount:  # type: ignore[attr-defined]
        return False
    executor.execute(
        update(EnrichmentStage)
        .where(EnrichmentStage.run_id == run_id, EnrichmentStage.state.in_(UNFINISHED_STATES))
        .values(state=state, finished_at=now)
    )
    if isinstance(executor, Session):
        # The API ended it: its watchers and its waiting stages hear once this commits.
        note_ended(executor, run_id)
    return True


CANCELLED = "cancelled"


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"  # ended now
    ALREADY_CANCELLED = "already cancelled"
    ALREADY_ENDED = "already ended"  # SUCCESS, FAILURE, or REVOKED for another reason
    NOT_FOUND = "not found"


def cancel_run(*, session: Session, task_id: str) -> tuple[CancelOutcome, str | None]:
    """End the run that ``task_id`` names REVOKED with "cancelled", in the caller's
    transaction; returns what happened and the run id.

    Locks the issue, then the run. Stages not started yet find the run ended when they
    begin and stop; a stage running now has its result discarded (its marks match no
    unfinished row, persist refuses an ended run); one waiting on a network provider is
    told through ``app.progress`` once this commits. The issue gets back the enrichment it
    showed before this run (``restore_previous_enrichment``).
    """
    found = session.execute(
        select(EnrichmentRun.id, EnrichmentRun.issue_id).where(_is_run_of(task_id))
    ).one_or_none()
    if found is None:
        return CancelOutcome.NOT_FOUND, None
    run_id, issue_id = found
    issue = session.scalars(select(Issue).where(Issue.id == issue_id).with_for_update()).first()
    state, error = session.execute(
        select(EnrichmentRun.state, EnrichmentRun.error)
        .where(EnrichmentRun.id == run_id)
        .with_for_update()
    ).one()
    if state == TaskState.REVOKED and error == CANCELLED:
        return CancelOutcome.ALREADY_CANCELLED, run_id
    if state in FINISHED_STATES:
        return CancelOutcome.ALREADY_ENDED, run_id
    end_run(session, run_id=run_id, state=TaskState.REVOKED, reason=CANCELLED)
    if issue is not None and issue.enrichment_task_id == run_id:
        restore_previous_enrichment(session=session, issue=issue, cancelled=run_id)
    return CancelOutcome.CANCELLED, run_id


def restore_previous_enrichment(*, session: Session, issue: Issue, cancelled: str) -> None:
    """The issue shows again what its newest run that ended SUCCESS or FAILURE gave it.

    Its summary and tags never changed (only persist writes them); its enrichment status,
    error and task id go back to that run's. An issue with no such run reads ``failed``
    with the reason, so ``?enrichment_status=failed`` finds it for a re-run.
    """
    previous = session.execute(
        select(EnrichmentRun.id, EnrichmentRun.state, EnrichmentRun.error)
        .where(
            EnrichmentRun.issue_id == issue.id,
            EnrichmentRun.id != cancelled,
            EnrichmentRun.state.in_((TaskState.SUCCESS, TaskState.FAILURE)),
            # Issue ids of deleted issues may come back: never another issue's runs.
            EnrichmentRun.created_at >= issue.created_at,
        )
        .order_by(EnrichmentRun.created_at.desc(), EnrichmentRun.id.desc())
        .limit(1)
    ).one_or_none()
    if previous is None:
        issue.enrichment_status = EnrichmentStatus.FAILED
        issue.enrichment_error = f"{CANCELLED}: run {cancelled} was cancelled before it finished"
        return
    issue.enrichment_task_id = previous.id
    if previous.state == TaskState.SUCCESS:
        issue.enrichment_status = EnrichmentStatus.SUCCEEDED
        issue.enrichment_error = None
    else:
        issue.enrichment_status = EnrichmentStatus.FAILED
        issue.enrichment_error = previous.error


def _is_run_of(task_id: str) -> ColumnElement[bool]:
    """The run whose root id, or one of whose stage ids, is ``task_id``.

    The stage's run id (task ids are unique) or else ``task_id`` itself, then the run by its
    primary key: two index lookups. ``id = x OR id IN (subquery)`` scanned both tables.
    """
    by_stage = (
        select(EnrichmentStage.run_id).where(EnrichmentStage.task_id == task_id).scalar_subquery()
    )
    return EnrichmentRun.id == func.coalesce(by_stage, task_id)


def get_run(*, session: Session, task_id: str) -> EnrichmentRun | None:
    """The run whose root id, or one of whose stage ids, is ``task_id``: one round trip."""
    query = (
        select(EnrichmentRun).options(joinedload(EnrichmentRun.stages)).where(_is_run_of(task_id))
    )
    return session.scalars(query).unique().one_or_none()


def list_runs(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    state: RunStateFilter | None = None,
    issue_id: int | None = None,
) -> tuple[Sequence[EnrichmentRun], str | None]:
    """Runs newest first, optionally only those that ended in ``state`` (``PENDING``: not
    ended yet) or of one issue. Raises InvalidCursor."""
    query = select(EnrichmentRun)
    if state is not None:
        query = query.where(EnrichmentRun.state == TaskState(state))
    if issue_id is not None:
        query = query.where(EnrichmentRun.issue_id == issue_id)
    return newest_first_page(
        session,
        query,
        created_at=EnrichmentRun.created_at,
        key=EnrichmentRun.id,
        limit=limit,
        cursor=cursor,
    )


def chain_state(run: EnrichmentRun) -> TaskState:
    """The run's own state once it has ended; before that, the first unfinished stage's.

    Between two stages (one done, the next not started) that is ``PENDING``.
    """
    if run.state in FINISHED_STATES:
        return run.state
    for stage in run.stages:
        if stage.state != TaskState.SUCCESS:
            return stage.state
    return TaskState.STARTED  # every stage done, the run not yet marked: persist is committing


def task_status(run: EnrichmentRun, *, prices: tuple[float, float] | None = None) -> TaskStatusRead:
    """The whole chain's status (``GET /tasks/<id>``): Celery has no chain-level state.

    Token usage is shown per stage and summed; with ``prices`` (prompt and completion
    tokens, per 1,000), its cost too.
    """
    stages = [
        StageRead(
            name=stage.name,
            queue=stage.queue,
            task_id=stage.task_id,
            state=stage.state,
            retries=stage.retries,
            error=stage.error,
            started_at=stage.started_at,
            finished_at=stage.finished_at,
            retry_at=stage.retry_at,
            cached=bool(stage.cached),
            usage=_usage(stage, prices),
        )
        for stage in run.stages
    ]
    metered = [stage.usage for stage in stages if stage.usage is not None]
    return TaskStatusRead(
        task_id=run.id,
        issue_id=run.issue_id,
        state=chain_state(run),
        progress=Progress(
            completed=sum(stage.state == TaskState.SUCCESS for stage in stages),
            total=len(stages),
        ),
        stages=stages,
        result=EnrichmentResult(**run.result) if run.result is not None else None,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
        usage=_total(metered, prices) if metered else None,
        resumes=run.resumes or 0,
        resumed_at=run.resumed_at,
        resumed_from=run.resumed_from,
    )


def _usage(stage: EnrichmentStage, prices: tuple[float, float] | None) -> Usage | None:
    if stage.prompt_tokens is None and stage.completion_tokens is None:
        return None
    return _priced(stage.prompt_tokens or 0, stage.completion_tokens or 0, prices)


def _total(usages: Sequence[Usage], prices: tuple[float, float] | None) -> Usage:
    prompt = sum(usage.prompt_tokens for usage in usages)
    completion = sum(usage.completion_tokens for usage in usages)
    return _priced(prompt, completion, prices)


def _priced(prompt: int, completion: int, prices: tuple[float, float] | None) -> Usage:
    total = prompt + completion
    cost = None
    if prices is not None:
        cost = round((prompt * prices[0] + completion * prices[1]) / 1000, 6)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, cost=cost)
