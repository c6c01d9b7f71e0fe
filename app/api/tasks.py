"""/tasks: the progress of an enrichment chain, and failed runs without Flower."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BeforeValidator

from app.api.errors import errors
from app.deps import ReadAccess, SessionDep, SettingsDep
from app.pagination import InvalidCursor
from app.schemas import TaskPage, TaskStatusRead, storable_text
from app.services.runs import get_run, list_runs, task_status
from app.states import RunStateFilter

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[ReadAccess])


@router.get("/{task_id}", responses=errors(401, 403, 404, 422, 503))
def read(
    # No task id holds NUL or a lone surrogate, which PostgreSQL refuses even in a query.
    task_id: Annotated[str, Path(max_length=64), BeforeValidator(storable_text)],
    session: SessionDep,
    settings: SettingsDep,
) -> TaskStatusRead:
    """The whole chain's state from its root task id (a stage's own id works too)."""
    run = get_run(session=session, task_id=task_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no enrichment run knows task {task_id}")
    return task_status(run, prices=settings.token_prices)


@router.get("", responses=errors(400, 401, 403, 422, 503))
def list_(
    session: SessionDep,
    settings: SettingsDep,
    state: RunStateFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> TaskPage:
    """Runs newest first; ``state=FAILURE`` lists failed runs with their stage and reason.

    ``PENDING`` selects runs that have not ended yet.
    """
    try:
        runs, next_cursor = list_runs(session=session, limit=limit, cursor=cursor, state=state)
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    items = [task_status(run, prices=settings.token_prices) for run in runs]
    return TaskPage(items=items, next_cursor=next_cursor)
