"""The events of one run, as Server-Sent Events: ``GET /tasks/<id>/events``.

The stream subscribes to the run's notification channel (``app.progress``) first, then
reads the run from the database, sends its status when its revision is newer than the
last one the client has, and waits for the next notification (or ``poll`` seconds, so a
missed notification costs only time). It ends right after a final status. Transitions
that follow each other faster than one database read arrive as one event, whose id jumps
(each event is the run's whole status, so nothing in it is lost).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from fastapi import HTTPException, Request, status
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.progress import revision, run_channel
from app.schemas import TaskStatusRead
from app.services.runs import get_run, task_status
from app.states import FINISHED_STATES

log = logging.getLogger(__name__)

# What the stream reads each time: the run's revision and status, or None once it is gone.
Snapshot = tuple[int, TaskStatusRead] | None

SUBSCRIBE_TIMEOUT = 2.0


class _Notifications:
    """The run's channel on Redis; without a Redis (or when it fails) only the slow poll."""

    def __init__(self, url: str | None, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None

    async def open(self) -> None:
        if self.url is None:
            return
        try:
            self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2)
            self._pubsub = self._client.pubsub()
            await self._pubsub.subscribe(self.channel)
            # Wait for the confirmation: from here on no PUBLISH to the channel is missed.
            await self._pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        except (RedisError, OSError) as exc:
            log.warning("run events of %s: polling only, no notifications (%s)", self.channel, exc)
            await self.close()

    async def wait(self, timeout: float) -> None:
        """Until a notification arrives (and any others already queued), or ``timeout``."""
        if self._pubsub is None:
            await anyio.sleep(timeout)  # no notifications: the poll is a plain timed wait
            return
        try:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout
            )
            while message is not None:  # several transitions: one read for all of them
                message = await self._pubsub.get_message(ignore_subscribe_messages=True)
        except (RedisError, OSError) as exc:
            log.warning("run events of %s: notifications lost, polling (%s)", self.channel, exc)
            await self.close()

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (RedisError, OSError):
            pass


async def run_events(
    *,
    run_id: str,
    read: Callable[[], Snapshot],
    redis_url: str | None,
    prefix: str,
    last_event_id: int | None,
    poll: float,
) -> AsyncIterator[ServerSentEvent]:
    """The events after ``last_event_id``; the last one is the run's final status."""
    notifications = _Notifications(redis_url, run_channel(prefix, run_id))
    await notifications.open()
    sent = last_event_id if last_event_id is not None else -1
    try:
        while True:
            snapshot = await run_in_threadpool(read)
            if snapshot is None:
                return
            revision, status = snapshot
            if revision > sent:
                yield ServerSentEvent(data=status.model_dump_json(), id=str(revision))
                sent = revision
            if status.state in FINISHED_STATES:
                return
            await notifications.wait(poll)
    finally:
        # A client that went away cancels this generator: close the subscription anyway.
        with anyio.CancelScope(shield=True):
            await notifications.close()


def not_found(task_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no enrichment run knows task {task_id}")


async def event_stream(
    request: Request, settings: Settings, *, task_id: str, last_event_id: int | None
) -> EventSourceResponse:
    """The response of ``GET /tasks/<id>/events`` (and of the web page's own stream);
    ``404`` before any stream when no run knows ``task_id``."""
    factory = request.app.state.session_factory

    def find() -> str | None:
        with factory() as session:
            run = get_run(session=session, task_id=task_id)
            return None if run is None else run.id

    run_id = await run_in_threadpool(find)
    if run_id is None:
        raise not_found(task_id)

    def read_snapshot() -> Snapshot:
        with factory() as session:
            run = get_run(session=session, task_id=run_id)
            return None if run is None else (revision(run), task_status(run))

    return EventSourceResponse(
        run_events(
            run_id=run_id,
            read=read_snapshot,
            redis_url=settings.coordination_redis_url,
            prefix=settings.redis_key_prefix,
            last_event_id=last_event_id,
            poll=settings.events_poll_interval,
        ),
        ping=settings.events_heartbeat_interval,
        # Proxies such as nginx buffer responses unless told not to.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
