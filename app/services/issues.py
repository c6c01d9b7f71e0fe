"""Issues: create, read, list, change, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    tag: str | None = None,
    enrichment_status: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[Issue], str | None]:
    """Newest first; the cursor is the last id seen. Raises InvalidCursor."""
    query = select(Issue).order_by(Issue.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(Issue.id < decode_cursor(cursor, keys={"id": int})["id"])
    if tag is not None:
        tagged = select(IssueTag.issue_id).where(IssueTag.tag == tag)
        query = query.where(Issue.id.in_(tagged))
    if enrichment_status is not None:
        query = query.where(Issue.enrichment_status == enrichment_status)
    if status is not None:
        query = query.where(Issue.status == status)
    issues = session.scalars(query).all()
    if len(issues) <= limit:
        return issues, None
    return issues[:limit], encode_cursor({"id": issues[limit - 1].id})


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
