"""/issues: create, read, list, change, delete and re-enrich issues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Response, status
from pydantic import BeforeValidator, StringConstraints
from sqlalchemy.orm import Session

from app.api.errors import errors
from app.api.responses import model_response
from app.deps import AutocommitSessionDep, ReadAccess, SessionDep, SettingsDep, WriteAccess
from app.models import Issue
from app.notify import notify_issue_creation
from app.pagination import InvalidCursor
from app.schemas import (
    EnrichmentStarted,
    IssueCreate,
    IssueCreated,
    IssuePage,
    IssueRead,
    IssueUpdate,
    TaskPage,
    storable_text,
)
from app.services.issues import get_issue, list_issues, to_read, update_issue
from app.services.runs import list_runs, revoke_runs_of, task_status
from app.states import EnrichmentStatus, IssueStatus
from pipelines.dispatch import create_and_start, start_enrichment

router = APIRouter(prefix="/issues", tags=["issues"])

WRITE_ERRORS = (401, 403, 413, 422, 503)
# A body FastAPI cannot even decode (not UTF-8, say) is a 400 before validation.
BODY_ERRORS = (400, *WRITE_ERRORS)


def _digits_only(value: object) -> object:
    """One URL per issue: refuse what int() would forgive ('4.0', ' 4', '4_000', '+4')."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits")
    return value


# The id column is a 32-bit INTEGER: a larger id can name no issue, and would reach the
# database as an out-of-range parameter (OverflowError on SQLite, DataError on PostgreSQL).
IssueId = Annotated[int, Path(ge=1, le=2**31 - 1), BeforeValidator(_digits_only)]


def _locked_issue(session: Session, issue_id: int) -> Issue:
    issue = get_issue(session=session, issue_id=issue_id, for_update=True)
    if issue is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"issue {issue_id} not found")
    return issue


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IssueCreated,
    dependencies=[WriteAccess],
    responses=errors(*BODY_ERRORS),
)
def create(
    data: IssueCreate,
    session: AutocommitSessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    """Create an issue and start its enrichment; poll ``status_url`` for progress."""
    # Where no sweeper looks for messages the broker lost, a run's send is confirmed.
    confirm_send = not (settings.broker_is_redis and settings.recover_interval)
    read, run_id = create_and_start(session=session, data=data, confirm_send=confirm_send)
    if settings.notify_webhook_url:
        background.add_task(
            notify_issue_creation,
            settings.notify_webhook_url,
            read.model_dump(mode="json"),
            timeout=settings.notify_timeout,
            secret=settings.notify_secret,
        )
    created = IssueCreated(issue=read, task_id=run_id, status_url=f"/tasks/{run_id}")
    return model_response(
        created, status_code=status.HTTP_201_CREATED, headers={"Location": f"/issues/{read.id}"}
    )


# No tag or query holds NUL or a lone surrogate, which PostgreSQL refuses even in a query.
TagParam = Annotated[str, StringConstraints(max_length=64), BeforeValidator(storable_text)]
SearchText = Annotated[str, StringConstraints(min_length=1, max_length=500)]


@router.get("", dependencies=[ReadAccess], responses=errors(400, 401, 403, 422, 503))
def list_(
    session: SessionDep,
    q: Annotated[
        SearchText | None,
        Query(
            description="Full-text search over title and body, best match first: words "
            '(all must match), "a phrase", `or`, `-word` to exclude.'
        ),
        BeforeValidator(storable_text),
    ] = None,
    tag: Annotated[
        list[TagParam] | None,
        Query(max_length=10, description="Repeat for several: an issue must have them all."),
    ] = None,
    enrichment_status: EnrichmentStatus | None = None,
    status_: Annotated[IssueStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IssuePage:
    """Issues, newest first (best match first with ``q``); every filter given must hold.

    Pass ``next_cursor`` back as ``cursor``, with the same filters, for the next page.
    """
    try:
        issues, next_cursor = list_issues(
            session=session,
            limit=limit,
            cursor=cursor,
            q=q,
            tags=tag or (),
            enrichment_status=enrichment_status,
            status=status_,
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return IssuePage(items=[to_read(issue) for issue in issues], next_cursor=next_cursor)


@router.get("/{issue_id}", dependencies=[ReadAccess], responses=errors(401, 403, 404, 422, 503))
def read(issue_id: IssueId, session: SessionDep) -> IssueRead:
    issue = get_issue(session=session, issue_id=issue_id)
    if issue is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"issue {issue_id} not found")
    return to_read(issue)


@router.patch("/{issue_id}", dependencies=[WriteAccess], responses=errors(404, *BODY_ERRORS))
def patch(issue_id: IssueId, data: IssueUpdate, session: SessionDep) -> IssueRead:
    """Change fields; a changed title or body starts a new run that supersedes the old one."""
    with session.begin():
        issue = _locked_issue(session, issue_id)
        if update_issue(issue=issue, changes=data.changes()):
            start_enrichment(session=session, issue=issue)
    return to_read(issue)


@router.delete(
    "/{issue_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAccess],
    responses=errors(404, *WRITE_ERRORS),
)
def delete(issue_id: IssueId, session: SessionDep) -> Response:
    """Delete the issue; a run still going ends REVOKED and keeps its record."""
    with session.begin():
        issue = _locked_issue(session, issue_id)
        revoke_runs_of(session=session, issue=issue, reason=f"issue {issue_id} was deleted")
        session.delete(issue)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{issue_id}/enrich",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses=errors(404, *WRITE_ERRORS),
)
def enrich(
    issue_id: IssueId,
    session: SessionDep,
    force: Annotated[
        bool, Query(description="call the provider even if this text was enriched before")
    ] = False,
) -> EnrichmentStarted:
    """Run the enrichment again (after a failure, say); supersedes a run still going.

    Unchanged text reuses the last result (stages show ``cached: true``) unless ``force``.
    """
    with session.begin():
        issue = _locked_issue(session, issue_id)
        run_id = start_enrichment(session=session, issue=issue, force=force)
    return EnrichmentStarted(task_id=run_id, status_url=f"/tasks/{run_id}")


@router.get(
    "/{issue_id}/runs", dependencies=[ReadAccess], responses=errors(400, 401, 403, 404, 422, 503)
)
def runs(
    issue_id: IssueId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> TaskPage:
    """The issue's enrichment runs, newest first, each with its stages."""
    if get_issue(session=session, issue_id=issue_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"issue {issue_id} not found")
    try:
        found, next_cursor = list_runs(
            session=session, limit=limit, cursor=cursor, issue_id=issue_id
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return TaskPage(items=[task_status(run) for run in found], next_cursor=next_cursor)
