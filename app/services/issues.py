"""Issues: create, read, list, change, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app import search
from app.models import Issue, IssueTag
from app.pagination import decode_cursor, encode_cursor
from app.schemas import EnrichmentRead, IssueCreate, IssueRead


def create_issue(*, session: Session, data: IssueCreate) -> Issue:
    """A new issue, added to the session; ``start_enrichment`` flushes it with its run."""
    issue = Issue(title=data.title, body=data.body, tag_rows=[])
    session.add(issue)
    return issue


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
