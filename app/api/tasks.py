"""/tasks: the progress of an enrichment chain, live events, cancel, and failed runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from pydantic import BeforeValidator
from pydantic.json_schema import SkipJsonSchema
from sse_starlette import EventSourceResponse

from app.api.errors import errors
from app.api.responses import model_response
from app.deps import AutocommitSessionDep, ReadAccess, SessionDep, SettingsDep, WriteAccess
from app.pagination import InvalidCursor
from app.run_events import event_stream, not_found
from app.schemas import TaskPage, TaskStatusRead, storable_text
from app.services.runs import CancelOutcome, cancel_run, get_run, list_runs, task_status
from app.states import RunStateFilter

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[ReadAccess])

# No task id holds NUL or a lone surrogate, which PostgreSQL refuses even in a query.
TaskId = Annotated[str, Path(max_length=64), BeforeValidator(storable_text)]


def _not_found(task_id: str) -> HTTPException:
    return not_found(task_id)


@router.get("/{task_id}", response_model=TaskStatusRead, responses=errors(401, 403, 404, 422, 503))
def read(task_id: TaskId, session: AutocommitSessionDep, settings: SettingsDep) -> Response:
    """The whole chain's state from its root task id (a stage's own id works too)."""
    run = get_run(session=session, task_id=task_id)
    if run is None:
        raise _not_found(task_id)
    return model_response(task_status(run, prices=settings.token_prices))


@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "One event per transition of the run; each event's data is its "
            "TaskStatus JSON and its id grows; the stream ends after the final status.",
        },
        **errors(401, 403, 404, 422, 503),
    },
)
async def events(
    task_id: TaskId,
    request: Request,
    settings: SettingsDep,
    last_event_id: Annotated[int | SkipJsonSchema[None], Header()] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the run: its status at once, then at every stage transition.

    ``Last-Event-ID`` (sent by browsers when they reconnect) resumes after that event: no
    status is sent twice, and a run that ended after it sends its final status.
    """
    return await event_stream(request, settings, task_id=task_id, last_event_id=last_event_id)


@router.post(
    "/{task_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses={
        200: {"description": "The run had already been cancelled", "model": TaskStatusRead},
        **errors(401, 403, 404, 409, 413, 422, 503),
    },
)
def cancel(
    task_id: TaskId, session: SessionDep, settings: SettingsDep, response: Response
) -> TaskStatusRead:
    """Cancel the run: stages not started never run, a running stage's result is dropped,
    and the issue keeps the enrichment it had. ``409`` when the run had already ended."""
    with session.begin():
        outcome, run_id = cancel_run(session=session, task_id=task_id)
    if outcome is CancelOutcome.NOT_FOUND or run_id is None:
        raise _not_found(task_id)
    run = get_run(session=session, task_id=run_id)
    if run is None:  # deleted in between: its issue's deletion removed nothing, runs stay
        raise _not_found(task_id)
    if outcome is CancelOutcome.ALREADY_ENDED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"run {run_id} already ended {run.state.value}"
            + (f" ({run.error})" if run.error else ""),
        )
    if outcome is CancelOutcome.ALREADY_CANCELLED:
        response.status_code = status.HTTP_200_OK
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
