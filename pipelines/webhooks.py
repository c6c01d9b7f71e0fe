"""``issue.enriched`` and ``run.failed`` webhooks: published after commit, sent by a task.

A run that ends SUCCESS (persist) or FAILURE (a stage's ``on_failure``) records its event
in the same transaction (``app.services.webhooks.RunEvents``); once that commits,
``events_after_commit`` publishes one ``webhooks.deliver`` message per event on the
``notify`` queue. A message the broker did not take leaves its row undispatched: the
API's outbox sweeper (``send_undispatched``) publishes it later, and publishes again a
pending delivery whose message was lost.

``webhooks.deliver`` POSTs the event (``app.webhooks``) and writes the attempt: 2xx is
delivered; a timeout, a connection error, 5xx, 408 or 429 is retried with the ``NOTIFY_*``
backoff (a 429's or 503's ``Retry-After`` honoured up to the longest wait a message may
take); any other answer (4xx, 3xx: redirects are not followed) fails the delivery at once.
After ``NOTIFY_MAX_RETRIES`` retries it is failed with its last error, listed by
``GET /webhooks/deliveries?state=failed`` and can be re-sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from kombu.exceptions import KombuError
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from app.celery_app import celery_app
from app.config import Settings
from app.services.webhooks import (
    RunEvents,
    give_up,
    mark_dispatched,
    pending_delivery,
    record_attempt,
    undispatched,
)
from app.states import DeliveryState
from app.webhooks import EventTooLarge, encode, headers, hide_url_in_logs, post, scrub, where
from pipelines.context import get_context
from pipelines.policies import StagePolicy, webhook_policy
from pipelines.queues import DELIVER_TASK

log = logging.getLogger(__name__)

# What a broker that cannot take the message raises (as in pipelines.dispatch).
BROKER_ERRORS = (KombuError, OSError)

# Answers worth another attempt: the receiver is down, overloaded, or asks us to wait.
RETRY_STATUSES = frozenset({408, 429})

# The sweeper leaves a delivery this long to whoever recorded it before it publishes it.
SWEEP_GRACE = 30.0

MAX_ERROR_LENGTH = 500

# Database errors worth another try of the whole task (as in pipelines.stage_task).
DATABASE_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


# --- publishing -----------------------------------------------------------------------------


@contextmanager
def events_after_commit(settings: Settings, engine: Engine) -> Iterator[RunEvents | None]:
    """``RunEvents`` for a transaction that may end runs (None when no webhook is set up),
    published once the block ends without an error.

    Open it around the transaction, so it closes after the commit::

        with events_after_commit(settings, engine) as events, engine.begin() as connection:
            persist_result(connection, ..., events=events)
    """
    if not settings.notify_webhook_url:
        yield None
        return
    events = RunEvents()
    yield events
    publish(events.recorded, engine)


def publish(delivery_ids: Sequence[str], engine: Engine) -> int:
    """Send a ``webhooks.deliver`` message for each delivery and mark it dispatched; how
    many were sent. Never raises: what is not sent waits for the outbox sweeper."""
    sent: list[str] = []
    try:
        for delivery_id in delivery_ids:
            deliver.apply_async(kwargs={"delivery_id": delivery_id})
            sent.append(delivery_id)
    except BROKER_ERRORS as exc:
        log.warning(
            "broker unreachable; %d webhook deliveries wait for the outbox sweeper: %s",
            len(delivery_ids) - len(sent),
            type(exc).__name__,
        )
    if sent:
        try:
            with engine.begin() as connection:
                mark_dispatched(connection, delivery_ids=sent)
        except sa_exc.SQLAlchemyError:
            # Harmless: the sweeper sends them once more, and a delivered one is not resent.
            log.exception("could not mark webhook deliveries %s as sent", sent)
    return len(sent)


def send_undispatched(engine: Engine, *, lost_after: float, limit: int = 100) -> int:
    """The outbox sweep: publish pending deliveries that no message carries, or whose
    message was lost (a worker killed mid-attempt, a message the broker dropped) since
    nothing happened to them for ``lost_after`` seconds; how many were sent."""
    with engine.connect() as connection:
        waiting = undispatched(
            connection, older_than=SWEEP_GRACE, lost_after=lost_after, limit=limit
        )
    sent = publish(waiting, engine) if waiting else 0
    if sent:
        log.info("outbox: sent %d webhook deliveries that were waiting for the broker", sent)
    return sent


def lost_after(settings: Settings) -> float:
    """Seconds after which a pending delivery nothing happened to has lost its message: a
    message waits at most the longest countdown, then runs at most its time limit, before
    its delivery is written again; a message a dead worker held comes back after the
    visibility timeout. Twice that, to be sure."""
    return 2 * (settings.celery_visibility_timeout + settings.notify_time_limit)


# --- sending --------------------------------------------------------------------------------


class DeliveryError(Exception):
    """Why an attempt failed, safe to log and store (no URL secrets)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableDeliveryError(DeliveryError):
    """A timeout, a connection error, 5xx, 408 or 429: worth another attempt."""


def attempt(
    settings: Settings,
    *,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST one delivery once; its HTTP status when delivered (2xx).

    Raises ``RetryableDeliveryError`` or ``DeliveryError`` (permanent), each with a message
    free of the URL's secrets.
    """
    url = settings.notify_webhook_url
    if not url:
        raise DeliveryError("NOTIFY_WEBHOOK_URL is not set on the worker")
    body = encode(payload)
    sent = headers(event=event, delivery_id=delivery_id, body=body, secret=settings.notify_secret)
    hide_url_in_logs(url)
    try:
        answer = post(
            url,
            body=body,
            sent_headers=sent,
            timeout=settings.notify_timeout,
            transport=transport,
        )
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise RetryableDeliveryError(_describe(exc, url)) from None
    except httpx.HTTPError as exc:  # an invalid URL, say
        raise DeliveryError(_describe(exc, url)) from None
    if answer.delivered:
        return answer.status
    reason = f"{where(url)} answered {answer.status}"
    if 300 <= answer.status < 400:
        reason += " (a redirect: not followed; set NOTIFY_WEBHOOK_URL to where it points)"
    elif answer.excerpt.strip():
        reason += f": {scrub(answer.excerpt.strip(), url)[:200]}"
    if answer.status >= 500 or answer.status in RETRY_STATUSES:
        retry_after = answer.retry_after if answer.status in (429, 503) else None
        raise RetryableDeliveryError(reason, status=answer.status, retry_after=retry_after)
    raise DeliveryError(reason, status=answer.status)


def _describe(exc: Exception, url: str) -> str:
    text = scrub(f"{type(exc).__name__}: {exc}".strip().rstrip(":"), url)
    return text[:MAX_ERROR_LENGTH]


@celery_app.task(
    bind=True,
    name=DELIVER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the NOTIFY_* policy counts retries
)
def deliver(self: Task[Any, Any], *, delivery_id: str) -> str:
    """Send one recorded webhook delivery; its state after this attempt."""
    context = get_context()
    policy = webhook_policy(context.settings)
    try:
        return _deliver(self, policy, context.settings, context.engine, delivery_id)
    except Retry:
        raise
    except DATABASE_ERRORS as exc:
        # The attempt could not be read or written: try again later, as a stage would.
        if self.request.retries >= policy.max_retries:
            raise
        wait = policy.countdown(self.request.retries)
        log.warning(
            "webhook delivery %s: database error, retry in %.1fs: %s", delivery_id, wait, exc
        )
        raise self.retry(countdown=wait, max_retries=None) from exc


def _deliver(
    task: Task[Any, Any], policy: StagePolicy, settings: Settings, engine: Engine, delivery_id: str
) -> str:
    with engine.connect() as connection:
        pending = pending_delivery(connection, delivery_id=delivery_id)
    if pending is None:
        log.info("webhook delivery %s: nothing to send (sent, failed, or gone)", delivery_id)
        return "skipped"
    try:
        status = attempt(
            settings, delivery_id=delivery_id, event=pending.event, payload=pending.payload
        )
    except EventTooLarge as exc:
        with engine.begin() as connection:
            give_up(connection, delivery_id=delivery_id, error=str(exc))
        log.error("webhook delivery %s failed: %s", delivery_id, exc)
        return DeliveryState.FAILED.value
    except SoftTimeLimitExceeded:
        error = RetryableDeliveryError(
            f"the attempt took longer than NOTIFY_TIME_LIMIT={settings.notify_time_limit:g}s"
        )
        return _failed(task, policy, engine, delivery_id, error)
    except DeliveryError as error:
        return _failed(task, policy, engine, delivery_id, error)
    with engine.begin() as connection:
        record_attempt(
            connection,
            delivery_id=delivery_id,
            state=DeliveryState.DELIVERED,
            status=status,
            error=None,
        )
    return DeliveryState.DELIVERED.value


def _failed(
    task: Task[Any, Any],
    policy: StagePolicy,
    engine: Engine,
    delivery_id: str,
    error: DeliveryError,
) -> str:
    """Record a failed attempt; retry it (raises ``Retry``) while the budget lasts."""
    retries = task.request.retries
    retry = isinstance(error, RetryableDeliveryError) and retries < policy.max_retries
    reason = str(error)
    if isinstance(error, RetryableDeliveryError) and not retry:
        reason = f"{reason} (gave up after {policy.max_retries} retries)"
    state = DeliveryState.PENDING if retry else DeliveryState.FAILED
    with engine.begin() as connection:
        record_attempt(
            connection, delivery_id=delivery_id, state=state, status=error.status, error=reason
        )
    if not retry:
        log.error("webhook delivery %s failed: %s", delivery_id, reason)
        return state.value
    wait = min(policy.countdown(retries, retry_after=error.retry_after), policy.longest_wait)
    log.warning(
        "webhook delivery %s: retry %d/%d in %.1fs after %s",
        delivery_id,
        retries + 1,
        policy.max_retries,
        wait,
        reason,
    )
    raise task.retry(exc=error, countdown=wait, max_retries=None)
