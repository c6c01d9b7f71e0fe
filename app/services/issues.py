"""Issues: create, read, list, change, delete."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select
from sqlalchemy.orm import Session

from app import search
from app.models import EnrichmentRun, EnrichmentStage, Issue, IssueTag, utcnow
from app.pagination import decode_cursor, encode_cursor
from app.schemas import EnrichmentRead, IssueCreate, IssueRead
from app.services.runs import StageSpec
from app.states import EnrichmentStatus, IssueStatus, TaskState


def create_issue(*, session: Session, data: IssueCreate) -> Issue:
    """A new issue, added to the session; ``start_enrichment`` flushes it with its run."""
    issue = Issue(title=data.title, body=data.body, tag_rows=[])
    session.add(issue)
    return issue


# PostgreSQL: the issue, its run and the run's stages in one statement. Data-modifying CTEs
# run once each, in the statement's one snapshot; the stages' foreign key is checked at
# the end of the statement, when the run exists. Sent alone on an autocommit connection it
# is the POST's one database round trip (no BEGIN, no COMMIT), and atomic all the same.
_INSERT_ISSUE_WITH_RUN = """
WITH issue AS (
    INSERT INTO issues (title, body, status, enrichment_status, enrichment_task_id,
                        created_at, updated_at)
    VALUES (%(title)s, %(body)s, %(issue_status)s, %(enrichment_status)s, %(run_id)s,
            %(now)s, %(now)s)
    RETURNING id
), run AS (
    INSERT INTO enrichment_runs (id, issue_id, state, dispatched, force, created_at, resumes)
    SELECT %(run_id)s, issue.id, %(state)s, %(dispatched)s, false, %(now)s, 0 FROM issue
    RETURNING id
), stages AS (
    INSERT INTO enrichment_stages (run_id, position, name, queue, task_id, state, retries,
                                   cached)
    SELECT run.id, stage.position, stage.name, stage.queue, stage.task_id, %(state)s, 0, false
    FROM run, (VALUES (0, %(name0)s, %(queue0)s, %(task0)s),
                      (1, %(name1)s, %(queue1)s, %(task1)s),
                      (2, %(name2)s, %(queue2)s, %(task2)s))
              AS stage (position, name, queue, task_id)
)
SELECT id FROM issue
"""

# How a statement given as driver SQL is run on a connection; returns its ``CursorResult``.
RunSql = Callable[[Connection, str, Mapping[str, Any]], Any]


def run_as_text(connection: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """The statement sent as text, parsed and planned by PostgreSQL each time."""
    return connection.exec_driver_sql(sql, dict(params))


def create_issue_with_run(
    *,
    session: Session,
    data: IssueCreate,
    run_id: str,
    stages: Sequence[StageSpec],
    dispatched: bool = True,
    run_sql: RunSql = run_as_text,
) -> IssueRead:
    """Insert a new issue with its first run (``run_id``, three ``stages``) and return it
    as the API shows it, in the caller's transaction. ``dispatched=False`` records the run
    in the outbox until its send is confirmed (``pipelines.dispatch.create_and_start``).
    ``run_sql`` runs the PostgreSQL statement: ``POST /issues`` passes
    ``pipelines.prepared.execute``, which prepares it once per database connection.

    This is ``create_issue`` + ``record_run`` for the hottest route (``POST /issues``)
    without ORM objects: on PostgreSQL one statement (``_INSERT_ISSUE_WITH_RUN``), which
    on the API's autocommit session is one round trip; elsewhere (SQLite) three INSERTs.
    """
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql" and len(stages) == 3:
        params: dict[str, Any] = {
            "title": data.title,
            "body": data.body,
            "issue_status": IssueStatus.OPEN.value,
            "enrichment_status": EnrichmentStatus.PENDING.value,
            "run_id": run_id,
            "now": now,
            "state": TaskState.PENDING.value,
            "dispatched": dispatched,
        }
        for position, spec in enumerate(stages):
            params |= {
                f"name{position}": spec.name,
                f"queue{position}": spec.queue,
                f"task{position}": spec.task_id,
            }
        issue_id: int = run_sql(session.connection(), _INSERT_ISSUE_WITH_RUN, params).scalar_one()
    else:
        issue_id = session.execute(
            insert(Issue).returning(Issue.id),
            {
                "title": data.title,
                "body": data.body,
                "enrichment_task_id": run_id,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        session.execute(
            insert(EnrichmentRun),
            {"id": run_id, "issue_id": issue_id, "created_at": now, "dispatched": dispatched},
        )
        session.execute(
            insert(EnrichmentStage),
            [
                {"run_id": run_id, "position": position, **spec._asdict()}
                for position, spec in enumerate(stages)
            ],
        )
    return IssueRead(
        id=issue_id,
        title=data.title,
        body=data.body,
        status=IssueStatus.OPEN,
        ai_summary=None,
        tags=[],
        enrichment=EnrichmentRead(
            status=EnrichmentStatus.PENDING, task_id=run_id, error=None, enriched_at=None
        ),
        created_at=now,
        updated_at=now,
    )


def get_issue(*, session: Session, issue_id: int, for_update: bool = False) -> Issue | None:
    """The issue, or None. ``for_update`` locks its row: always the first lock a write takes."""
    query = select(Issue).where(Issue.id == issue_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def list_issues(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    q: str | None = None,
    tags: Sequence[str] = (),
    enrichment_status: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[Issue], str | None]:
    """Issues matching every filter given, one page. Raises InvalidCursor.

    Without ``q``: newest first, and the cursor is the last id seen. With ``q``: best match
    first (rank descending, then newest first among equal ranks), and the cursor is the
    last (rank, id) seen; a page starts after it in that order. An issue whose text changes
    between two pages is ranked anew and may move across that boundary.
    """
    if q is None:
        query = select(Issue).order_by(Issue.id.desc())
        if cursor is not None:
            query = query.where(Issue.id < decode_cursor(cursor, keys={"id": int})["id"])
    else:
        ranked = search.matches(session.get_bind().dialect.name, q)
        if ranked is None:
            return [], None
        query = (
            select(Issue)
            .join(ranked, ranked.c.id == Issue.id)
            .add_columns(ranked.c.rank)
            .order_by(ranked.c.rank.desc(), Issue.id.desc())
        )
        if cursor is not None:
            position = decode_cursor(cursor, keys={"rank": float, "id": int})
            query = query.where(
                or_(
                    ranked.c.rank < position["rank"],
                    and_(ranked.c.rank == position["rank"], Issue.id < position["id"]),
                )
            )
    for tag in dict.fromkeys(tags):
        query = query.where(Issue.id.in_(select(IssueTag.issue_id).where(IssueTag.tag == tag)))
    if enrichment_status is not None:
        query = query.where(Issue.enrichment_status == enrichment_status)
    if status is not None:
        query = query.where(Issue.status == status)
    # (issue,) rows, or (issue, rank) with ``q``.
    rows: Sequence[Any] = session.execute(query.limit(limit + 1)).all()
    issues = [row[0] for row in rows]
    if len(rows) <= limit:
        return issues, None
    last = rows[limit - 1]
    after = {"id": last[0].id} if q is None else {"rank": float(last[1]), "id": last[0].id}
    return issues[:limit], encode_cursor(after)


def update_issue(*, issue: Issue, changes: dict[str, Any]) -> bool:
    """Apply ``changes``; True when the title or body changed (the issue needs enriching)."""
    text_changed = any(
        field in changes and changes[field] != getattr(issue, field) for field in ("title", "body")
    )
    for field, value in changes.items():
        setattr(issue, field, value)
    return text_changed


def to_read(issue: Issue) -> IssueRead:
    return IssueRead(
        id=issue.id,
        title=issue.title,
        body=issue.body,
        status=issue.status,
        ai_summary=issue.ai_summary,
        tags=issue.tags,
        enrichment=EnrichmentRead(
            status=issue.enrichment_status,
            task_id=issue.enrichment_task_id,
            error=issue.enrichment_error,
            enriched_at=issue.enriched_at,
        ),
        created_at=issue.created_at,
        updated_at=issue.updated_at,
    )
