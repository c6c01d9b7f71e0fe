"""Progress notifications of runs: who changed a run tells whoever is watching it.

A worker that commits a stage transition (started, retry, success, failure, revoked), and
the API when it ends a run (cancel, supersede, delete), PUBLISH the run id on Redis after
the commit:

- ``<prefix>run:<run id>``: the run changed. ``GET /tasks/<id>/events`` streams listen
  there, on any API process, and re-read the run from the database: the notification
  carries nothing the database does not have, so a missed one only delays an event until
  the stream's slow poll.
- ``<prefix>stop``: the run was ended by someone else than its own stages (cancel,
  supersede, delete). Workers waiting on a provider for that run stop waiting
  (``pipelines.stopwatch``).

Publishing never fails the caller: an unreachable Redis is logged (once per outage, then
left alone for a few seconds) and the run's progress is still in the database.

Events carry a ``revision`` of the run (``revision``): a number that grows with every
transition, derived from the stage rows alone, so no extra write is needed to keep it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import EnrichmentRun
from app.states import FINISHED_STATES, TaskState

log = logging.getLogger(__name__)

# After a failed PUBLISH, further publishes are skipped for this long: a Redis outage costs
# one timeout per process, not one per transition.
BACKOFF_AFTER_FAILURE = 5.0
SOCKET_TIMEOUT = 0.5

# Session.info keys: the publisher of a session factory, and runs ended in the open
# transaction (published once it commits).
SESSION_PUBLISHER = "progress_publisher"
_ENDED_RUNS = "progress_ended_runs"


def run_channel(prefix: str, run_id: str) -> str:
    return f"{prefix}run:{run_id}"


def stop_channel(prefix: str) -> str:
    return f"{prefix}stop"


def revision(run: EnrichmentRun) -> int:
    """A number that grows with every transition of the run (the events' ``id``).

    Each stage counts its own transitions from its state and retries: PENDING 0, RETRY
    after retry r 2r, STARTED 2r + 1, ended (SUCCESS, FAILURE, REVOKED) 2r + 2; a stage
    only ever moves forward along that line, so the sum over the stages, plus one once the
    run itself has ended, strictly increases with every transition.
    """
    total = 0
    for stage in run.stages:
        retries = stage.retries or 0
        if stage.state == TaskState.PENDING:
            total += 0
        elif stage.state == TaskState.RETRY:
            total += 2 * retries
        elif stage.state == TaskState.STARTED:
            total += 2 * retries + 1
        else:
            total += 2 * retries + 2
    return total + (1 if run.state in FINISHED_STATES else 0)


class ProgressPublisher:
    """PUBLISHes run ids; one Redis connection pool per process (rebuilt after a fork)."""

    def __init__(self, url: str | None, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._client: redis.Redis | None = None
        self._pid = 0
        self._quiet_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ProgressPublisher:
        return cls(settings.coordination_redis_url, settings.redis_key_prefix)

    def changed(self, run_id: str) -> None:
        """The run's committed state changed."""
        self._publish(run_channel(self.prefix, run_id), run_id)

    def changed_many(self, run_ids: Iterable[str]) -> None:
        """Several runs' committed states changed: one round trip for all of them."""
        if self.url is None or time.monotonic() < self._quiet_until:
            return
        try:
            pipe = self._redis().pipeline(transaction=False)
            for run_id in run_ids:
                pipe.publish(run_channel(self.prefix, run_id), run_id)
            pipe.execute()
        except redis.RedisError as exc:
            self._paused(exc)

    def stopped(self, run_ids: Iterable[str]) -> None:
        """These runs were ended by the API: tell the stages (and the streams) at once."""
        for run_id in run_ids:
            self._publish(run_channel(self.prefix, run_id), run_id)
            self._publish(stop_channel(self.prefix), run_id)

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                assert self.url is not None
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
                )
                self._pid = os.getpid()
            return self._client

    def _publish(self, channel: str, message: str) -> None:
        if self.url is None or time.monotonic() < self._quiet_until:
            return
        try:
            self._redis().publish(channel, message)
        except redis.RedisError as exc:
            self._paused(exc)

    def _paused(self, exc: redis.RedisError) -> None:
        self._quiet_until = time.monotonic() + BACKOFF_AFTER_FAILURE
        log.warning(
            "progress notifications paused for %.0fs: Redis did not take one (%s); "
            "event streams fall back to polling",
            BACKOFF_AFTER_FAILURE,
            exc,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


def note_ended(session: Session, run_id: str) -> None:
    """The API ended ``run_id`` in this session's transaction: publish it after the commit."""
    session.info.setdefault(_ENDED_RUNS, set()).add(run_id)


@event.listens_for(Session, "after_commit")
def _publish_ended_runs(session: Session) -> None:
    ended = session.info.pop(_ENDED_RUNS, None)
    publisher = session.info.get(SESSION_PUBLISHER)
    if ended and isinstance(publisher, ProgressPublisher):
        publisher.stopped(sorted(ended))


@event.listens_for(Session, "after_soft_rollback")
def _forget_ended_runs(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction rolled back
        session.info.pop(_ENDED_RUNS, None)
