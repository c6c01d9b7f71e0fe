"""Webhook deliveries in the database: recorded as a run ends, sent, listed, re-sent.

``webhook_deliveries`` is an outbox. A run's ``issue.enriched`` or ``run.failed`` row is
inserted in the very transaction that ends the run (``RunEvents``, called by
``pipelines.bookkeeping``), so the event exists exactly when the run ended that way, and
``UNIQUE(run_id, event)`` keeps a redelivered persist from recording it twice. The
``webhooks.deliver`` task (``pipelines.webhooks``) sends it and writes each attempt here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import uuid4

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import Issue, WebhookDelivery, utcnow
from app.pagination import newest_first_page
from app.states import DeliveryState, WebhookEvent
from app.webhooks import enriched_payload, failed_payload


def record_delivery(
    connection: Connection, *, run_id: str, event: WebhookEvent, payload: dict[str, Any]
) -> str | None:
    """Insert the run's ``event``, once; its delivery id, or None if it was recorded before."""
    now = utcnow()
    delivery_id = str(uuid4())
    values = {
        "id": delivery_id,
        "run_id": run_id,
        "event": event.value,
        "payload": payload,
        "state": DeliveryState.PENDING,
        "attempts": 0,
        "dispatched": False,
        "created_at": now,
        "updated_at": now,
    }
    # PostgreSQL and SQLite, the two databases issueflow runs on, spell it the same way.
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(WebhookDelivery).on_conflict_do_nothing()
    inserted = connection.execute(statement, values).rowcount
    return delivery_id if inserted else None


class RunEvents:
    """The webhook events of one transaction that ends runs.

    ``recorded`` holds the delivery ids inserted, for the caller to publish once the
    transaction has committed (``pipelines.webhooks.events_after_commit``).
    """

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def enriched(
        self,
        connection: Connection,
        *,
        run_id: str,
        issue_id: int,
        summary: str,
        tags: list[str],
        at: datetime,
    ) -> None:
        title = connection.execute(select(Issue.title).where(Issue.id == issue_id)).scalar_one()
        payload = enriched_payload(
            run_id=run_id, issue_id=issue_id, title=title, summary=summary, tags=tags, at=at
        )
        self._record(connection, run_id, WebhookEvent.ISSUE_ENRICHED, payload)

    def failed(
        self,
        connection: Connection,
        *,
        run_id: str,
        issue_id: int,
        stage: str,
        reason: str,
        at: datetime,
    ) -> None:
        payload = failed_payload(
            run_id=run_id, issue_id=issue_id, stage=stage, reason=reason, at=at
        )
        self._record(connection, run_id, WebhookEvent.RUN_FAILED, payload)

    def _record(
        self,
        connection: Connection,
        run_id: str,
        event: WebhookEvent,
        payload: dict[str, Any],
    ) -> None:
        delivery_id = record_delivery(connection, run_id=run_id, event=event, payload=payload)
        if delivery_id is not None:
            self.recorded.append(delivery_id)


# --- sending (the webhooks.deliver task) ------------------------------------------------


class Pending(NamedTuple):
    """A delivery still to be sent: what ``webhooks.deliver`` POSTs."""

    event: str
    payload: dict[str, Any]


def pending_delivery(connection: Connection, *, delivery_id: str) -> Pending | None:
    """The delivery if it is still to be sent (None: delivered, failed, or no such row)."""
    row = connection.execute(
        select(WebhookDelivery.event, WebhookDelivery.payload).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.state == DeliveryState.PENDING
        )
    ).one_or_none()
    return None if row is None else Pending(row.event, row.payload)


def record_attempt(
    connection: Connection,
    *,
    delivery_id: str,
    state: DeliveryState,
    status: int | None,
    error: str | None,
) -> None:
    """One more attempt, and where it leaves the delivery (``PENDING``: it will retry)."""
    now = utcnow()
    connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == DeliveryState.PENDING)
        .values(
            state=state,
            attempts=WebhookDelivery.attempts + 1,
            last_status=status,
            last_error=error,
            # A task carries it: the sweeper must not send it again, even if the publisher
            # died before it could say so.
            dispatched=True,
            updated_at=now,
            delivered_at=now if state == DeliveryState.DELIVERED else None,
        )
    )


def give_up(connection: Connection, *, delivery_id: str, error: str) -> None:
    """The delivery cannot be sent at all (too large, no URL): failed, no attempt counted."""
    connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == DeliveryState.PENDING)
        .values(state=DeliveryState.FAILED, last_error=error, dispatched=True, updated_at=utcnow())
    )


# --- the outbox -------------------------------------------------------------------------


def mark_dispatched(connection: Connection, *, delivery_ids: Sequence[str]) -> None:
    """A task message carries each of these deliveries now."""
    if delivery_ids:
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivery_ids))
            .values(dispatched=True)
        )


def undispatched(
    connection: Connection, *, older_than: float, lost_after: float, limit: int
) -> list[str]:
    """Pending deliveries to publish again, oldest first: those no task message carries,
    recorded at least ``older_than`` seconds ago (younger ones are being published by whoever
    recorded them), and those whose message was lost: nothing happened to them for
    ``lost_after`` seconds, longer than any retry's countdown and attempt may take."""
    now = utcnow()
    return list(
        connection.execute(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == DeliveryState.PENDING,
                or_(
                    WebhookDelivery.dispatched.is_(False)
                    & (WebhookDelivery.updated_at <= now - timedelta(seconds=older_than)),
                    WebhookDelivery.updated_at <= now - timedelta(seconds=lost_after),
                ),
            )
            .order_by(WebhookDelivery.created_at)
            .limit(limit)
        ).scalars()
    )


# --- the API --------------------------------------------------------------------------------


def get_delivery(*, session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id)


def list_deliveries(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    state: DeliveryState | None = None,
) -> tuple[Sequence[WebhookDelivery], str | None]:
    """Deliveries newest first, optionally only those in ``state``. Raises InvalidCursor."""
    query = select(WebhookDelivery)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    return newest_first_page(
        session,
        query,
        created_at=WebhookDelivery.created_at,
        key=WebhookDelivery.id,
        limit=limit,
        cursor=cursor,
    )


class Redelivery(enum.Enum):
    QUEUED = "queued"
    STILL_PENDING = "still pending"
    NOT_FOUND = "not found"


def redeliver(*, session: Session, delivery_id: str) -> tuple[Redelivery, WebhookDelivery | None]:
    """Send a delivered or failed delivery again, with the same id and body, in the
    caller's transaction; the caller publishes it once that commits. One still being sent
    (its retries included) is left alone."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        return Redelivery.NOT_FOUND, None
    if delivery.state == DeliveryState.PENDING:
        return Redelivery.STILL_PENDING, delivery
    delivery.state = DeliveryState.PENDING
    delivery.dispatched = False
    delivery.delivered_at = None
    delivery.updated_at = utcnow()
    return Redelivery.QUEUED, delivery
