"""A stage's writes to its run's record: begin, finish, retry, fail, stop, and persist.

Every function runs on a ``Connection`` inside the caller's transaction (the workers' cheap
path: prebuilt Core statements, no ORM session). ``pipelines.stage_task`` decides which one
to call and when. ``begin_stage``, ``begin_stage_behind`` and ``finish_stage`` need no
transaction of their own: each of their writes is guarded (a stage only while unfinished,
the issue only while the run is current), so the worker sends them in autocommit on
PostgreSQL, and ``begin_stage_behind`` may leave its marks to ``pipelines.marks``.

On PostgreSQL persist is one statement (``persist_result``: its locks and every write) in
a transaction of two round trips in the worker (``app.db.transaction``: BEGIN sent with
the statement, then COMMIT), never a single autocommit statement: a worker killed while
that statement waits for a lock would leave it to commit on its own later, after the kill
was recorded as the run's failure (or before a redelivery ran). Statements with several
rows or tables are written as SQL there, the rest as prebuilt Core statements.

Writes that touch the issue lock in the one order every writer follows: the issue row,
then the run, then its stages. Progress marks touch one row at a time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnClause

from app.models import EnrichmentRetry, EnrichmentRun, EnrichmentStage, Issue, IssueTag, utcnow
from app.services.runs import end_run
from app.services.webhooks import RunEvents
from app.states import FINISHED_STATES, UNFINISHED_STATES, EnrichmentStatus, TaskState
from pipelines import prepared
from pipelines.cache import pg_fingerprint
from pipelines.deliveries import StageDone, unclaimed_stage
from pipelines.marks import FINISH_ROWS, FINISH_SET, FINISH_WHERE, MarkBuffer
from pipelines.queues import Stage
from pipelines.usage import StageUsage


class StaleRun(Exception):
    """The run may not go on: it was superseded, cancelled, its issue deleted, or it ended."""


class RunNotFound(Exception):
    """No run has this id (yet: a worker can see a message before the API's commit)."""


@dataclass(frozen=True)
class StageInput:
    """What a stage reads at its start."""

    issue_id: int
    title: str
    body: str
    # Started with ?force=true: call the provider even if an earlier result would do.
    force: bool = False
    # Read along by summarise's begin on PostgreSQL (``fingerprint_prefix``): the input's
    # fingerprint and an earlier run's result for it (never with ``force``).
    fingerprint: str | None = None
    earlier_result: dict[str, Any] | None = None


# Statements run for every chain, built once: building a statement costs more Python time
# than sending it. Parameters are named p_* (SET columns are reserved names).
_STAGE_INPUT = (
    select(
        EnrichmentRun.state,
        EnrichmentRun.issue_id,
        Issue.enrichment_task_id,
        Issue.title,
        Issue.body,
        EnrichmentRun.force,
    )
    .outerjoin(Issue, Issue.id == EnrichmentRun.issue_id)
    .where(EnrichmentRun.id == bindparam("p_run"))
)
_ISSUE_RUNNING = (
    update(Issue)
    .where(Issue.id == bindparam("p_issue"), Issue.enrichment_task_id == bindparam("p_run"))
    .values(enrichment_status=EnrichmentStatus.RUNNING)
)


# The states written into the statement: an IN of bound values is an "expanding" parameter,
# which SQLAlchemy re-renders on every execution of these per-stage statements.
def _literal_states(states: Iterable[TaskState]) -> list[ColumnClause[Any]]:
    return [literal_column(f"'{state.value}'") for state in sorted(states)]


_UNFINISHED = _literal_states(UNFINISHED_STATES)
_UNFINISHED_STAGE = update(EnrichmentStage).where(
    EnrichmentStage.run_id == bindparam("p_run"),
    EnrichmentStage.position == bindparam("p_position"),
    EnrichmentStage.state.in_(_UNFINISHED),
)
# A stage STARTED by another delivery is taken over only once that attempt counts as
# abandoned (``pipelines.deliveries``): it started before ``p_abandoned``.
_STAGE_STARTED = (
    update(EnrichmentStage)
    .where(
        EnrichmentStage.run_id == bindparam("p_run"),
        EnrichmentStage.position == bindparam("p_position"),
        or_(
            EnrichmentStage.state.in_(_literal_states((TaskState.PENDING, TaskState.RETRY))),
            and_(
                EnrichmentStage.state == TaskState.STARTED,
                or_(
                    EnrichmentStage.started_at.is_(None),
                    EnrichmentStage.started_at < bindparam("p_abandoned"),
                ),
            ),
        ),
    )
    .values(state=TaskState.STARTED, started_at=bindparam("p_now"), retry_at=None)
)
_STAGE_SUCCEEDED = _UNFINISHED_STAGE.values(
    state=TaskState.SUCCESS,
    error=None,
    finished_at=bindparam("p_now"),
    started_at=func.coalesce(EnrichmentStage.started_at, bindparam("p_started")),
)
# An attempt's tokens are added to the stage's (a retried stage paid for every attempt).
_ADD_TOKENS = {
    "prompt_tokens": func.coalesce(EnrichmentStage.prompt_tokens, 0) + bindparam("p_prompt"),
    "completion_tokens": func.coalesce(EnrichmentStage.completion_tokens, 0)
    + bindparam("p_completion"),
}
# summarise and tag keep their result on their row, in the same UPDATE that marks them done.
_STAGE_RESULT = {"result": bindparam("p_result", type_=JSON(none_as_null=True))}
_STAGE_SUCCEEDED_WITH_RESULT = _STAGE_SUCCEEDED.values(_STAGE_RESULT)
_STAGE_SUCCEEDED_METERED = _STAGE_SUCCEEDED_WITH_RESULT.values(_ADD_TOKENS)
_STAGE_SUCCEEDED_CACHED = _STAGE_SUCCEEDED_WITH_RESULT.values(cached=True)
_STAGE_RETRYING = _UNFINISHED_STAGE.values(
    state=TaskState.RETRY,
    retries=bindparam("p_retries"),
    error=bindparam("p_error"),
    retry_at=bindparam("p_retry_at"),
    started_at=func.coalesce(EnrichmentStage.started_at, bindparam("p_started")),
)
_STAGE_RETRYING_METERED = _STAGE_RETRYING.values(_ADD_TOKENS)
_STAGE_FAILED = _UNFINISHED_STAGE.values(
    state=TaskState.FAILURE, error=bindparam("p_error"), finished_at=bindparam("p_now")
)
_LATER_STAGES_NOT_RUN = (
    update(EnrichmentStage)
    .where(
        EnrichmentStage.run_id == bindparam("p_run"),
        EnrichmentStage.position > bindparam("p_position"),
        EnrichmentStage.state.in_(_UNFINISHED),
    )
    .values(state=TaskState.REVOKED, error=bindparam("p_error"))
)
_LOCK_ISSUE = (
    select(Issue.enrichment_task_id).where(Issue.id == bindparam("p_issue")).with_for_update()
)
_RUN_ISSUE = select(EnrichmentRun.issue_id).where(EnrichmentRun.id == bindparam("p_run"))
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
_ISSUE_FAILED = (
    update(Issue)
    .where(Issue.id == bindparam("p_issue"), Issue.enrichment_task_id == bindparam("p_run"))
    .values(enrichment_status=EnrichmentStatus.FAILED, enrichment_error=bindparam("p_error"))
)
_DROP_TAGS = delete(IssueTag).where(IssueTag.issue_id == bindparam("p_issue"))
_RUN_SUCCEEDED = (
    update(EnrichmentRun)
    .where(EnrichmentRun.id == bindparam("p_run"))
    .values(
        state=TaskState.SUCCESS,
        error=None,
        result=bindparam("p_result"),
        fingerprint=bindparam("p_fingerprint"),
        finished_at=bindparam("p_now"),
    )
)
_RUN_FAILED = (
    update(EnrichmentRun)
    .where(EnrichmentRun.id == bindparam("p_run"))
    .values(state=TaskState.FAILURE, error=bindparam("p_error"), finished_at=bindparam("p_now"))
)


# A stage's input and its own row, in one statement: what ``begin_stage_behind`` needs to
# decide whether the stage may start with a mark written behind (PostgreSQL; SQL text, sent
# as it is: the hot path of every stage).
_PG_STAGE_READ = """
SELECT r.state, r.issue_id, i.enrichment_task_id, i.title, i.body, r.force, s.state, s.result
FROM enrichment_runs AS r
LEFT JOIN issues AS i ON i.id = r.issue_id
LEFT JOIN enrichment_stages AS s ON s.run_id = r.id AND s.position = %(position)s
WHERE r.id = %(run)s
"""
# summarise's read: the same, with the input's fingerprint and the newest earlier result
# for it (``pipelines.cache``) in the same statement, one round trip instead of two.
_PG_SUMMARISE_READ = f"""
SELECT r.state, r.issue_id, i.enrichment_task_id, i.title, i.body, r.force, s.state, s.result,
       f.fingerprint, e.result
FROM enrichment_runs AS r
LEFT JOIN issues AS i ON i.id = r.issue_id
LEFT JOIN enrichment_stages AS s ON s.run_id = r.id AND s.position = %(position)s
CROSS JOIN LATERAL (SELECT {pg_fingerprint("i.title", "i.body")} AS fingerprint) AS f
LEFT JOIN LATERAL (
    SELECT e.result FROM enrichment_runs AS e
    WHERE e.fingerprint = f.fingerprint AND e.state = '{TaskState.SUCCESS.value}'
      AND e.result IS NOT NULL AND NOT r.force
    ORDER BY e.finished_at DESC LIMIT 1
) AS e ON true
WHERE r.id = %(run)s
"""
# A stage's read that also writes the finishes of the stages before it that its message
# carries (``pipelines.marks.Finish``: summarise's, written behind): one round trip, and
# the earlier stage is done in the database before this one calls its provider. Guarded as
# the late write from the buffer is; whichever comes second changes nothing.
_PG_PREVIOUS_FINISHED = f"""
WITH previous AS (
    UPDATE enrichment_stages AS s SET {FINISH_SET}
    FROM {FINISH_ROWS}
    WHERE s.run_id = %(run)s AND {FINISH_WHERE}
)"""
# Stage states a first delivery may leave behind its start mark: nobody else started it.
_FREE_STATES = frozenset({TaskState.PENDING, TaskState.RETRY})


def _current_input(run_id: str, row: Any) -> StageInput:
    """The stage's input from a row of ``_STAGE_INPUT`` or ``_STAGE_READ``; raises
    StaleRun when the run ended, was superseded or its issue deleted."""
    state, issue_id, current_run, title, body, force = row[:6]
    if state in FINISHED_STATES:
        raise StaleRun(f"run {run_id} already ended {state}")
    if current_run != run_id:
        if title is None:
            raise StaleRun(f"issue {issue_id} was deleted")
        raise StaleRun(f"superseded by {current_run}")
    return StageInput(issue_id=issue_id, title=title, body=body, force=bool(force))


def begin_stage_behind(
    connection: Connection,
    *,
    run_id: str,
    stage: Stage,
    marks: MarkBuffer,
    lease: timedelta | None = None,
    fingerprint_prefix: str | None = None,
    finished: str | None = None,
) -> tuple[StageInput, bool]:
    """``begin_stage`` in one read, its marks written behind when that is safe.

    The read returns the input and the stage's row. A stage already done raises
    ``StageDone`` at once. A first delivery (``lease`` set) of a stage nobody started
    (PENDING, or RETRY: its own retry) leaves its STARTED mark, and summarise the issue's
    running mark, in ``marks``: True as the second value. A duplicate that reaches another
    worker process before the first attempt's mark is written (at most ``FLUSH_INTERVAL``)
    runs the stage as well (persist writes once); in the same process it is held.
    Anything else (a redelivered message, a stage STARTED elsewhere) is claimed at once,
    as ``begin_stage`` does: False.

    With ``fingerprint_prefix`` (``pipelines.cache.fingerprint_prefix``) the read also
    returns the input's fingerprint and an earlier result for it, on the ``StageInput``.
    With ``finished`` (``pipelines.marks.finish_rows``: the earlier stages' finishes the
    message carries) the same statement writes those first, whatever the read finds.

    A stage whose finish still waits in ``marks`` (a duplicate in the same process) is
    done: ``StageDone`` with its result, before any statement.
    """
    waiting = marks.finish_of(run_id, stage.position)
    if waiting is not None:
        raise StageDone(waiting.result)
    read, params = _PG_STAGE_READ, {"run": run_id, "position": stage.position}
    if fingerprint_prefix is not None:
        read, params = _PG_SUMMARISE_READ, {**params, "fingerprint_prefix": fingerprint_prefix}
    if finished is not None:
        read, params = _PG_PREVIOUS_FINISHED + read, {**params, "finished": finished}
    row = prepared.execute(connection, read, params).one_or_none()
    if row is None:
        raise RunNotFound(run_id)
    issue = _current_input(run_id, row)
    if fingerprint_prefix is not None:
        earlier = row[9]
        issue = dataclasses.replace(
            issue,
            fingerprint=row[8],
            earlier_result=earlier if isinstance(earlier, dict) else None,
        )
    stage_state, result = row[6], row[7]
    if stage_state == TaskState.SUCCESS and result is not None:
        raise StageDone(result)
    if lease is not None and stage_state in _FREE_STATES:
        if marks.holds_start(run_id, stage.position):
            # Started by another attempt in this process a moment ago: its mark is written
            # now and the claim below finds it (``StageHeld``), as it would a while later.
            marks.flush()
            _claim(connection, run_id=run_id, stage=stage, issue_id=issue.issue_id, lease=lease)
            return issue, False
        marks.started(
            run_id,
            stage.position,
            utcnow(),
            issue_id=issue.issue_id if stage.position == 0 else None,
        )
        return issue, True
    _claim(connection, run_id=run_id, stage=stage, issue_id=issue.issue_id, lease=lease)
    return issue, False


def begin_stage(
    connection: Connection, *, run_id: str, stage: Stage, lease: timedelta | None = None
) -> StageInput:
    """Mark the stage STARTED and read its input. Raises RunNotFound or StaleRun.

    Another delivery's attempt that started less than ``lease`` ago may still be running:
    then ``StageHeld`` is raised, and ``StageDone`` with the stored result for a stage that
    already succeeded (``pipelines.deliveries``). No ``lease``: any attempt is taken over.
    """
    row = connection.execute(_STAGE_INPUT, {"p_run": run_id}).one_or_none()
    if row is None:
        raise RunNotFound(run_id)
    issue = _current_input(run_id, row)
    _claim(connection, run_id=run_id, stage=stage, issue_id=issue.issue_id, lease=lease)
    return issue


def _claim(
    connection: Connection, *, run_id: str, stage: Stage, issue_id: int, lease: timedelta | None
) -> None:
    """Mark the stage STARTED now (summarise: the issue running too), or say why not."""
    if stage.position == 0:
        connection.execute(_ISSUE_RUNNING, {"p_issue": issue_id, "p_run": run_id})
    now = utcnow()
    claimed = connection.execute(
        _STAGE_STARTED,
        {
            "p_run": run_id,
            "p_position": stage.position,
            "p_now": now,
            "p_abandoned": now if lease is None else now - lease,
        },
    ).rowcount
    if not claimed:
        unclaimed_stage(connection, run_id=run_id, stage=stage, lease=lease, now=now)


def finish_stage(
    connection: Connection,
    *,
    run_id: str,
    stage: Stage,
    usage: StageUsage | None = None,
    result: Any = None,
    started_at: datetime | None = None,
    issue_id: int | None = None,
) -> bool:
    """Mark the stage SUCCESS and keep its ``result``; ``usage`` says what its attempt spent
    or that it was cached; ``started_at``: when it started, and ``issue_id``: the issue to
    turn running, if those marks were never written (``pipelines.marks``; PostgreSQL).

    False when the stage was no longer unfinished (its run ended meanwhile).
    """
    now = utcnow()
    if connection.dialect.name == "postgresql":
        return _pg_finish(
            connection, run_id, stage, usage, result, started_at or now, issue_id, now
        )
    if issue_id is not None:
        raise ValueError("the issue's running mark travels with a finish on PostgreSQL only")
    params: dict[str, object] = {
        "p_run": run_id,
        "p_position": stage.position,
        "p_now": now,
        "p_started": started_at or now,
        "p_result": result,
    }
    statement = _STAGE_SUCCEEDED_WITH_RESULT
    if usage is not None and usage.cached:
        statement = _STAGE_SUCCEEDED_CACHED
    elif usage is not None and usage.metered:
        statement = _STAGE_SUCCEEDED_METERED
        params.update(_token_params(usage))
    return bool(connection.execute(statement, params).rowcount)


def _pg_finish(
    connection: Connection,
    run_id: str,
    stage: Stage,
    usage: StageUsage | None,
    result: Any,
    started_at: datetime,
    issue_id: int | None,
    now: datetime,
) -> bool:
    """``finish_stage`` on PostgreSQL: its statement as SQL text, sent as it is (the hot
    path of every stage: no statement cache lookup, no parameter processing)."""
    params: dict[str, object] = {
        "run": run_id,
        "position": stage.position,
        "now": now,
        "started": started_at,
        "result": None if result is None else json.dumps(result),
        "issue": issue_id,
    }
    kind = "plain"
    if usage is not None and usage.cached:
        kind = "cached"
    elif usage is not None and usage.metered:
        kind = "metered"
        params.update(prompt=usage.prompt_tokens or 0, completion=usage.completion_tokens or 0)
    statement = _PG_FINISH[(kind, issue_id is not None)]
    return bool(prepared.execute(connection, statement, params).rowcount)


def retry_stage(
    connection: Connection,
    *,
    run_id: str,
    stage: Stage,
    retries: int,
    error: str,
    reason: str = "other",
    usage: StageUsage | None = None,
    retry_at: datetime | None = None,
    started_at: datetime | None = None,
) -> None:
    """The stage waits for retry number ``retries`` after ``error``, until ``retry_at``;
    ``reason`` is its short name (``pipelines.outcomes``), kept for the metrics;
    ``started_at``: when the attempt started, if its start mark was never written."""
    params: dict[str, object] = {
        "p_run": run_id,
        "p_position": stage.position,
        "p_retries": retries,
        "p_error": error,
        "p_retry_at": retry_at,
        "p_started": started_at,
    }
    statement = _STAGE_RETRYING
    if usage is not None and usage.metered:
        statement = _STAGE_RETRYING_METERED
        params.update(_token_params(usage))
    connection.execute(statement, params)
    connection.execute(
        insert(EnrichmentRetry),
        {"run_id": run_id, "stage": stage.value, "reason": reason, "created_at": utcnow()},
    )


def _token_params(usage: StageUsage) -> dict[str, int]:
    return {"p_prompt": usage.prompt_tokens or 0, "p_completion": usage.completion_tokens or 0}


def fail_run(
    connection: Connection,
    *,
    run_id: str,
    stage: Stage,
    error: str,
    events: RunEvents | None = None,
) -> bool:
    """The stage failed for good: the stage, the run and (if still current) the issue say
    why; later stages are marked not run; ``events`` records the ``run.failed`` webhook.
    False when the run had already ended."""
    issue_id = connection.execute(_RUN_ISSUE, {"p_run": run_id}).scalar_one_or_none()
    if issue_id is None:
        return False
    connection.execute(_LOCK_ISSUE, {"p_issue": issue_id})
    state = connection.execute(_LOCK_RUN, {"p_run": run_id}).scalar_one()
    if state in FINISHED_STATES:
        return False
    now = utcnow()
    reason = f"{stage.value}: {error}"
    params = {"p_run": run_id, "p_position": stage.position, "p_now": now}
    connection.execute(_STAGE_FAILED, {**params, "p_error": error})
    connection.execute(
        _LATER_STAGES_NOT_RUN, {**params, "p_error": f"not run: {stage.value} failed"}
    )
    connection.execute(_RUN_FAILED, {"p_run": run_id, "p_error": reason, "p_now": now})
    connection.execute(_ISSUE_FAILED, {"p_issue": issue_id, "p_run": run_id, "p_error": reason})
    if events is not None:
        events.failed(
            connection, run_id=run_id, issue_id=issue_id, stage=stage.value, reason=error, at=now
        )
    return True


_RUN_STATE = select(EnrichmentRun.state).where(EnrichmentRun.id == bindparam("p_run"))


def run_ended(connection: Connection, *, run_id: str) -> bool:
    """Whether the run has ended (or is gone): its stages must not go on."""
    state = connection.execute(_RUN_STATE, {"p_run": run_id}).scalar_one_or_none()
    return state is None or state in FINISHED_STATES


def stop_run(connection: Connection, *, run_id: str, reason: str) -> None:
    """A stage found its run stale: make sure the run reads REVOKED with the reason."""
    end_run(connection, run_id=run_id, state=TaskState.REVOKED, reason=reason)


def persist_result(
    connection: Connection,
    *,
    run_id: str,
    issue_id: int,
    summary: str,
    tags: Sequence[str],
    fingerprint: str | None = None,
    events: RunEvents | None = None,
) -> bool:
    """Write the run's result onto its issue, once. False when there was nothing to do.

    Idempotent: a redelivered persist finds the run SUCCESS and changes nothing. A run that
    is no longer the issue's current one never overwrites the newer run's result.
    ``events`` records the ``issue.enriched`` webhook.
    """
    now = utcnow()
    unique = list(dict.fromkeys(tags))
    result = {"ai_summary": summary, "tags": unique}
    postgres = connection.dialect.name == "postgresql"
    if postgres:  # the locks and every write in one statement, one round trip
        current_run, state = prepared.execute(
            connection,
            _PG_PERSIST,
            {
                "issue": issue_id,
                "run": run_id,
                "summary": summary,
                "tags": unique,
                "result": json.dumps(result),
                "fingerprint": fingerprint,
                "now": now,
                "position": Stage.PERSIST.position,
            },
        ).one()
        issue_found = current_run is not None
    else:
        issue = connection.execute(_LOCK_ISSUE, {"p_issue": issue_id}).first()
        state = connection.execute(_LOCK_RUN, {"p_run": run_id}).scalar_one_or_none()
        issue_found, current_run = issue is not None, issue and issue.enrichment_task_id
    # PostgreSQL wrote the result exactly when every check below passes.
    if state is None:
        raise RunNotFound(run_id)
    if state == TaskState.SUCCESS:
        return False
    if state in FINISHED_STATES:
        raise StaleRun(f"run {run_id} already ended {state}")
    if not issue_found:
        raise StaleRun(f"issue {issue_id} was deleted")
    if current_run != run_id:
        raise StaleRun(f"superseded by {current_run}")
    if not postgres:
        _persist_each(connection, run_id, issue_id, summary, unique, result, fingerprint, now)
    if events is not None:
        events.enriched(
            connection, run_id=run_id, issue_id=issue_id, summary=summary, tags=unique, at=now
        )
    return True


def _persist_each(
    connection: Connection,
    run_id: str,
    issue_id: int,
    summary: str,
    tags: list[str],
    result: dict[str, Any],
    fingerprint: str | None,
    now: datetime,
) -> None:
    """``persist_result``'s writes one statement at a time (SQLite)."""
    connection.execute(_ISSUE_RESULT, {"p_issue": issue_id, "p_summary": summary, "p_now": now})
    connection.execute(_DROP_TAGS, {"p_issue": issue_id})
    if tags:
        connection.execute(
            insert(IssueTag),
            [{"issue_id": issue_id, "tag": tag, "position": n} for n, tag in enumerate(tags)],
        )
    connection.execute(
        _RUN_SUCCEEDED,
        {"p_run": run_id, "p_now": now, "p_result": result, "p_fingerprint": fingerprint},
    )
    connection.execute(
        _STAGE_SUCCEEDED,
        {"p_run": run_id, "p_position": Stage.PERSIST.position, "p_now": now, "p_started": now},
    )


_FINISHED_LIST = ", ".join(f"'{state.value}'" for state in sorted(FINISHED_STATES))
_UNFINISHED_LIST = ", ".join(f"'{state.value}'" for state in sorted(UNFINISHED_STATES))


def _pg_finish_sql(kind: str, with_issue: bool) -> str:
    """``finish_stage``'s statement: ``kind`` plain, cached or metered (tokens added);
    ``with_issue``: summarise's finish carries the issue's running mark (guarded: only while
    the issue is still pending for this run, never over persist's result). The stage row is
    touched only once the issue's is: the condition on the CTE's count (always true) is a
    one-time filter, evaluated before the scan of the stages, so the issue row is locked
    first, as every writer locks them (a cancel: issue, run, stages); an unreferenced CTE
    would run after the main UPDATE and could deadlock with a cancel."""
    sets = [
        f"state = '{TaskState.SUCCESS.value}'",
        "error = NULL",
        "finished_at = %(now)s",
        "started_at = COALESCE(started_at, %(started)s)",
        "result = %(result)s::json",
    ]
    if kind == "cached":
        sets.append("cached = true")
    elif kind == "metered":
        sets += [
            "prompt_tokens = COALESCE(prompt_tokens, 0) + %(prompt)s",
            "completion_tokens = COALESCE(completion_tokens, 0) + %(completion)s",
        ]
    where = f"run_id = %(run)s AND position = %(position)s AND state IN ({_UNFINISHED_LIST})"
    sql = f"UPDATE enrichment_stages SET {', '.join(sets)} WHERE {where}"
    if not with_issue:
        return sql
    return f"""WITH running AS (
    UPDATE issues
    SET enrichment_status = '{EnrichmentStatus.RUNNING.value}', updated_at = %(now)s
    WHERE id = %(issue)s AND enrichment_task_id = %(run)s
      AND enrichment_status = '{EnrichmentStatus.PENDING.value}'
    RETURNING 1
)
{sql} AND (SELECT count(*) FROM running) >= 0"""


_PG_FINISH = {
    (kind, with_issue): _pg_finish_sql(kind, with_issue)
    for kind in ("plain", "cached", "metered")
    for with_issue in (False, True)
}


# PostgreSQL: persist in one statement, its locks first. ``locked`` is what the main query
# reads, before any of the data-modifying CTEs runs (PostgreSQL runs those, which the main
# query does not read, after it): its scalar sub-SELECTs are evaluated in order, so the
# issue row is locked before the run row, then the writes touch the issue, its tags, the
# run and the persist stage, the order every writer follows. The issue's column is never
# NULL when the issue exists ('' for none): NULL means deleted. Each write happens only
# when the run is still the issue's current one and unfinished (``go``); otherwise nothing
# changes and ``persist_result`` says why from the returned row. The writes see the
# statement's snapshot, taken before the locks were granted: the issue, run and stage rows
# are re-checked at their latest version (READ COMMITTED), and the tags need no re-check:
# whoever else writes an issue's tags holds its row lock, so a writer that committed while
# this statement waited either was this run's own persist (the run is SUCCESS: no writes)
# or ended the run's turn (superseded, deleted: no writes either).
# The tags are replaced without a DELETE and INSERT of the same row (whose order inside one
# statement is not defined): tags no longer there are deleted, the others inserted or given
# their new position.
_PG_PERSIST = f"""
WITH locked AS MATERIALIZED (
    SELECT
        (SELECT COALESCE(enrichment_task_id, '') FROM issues WHERE id = %(issue)s FOR UPDATE)
            AS current_run,
        (SELECT state FROM enrichment_runs WHERE id = %(run)s FOR UPDATE) AS state
), go AS (
    SELECT 1 FROM locked WHERE current_run = %(run)s AND state IN ({_UNFINISHED_LIST})
), issue AS (
    UPDATE issues SET ai_summary = %(summary)s,
        enrichment_status = '{EnrichmentStatus.SUCCEEDED.value}', enrichment_error = NULL,
        enriched_at = %(now)s, updated_at = %(now)s
    WHERE id = %(issue)s AND EXISTS (SELECT FROM go)
), dropped AS (
    DELETE FROM issue_tags
    WHERE issue_id = %(issue)s AND tag <> ALL(%(tags)s::varchar[]) AND EXISTS (SELECT FROM go)
), tagged AS (
    INSERT INTO issue_tags (issue_id, tag, position)
    SELECT %(issue)s, t.tag, t.n - 1
    FROM unnest(%(tags)s::varchar[]) WITH ORDINALITY AS t(tag, n)
    WHERE EXISTS (SELECT FROM go)
    ON CONFLICT (issue_id, tag) DO UPDATE SET position = EXCLUDED.position
), run AS (
    UPDATE enrichment_runs SET state = '{TaskState.SUCCESS.value}', error = NULL,
        result = %(result)s::json, fingerprint = %(fingerprint)s, finished_at = %(now)s
    WHERE id = %(run)s AND EXISTS (SELECT FROM go)
), stage AS (
    UPDATE enrichment_stages SET state = '{TaskState.SUCCESS.value}', error = NULL,
        finished_at = %(now)s, started_at = COALESCE(started_at, %(now)s)
    WHERE run_id = %(run)s AND position = %(position)s
      AND state IN ({_UNFINISHED_LIST}) AND EXISTS (SELECT FROM go)
)
SELECT current_run, state FROM locked
"""
