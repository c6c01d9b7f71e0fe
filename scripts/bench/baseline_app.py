"""The yardsticks for ``POST /issues``: two tiny FastAPI apps on issueflow's own model.

    uvicorn baseline_app:floor_app        insert only: validate, INSERT the issue, answer
    uvicorn baseline_app:background_app   the original plan's endpoint (shared/original-plan.md):
                                          add + commit + refresh the issue (the FastAPI
                                          tutorial's shape, sync SQLAlchemy), then
                                          BackgroundTasks.add_task(enrich) with a no-op enrich;
                                          and GET /issues/{id}, a primary-key GET in the
                                          same shape (``session.get``), the yardstick of
                                          ``GET /tasks/<id>``

Both validate the body with issueflow's ``IssueCreate``, use its engine settings
(``app.db.make_engine``, DATABASE_URL) and answer ``201`` with the issue as ``IssueRead``,
so the only differences from ``app.main:app`` are the run bookkeeping and the broker.
Run from the repository root with this directory on PYTHONPATH (scripts/bench/api.py does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Response, status
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import make_engine, make_session_factory
from app.models import Issue
from app.schemas import IssueCreate, IssueRead
from app.services.issues import to_read

engine = make_engine(get_settings().database_url)
session_factory = make_session_factory(engine)


def get_session() -> Iterator[Session]:
    with session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def healthz() -> dict[str, str]:
    return {"status": "ok"}


floor_app = FastAPI(title="insert-only floor")
floor_app.get("/healthz")(healthz)


@floor_app.post("/issues", status_code=status.HTTP_201_CREATED)
def create_floor(data: IssueCreate, session: SessionDep, response: Response) -> IssueRead:
    """One transaction, one INSERT ... RETURNING: the least any create endpoint does."""
    with session.begin():
        issue = Issue(title=data.title, body=data.body, tag_rows=[])
        session.add(issue)
    response.headers["Location"] = f"/issues/{issue.id}"
    return to_read(issue)


def enrich_issue(issue_id: int) -> None:
    """The original plan's in-process enrichment, with the work taken out."""


background_app = FastAPI(title="original plan: BackgroundTasks")
background_app.get("/healthz")(healthz)


@background_app.post("/issues", status_code=status.HTTP_201_CREATED)
def create_background(
    data: IssueCreate, session: SessionDep, response: Response, background: BackgroundTasks
) -> IssueRead:
    issue = Issue(title=data.title, body=data.body, tag_rows=[])
    session.add(issue)
    session.commit()
    session.refresh(issue)
    background.add_task(enrich_issue, issue_id=issue.id)
    response.headers["Location"] = f"/issues/{issue.id}"
    return to_read(issue)


@background_app.get("/issues/{issue_id}")
def read_background(issue_id: int, session: SessionDep) -> IssueRead:
    """A primary-key GET as the tutorial writes it: ``session.get``, the tags loaded with it."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return to_read(issue)
