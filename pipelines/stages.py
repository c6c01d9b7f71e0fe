"""What every stage task does around its work: bookkeeping, retries, failure, staleness.

A stage marks itself STARTED and reads its input in one short transaction, does its work
outside any transaction, then marks itself SUCCESS. Transient errors are retried with the
stage's policy; anything else fails the run at once with its reason.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NoReturn, TypeVar

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from sqlalchemy import exc as sa_exc

from app.config import get_settings
from app.db import get_engine, make_engine, session_scope
from app.services.runs import (
    RunNotFound,
    StageInput,
    StaleRun,
    begin_stage,
    end_stale_run,
    fail_run,
    finish_stage,
    retry_stage,
)
from pipelines.policies import StagePolicy
from pipelines.providers.base import TransientError
from pipelines.queues import Stage
from pipelines.ratelimit import TokenBucket

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors worth retrying: the provider said so, the attempt ran out of time, the database
# connection broke, deadlocked or was busy, or the rate limiter's Redis did not answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    SoftTimeLimitExceeded,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    redis.ConnectionError,  # the rate limiter's Redis
    redis.TimeoutError,
)

# The API sends a chain just before it commits the run, so a fast worker may look for the
# run a moment too early. It looks again for this long; a run still missing then was
# rolled back with its request, and its message is dropped.
RUN_VISIBILITY_WAIT = 2.0
RUN_VISIBILITY_FIRST_POLL = 0.002
RUN_VISIBILITY_MAX_POLL = 0.1

MAX_ERROR_LENGTH = 1000

# A stage blocks its worker slot for a provider token at most this long; for a longer wait
# it goes back to the broker with a countdown, leaving the slot to other work.
PROVIDER_SLOT_MAX_BLOCK = 1.0


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, short enough to store and show."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def engine() -> Any:
    """For results and failures: commits wait until they are durable."""
    return get_engine(get_settings().database_url)


def marks_engine() -> Any:
    """For progress marks (STARTED, SUCCESS of summarise and tag, RETRY, REVOKED): commits
    do not wait for the disk. A database crash can lose the last marks; the run's result
    and failures are written through ``engine()``."""
    return get_engine(get_settings().database_url, durable=False)


def run_stage(
    task: Task[Any, Any],
    stage: Stage,
    policy: StagePolicy,
    run_id: str,
    work: Callable[[StageInput], T],
) -> T:
    """Run one stage of ``run_id``: begin, work, finish; retry, fail or stop as needed."""
    try:
        data = _begin(run_id, stage)
        result = work(data)
        with marks_engine().begin() as connection:
            finish_stage(session=connection, run_id=run_id, position=stage.position)
        return result
    except Exception as exc:
        handle_stage_error(task, stage, policy, run_id, exc)


def _begin(run_id: str, stage: Stage) -> StageInput:
    """``begin_stage``, waiting briefly for a run whose API transaction is still committing.

    A short in-process wait rather than a Celery retry: a retry would count against the
    stage's retry budget, and the commit normally lands within milliseconds.
    """
    deadline = time.monotonic() + RUN_VISIBILITY_WAIT
    pause = threading.Event()
    poll = RUN_VISIBILITY_FIRST_POLL
    while True:
        try:
            with marks_engine().begin() as connection:
                return begin_stage(session=connection, run_id=run_id, position=stage.position)
        except RunNotFound:
            if time.monotonic() >= deadline:
                raise
            pause.wait(poll)
            poll = min(poll * 2, RUN_VISIBILITY_MAX_POLL)


def handle_stage_error(
    task: Task[Any, Any], stage: Stage, policy: StagePolicy, run_id: str, exc: Exception
) -> NoReturn:
    """Retry, stop or fail, and say so on the run. Always raises."""
    if isinstance(exc, Retry | Ignore):
        raise exc
    if isinstance(exc, StaleRun):
        stop_stale(run_id, stage, str(exc))
    if isinstance(exc, RunNotFound):
        log.error(
            "%s: no run %s in the database (its request was rolled back); dropping the message",
            stage.task_name,
            run_id,
        )
        raise Ignore() from exc
    reason = describe(exc)
    if isinstance(exc, TRANSIENT_ERRORS) and task.request.retries < policy.max_retries:
        retries = task.request.retries
        countdown = policy.countdown(retries, retry_after=getattr(exc, "retry_after", None))
        _record(
            retry_stage,
            durable=False,
            run_id=run_id,
            position=stage.position,
            retries=retries + 1,
            error=reason,
        )
        log.warning(
            "%s run %s: retry %d/%d in %.1fs after %s",
            stage.task_name,
            run_id,
            retries + 1,
            policy.max_retries,
            countdown,
            reason,
        )
        raise task.retry(exc=exc, countdown=countdown, max_retries=None) from exc
    if isinstance(exc, TRANSIENT_ERRORS):
        reason = f"{reason} (gave up after {policy.max_retries} retries)"
    _record(fail_run, run_id=run_id, position=stage.position, error=reason)
    log.error("%s run %s failed: %s", stage.task_name, run_id, reason)
    raise exc


def stop_stale(run_id: str, stage: Stage, reason: str) -> NoReturn:
    """The run was superseded or its issue deleted: end it as REVOKED and stop the chain."""
    log.info("%s run %s stopped: %s", stage.task_name, run_id, reason)
    _record(end_stale_run, durable=False, run_id=run_id, reason=reason)
    raise Ignore()


def record_hard_time_limit(stage: Stage, policy: StagePolicy, run_id: str) -> None:
    """The hard time limit killed an attempt before the stage could say why: say it here.

    The soft limit cannot interrupt a call blocked in C code (a lock wait in libpq, say).
    Called in the worker's main process (Celery's ``task_failure`` signal), with an engine
    of its own closed at once, so that pool processes forked later share no connection.
    """
    reason = (
        f"TimeLimitExceeded: the attempt was killed after "
        f"{stage.value.upper()}_TIME_LIMIT={policy.time_limit:g}s"
    )
    log.error("%s run %s failed: %s", stage.task_name, run_id, reason)
    db = make_engine(get_settings().database_url)
    try:
        with session_scope(db) as session:
            fail_run(session=session, run_id=run_id, position=stage.position, error=reason)
    except sa_exc.SQLAlchemyError:
        log.exception("could not record fail_run for run %s", run_id)
    finally:
        db.dispose()


def _record(write: Callable[..., None], *, durable: bool = True, **kwargs: Any) -> None:
    """Bookkeeping that must not hide the error being handled if the database is down."""
    try:
        if durable:
            with session_scope(engine()) as session:
                write(session=session, **kwargs)
        else:
            with marks_engine().begin() as connection:
                write(session=connection, **kwargs)
    except sa_exc.SQLAlchemyError:
        log.exception("could not record %s for run %s", write.__name__, kwargs.get("run_id"))


@lru_cache(maxsize=1)
def provider_bucket() -> TokenBucket | None:
    """The cluster-wide bucket for PROVIDER_RATE_LIMIT, or None when no limit is set.

    It lives on Redis: the result backend's when that is Redis, else the broker's.
    """
    settings = get_settings()
    if not settings.provider_rate_limit:
        return None
    url = next(
        (
            u
            for u in (settings.celery_result_backend, settings.celery_broker_url)
            if u.startswith(("redis://", "rediss://", "unix://"))
        ),
        None,
    )
    if url is None:
        raise RuntimeError("PROVIDER_RATE_LIMIT needs Redis: set CELERY_RESULT_BACKEND=redis://...")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    key = f"{settings.redis_key_prefix}ratelimit:provider"
    return TokenBucket(client, key, settings.provider_rate_limit)


def take_provider_slot(task: Task[Any, Any]) -> None:
    """Take a token from the provider bucket, or send the task back to wait for one.

    Waiting for the rate limit is not a failure: the task goes back to its queue with a
    countdown and its retry count unchanged.
    """
    bucket = provider_bucket()
    if bucket is None:
        return
    delay = bucket.acquire()
    if delay == 0.0:
        return
    if delay <= PROVIDER_SLOT_MAX_BLOCK and bucket.wait(PROVIDER_SLOT_MAX_BLOCK):
        return
    countdown = delay + random.uniform(0, delay / 10)
    request = task.request
    task.signature_from_request(request, countdown=countdown, retries=request.retries).apply_async()
    # celery-types declares `when` as numbers.Real, which mypy cannot match with a float.
    raise Retry(f"waiting {countdown:.1f}s for PROVIDER_RATE_LIMIT", when=countdown)  # type: ignore[arg-type]
