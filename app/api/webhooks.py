"""/webhooks: the deliveries of ``issue.enriched`` and ``run.failed``, and re-sending one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BeforeValidator

from app.api.errors import errors
from app.deps import ReadAccess, SessionDep, WriteAccess
from app.pagination import InvalidCursor
from app.schemas import DeliveryPage, DeliveryRead, storable_text
from app.services.webhooks import Redelivery, get_delivery, list_deliveries, redeliver
from app.states import DeliveryState
from pipelines.webhooks import publish

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[ReadAccess])

DeliveryId = Annotated[str, Path(max_length=36), BeforeValidator(storable_text)]


def _not_found(delivery_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"delivery {delivery_id} not found")


@router.get("/deliveries", responses=errors(400, 401, 403, 422, 503))
def list_(
    session: SessionDep,
    state: DeliveryState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> DeliveryPage:
    """Webhook deliveries newest first; ``state=failed`` lists those that gave up, each
    with its last status and error."""
    try:
        rows, next_cursor = list_deliveries(
            session=session, limit=limit, cursor=cursor, state=state
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return DeliveryPage(
        items=[DeliveryRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get("/deliveries/{delivery_id}", responses=errors(401, 403, 404, 422, 503))
def read(delivery_id: DeliveryId, session: SessionDep) -> DeliveryRead:
    delivery = get_delivery(session=session, delivery_id=delivery_id)
    if delivery is None:
        raise _not_found(delivery_id)
    return DeliveryRead.model_validate(delivery)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses=errors(401, 403, 404, 409, 413, 422, 503),
)
def redeliver_(delivery_id: DeliveryId, session: SessionDep, request: Request) -> DeliveryRead:
    """Send a failed (or delivered) delivery again: same delivery id, same body, a fresh
    retry budget. ``409`` while it is still being sent."""
    with session.begin():
        outcome, delivery = redeliver(session=session, delivery_id=delivery_id)
    if delivery is None:
        raise _not_found(delivery_id)
    if outcome is Redelivery.STILL_PENDING:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"delivery {delivery_id} is still being sent; re-send it once it has failed",
        )
    publish([delivery_id], request.app.state.engine)
    return DeliveryRead.model_validate(delivery)
