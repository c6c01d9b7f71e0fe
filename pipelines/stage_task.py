"""``StageTask``: what every stage does around its work, as a Celery task base class.

``__call__`` begins the stage (reads its input and marks it STARTED), runs the task's body
outside any transaction, and finishes it (SUCCESS): on PostgreSQL each of these statements
is its own transaction, one round trip (``WorkerContext.single_engine``), and the STARTED
mark of a first delivery is written behind (``pipelines.marks``), or by the finish.
summarise's finish is written behind too (``finishes_behind``): it travels in tag's message
and tag's read writes it, so summarise costs one round trip; tag's read is also what tells
whether the run ended while summarise ran.
Transient errors are retried with the stage's policy (equal-jitter backoff, the server's
``Retry-After``, never past the visibility timeout); a stale run (superseded, cancelled,
issue deleted) stops the chain; anything else fails the run with its reason in
``on_failure``, which Celery also calls when the hard time limit kills an attempt.
A stage that succeeds sends the next one itself, as a slim message
(``pipelines.messages.send_next_stage``), in place of Celery's chain continuation.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from sqlalchemy import exc as sa_exc

from app.config import Settings, get_settings
from app.db import make_engine
from app.models import utcnow
from app.progress import ProgressPublisher
from pipelines.bookkeeping import (
    RunNotFound,
    StageInput,
    StaleRun,
    begin_stage,
    begin_stage_behind,
    fail_run,
    finish_stage,
    retry_stage,
    run_ended,
    stop_run,
)
from pipelines.cache import earlier_result, fingerprint, fingerprint_prefix
from pipelines.context import (
    WorkerContext,
    current_context,
    forget_context_after_fork,
    get_context,
)
from pipelines.deliveries import OWN_ATTEMPT, StageDone, StageHeld, lease_for, started_here
from pipelines.marks import Finish, MarkBuffer, finish_rows
from pipelines.messages import carried_finishes, send_next_stage
from pipelines.outcomes import failure_reason
from pipelines.policies import StagePolicy
from pipelines.providers import Provider
from pipelines.providers.base import TransientError
from pipelines.queues import Stage
from pipelines.stopwatch import WatchedProvider
from pipelines.usage import StageUsage, mark_cached, metering
from pipelines.webhooks import events_after_commit

log = logging.getLogger(__name__)

# Errors worth retrying: the provider said so, the attempt ran out of time, the database
# connection broke, deadlocked or was busy, or the rate limiter's Redis did not answer.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TransientError,
    SoftTimeLimitExceeded,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    redis.ConnectionError,
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

# Message header: do not run before this Unix time. Set when a wait (a server's long
# Retry-After) is longer than one countdown may be; the message then waits in several hops.
NOT_BEFORE = "issueflow_not_before"


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, short enough to store and show."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class StageTask(Task[Any, Any]):
    """Base class of the three stage tasks; each sets ``stage`` (a task option).

    Every stage task takes ``run_id`` and ``issue_id`` as keyword arguments, the same way,
    so Flower shows (and searches) both.
    """

    stage: Stage
    # summarise and tag read the issue and mark their progress; persist does both inside
    # its own transaction.
    tracks_progress: bool = True
    # Look for an earlier result of the same input as the stage begins, in the same
    # transaction (``fingerprint``, ``earlier_result()``).
    reuses_results: bool = False
    # On PostgreSQL the finish is written behind (``pipelines.marks``) and travels in the
    # next stage's message, whose first statement writes it: for a stage whose next stage
    # begins with a read of the run (summarise: tag's read tells whether the run was
    # cancelled or superseded meanwhile, as this stage's own finish would have).
    finishes_behind: bool = False

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None  # the stage policy counts retries (``_retry``), Celery must not cap them

    @property
    def context(self) -> WorkerContext:
        return get_context()

    @property
    def policy(self) -> StagePolicy:
        return self.context.policies[self.stage]

    @property
    def issue(self) -> StageInput:
        """The issue as the stage read it when it began."""
        issue: StageInput = self.request.get("issue")
        return issue

    def provider(self) -> Provider:
        """The provider, once the cluster-wide rate limit allows one more call.

        With a stopwatch (network-bound providers) its calls end early, with ``StaleRun``,
        when the run is cancelled meanwhile (``pipelines.stopwatch``).
        """
        self._take_provider_slot()
        context = self.context
        if context.stopwatch is None:
            return context.provider
        run_id: str = (self.request.kwargs or {})["run_id"]
        return WatchedProvider(context.provider, context.stopwatch, run_id, self._run_ended)

    @property
    def fingerprint(self) -> str | None:
        """What this stage's result depends on (``pipelines.cache``); with ``reuses_results``."""
        key: str | None = self.request.get("fingerprint")
        return key

    def earlier_result(self) -> dict[str, Any] | None:
        """An earlier run's result for the same input, found when the stage began (never
        for a run started with ``force``); the stage is then marked cached."""
        result: dict[str, Any] | None = self.request.get("earlier_result")
        if result is not None:
            mark_cached()
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with metering() as usage:
            result = self._run(usage, args, kwargs)
        request = self.request
        finish: dict[str, Any] | None = request.get("issueflow_finish")
        carried = False
        if request.chain and not request.is_eager:
            # The next stage, as a slim message; Celery's continuation would build a full one.
            carried = send_next_stage(
                self.app, request, result, [finish] if finish is not None else None
            )
        if finish is not None and request.chain and not carried:
            # Celery's continuation sends the next stage without it: written now, before.
            self._write_marks()
        return result

    def _run(self, usage: StageUsage, args: Any, kwargs: Any) -> Any:
        run_id: str = kwargs["run_id"]
        try:
            self._hold_until_not_before()
            behind = False  # this attempt's start mark waits in ``context.marks``
            if self.tracks_progress:
                try:
                    issue, behind = self._begin(run_id, carried_finishes(args))
                    self.request.update(issue=issue)
                except StageDone as done:  # a late duplicate: the provider is not called
                    log.info("%s run %s: %s", self.name, run_id, done)
                    return done.result
                except StageHeld as held:
                    self._send_back(held.wait, str(held))
                if not behind:
                    self._changed(run_id)
            result = super().__call__(*args, **kwargs)
            if self.tracks_progress and self.finishes_behind and self.context.marks is not None:
                self._finish_behind(self.context.marks, run_id, usage, result)
                return result
            if self.tracks_progress:
                marks = self.context.marks
                # Start marks still waiting are written by the finish instead.
                started, issue_id = (
                    marks.take_start(run_id, self.stage.position) if marks else (None, None)
                )
                # One statement, one round trip on PostgreSQL (autocommit); the staleness
                # read only when the mark found nothing to change.
                with self.context.single_engine.begin() as connection:
                    finished = finish_stage(
                        connection,
                        run_id=run_id,
                        stage=self.stage,
                        usage=usage,
                        result=result,
                        started_at=started,
                        issue_id=issue_id,
                    )
                    # Not marked: a redelivery of a stage already done goes on; a run that
                    # was cancelled (or superseded) while the stage ran drops the result.
                    stale = not finished and run_ended(connection, run_id=run_id)
                if stale:
                    raise StaleRun(f"run {run_id} ended while {self.stage.value} ran")
                if marks is not None:  # mid-chain: told with the next flush of the marks
                    marks.notify(run_id)
                    return result
            self._changed(run_id)  # persist committed its result in the body: told at once
            return result
        except (Retry, Ignore):
            raise
        except StaleRun as exc:
            self._stop(run_id, str(exc))
        except RunNotFound as exc:
            log.error(
                "%s: no run %s in the database (its request was rolled back); dropping the message",
                self.name,
                run_id,
            )
            raise Ignore() from exc
        except TRANSIENT_ERRORS as exc:
            if self.request.retries < self.policy.max_retries:
                self._retry(run_id, exc, usage)
            raise  # retries exhausted: on_failure records it

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The stage failed for good: record why on the run.

        For an attempt killed by the hard time limit Celery calls this in the worker's
        main process: the write then goes to a thread with an engine of its own, so a slow
        database never stalls the worker and no connection crosses a later fork.
        """
        run_id = (kwargs or {}).get("run_id")
        if not isinstance(run_id, str):
            return
        if isinstance(exc, TimeLimitExceeded):
            reason = (
                f"TimeLimitExceeded: the attempt was killed after "
                f"{self.stage.value.upper()}_TIME_LIMIT="
                f"{get_settings().stage(self.stage.value).time_limit:g}s"
            )
            threading.Thread(
                target=self._record_failure_on_own_engine,
                args=(run_id, reason),
                name=f"time-limit-{run_id}",
                daemon=True,
            ).start()
            return
        reason = describe(exc)
        if isinstance(exc, TRANSIENT_ERRORS):
            reason = f"{reason} (gave up after {self.policy.max_retries} retries)"
        self._write_marks()  # the attempt's start (when it began) before its FAILURE
        context = self.context
        self._record_failure(context.engine, run_id, reason, context.progress, context.settings)

    # -- the steps -----------------------------------------------------------------------

    def _finish_behind(
        self, marks: MarkBuffer, run_id: str, usage: StageUsage, result: Any
    ) -> None:
        """The stage's SUCCESS waits in ``marks`` (written within ``FLUSH_INTERVAL``, its
        watchers told then) and goes to the next stage's message (``__call__``)."""
        metered = usage.metered and not usage.cached
        finish = marks.finished(
            run_id,
            self.stage.position,
            Finish(
                finished_at=utcnow(),
                result=result,
                prompt_tokens=(usage.prompt_tokens or 0) if metered else None,
                completion_tokens=(usage.completion_tokens or 0) if metered else None,
                cached=usage.cached,
            ),
        )
        self.request.update(issueflow_finish=finish.row(self.stage.position))

    def _begin(
        self, run_id: str, finished: list[dict[str, Any]] | None = None
    ) -> tuple[StageInput, bool]:
        """Begin the stage, waiting briefly for a run whose API transaction is committing.

        On PostgreSQL one read (``begin_stage_behind``): the input and the stage's row, its
        STARTED mark written behind (True) unless the message was redelivered or the stage
        started elsewhere, which claim it at once (False); the same statement writes the
        ``finished`` stages before it that the message carries. SQLite: ``begin_stage``.

        A short in-process wait for the run rather than a Celery retry: a retry would count
        against the stage's retry budget, and the commit normally lands within milliseconds.

        Statements here are each their own transaction (``single_engine``, autocommit on
        PostgreSQL): no BEGIN and COMMIT round trips. Beginning needs no atomicity: every
        mark is guarded (the issue only while the run is its current one, the stage only
        while unfinished), so a run ended between the read and a mark leaves that mark
        undone, as it would with a transaction at READ COMMITTED, and the next stage, or
        this stage's synchronous finish, then finds the run ended.
        """
        deadline = time.monotonic() + RUN_VISIBILITY_WAIT
        pause = threading.Event()
        poll = RUN_VISIBILITY_FIRST_POLL
        context = self.context
        while True:
            try:
                with context.single_engine.begin() as connection:
                    if context.marks is not None:
                        # summarise's earlier result is looked for in the same read.
                        issue, behind = begin_stage_behind(
                            connection,
                            run_id=run_id,
                            stage=self.stage,
                            marks=context.marks,
                            lease=self._lease(),
                            fingerprint_prefix=(
                                fingerprint_prefix(context.provider)
                                if self.reuses_results
                                else None
                            ),
                            finished=finish_rows(finished) if finished else None,
                        )
                        if self.reuses_results:
                            self.request.update(
                                fingerprint=issue.fingerprint, earlier_result=issue.earlier_result
                            )
                        return issue, behind
                    issue = begin_stage(
                        connection, run_id=run_id, stage=self.stage, lease=self._lease()
                    )
                    if self.reuses_results:
                        key = fingerprint(context.provider, issue.title, issue.body)
                        earlier = None if issue.force else earlier_result(connection, key)
                        self.request.update(fingerprint=key, earlier_result=earlier)
                    return issue, False
            except RunNotFound:
                if time.monotonic() >= deadline:
                    raise
                pause.wait(poll)
                poll = min(poll * 2, RUN_VISIBILITY_MAX_POLL)

    def _write_marks(self) -> None:
        """Write this process's waiting marks now, before a final state that would leave a
        late start mark unwritten (its guard): the stage keeps when it started."""
        marks = self.context.marks
        if marks is None:
            return
        try:
            marks.flush()
        except sa_exc.SQLAlchemyError:
            log.warning("start marks not written yet; they wait for the next flush")

    def _lease(self) -> timedelta | None:
        return lease_for(self.policy.time_limit, alive_elsewhere=not started_here(self.request))

    def _retry(self, run_id: str, exc: Exception, usage: StageUsage | None = None) -> NoReturn:
        retries = self.request.retries
        reason = describe(exc)
        marks = self.context.marks
        # The attempt's start mark, if still waiting, is written by the RETRY mark instead.
        started = None
        if marks is not None:
            started, _ = marks.take_start(run_id, self.stage.position, with_issue=False)
        wait = self.policy.countdown(retries, retry_after=getattr(exc, "retry_after", None))
        try:
            with self.context.marks_engine.begin() as connection:
                retry_stage(
                    connection,
                    run_id=run_id,
                    stage=self.stage,
                    retries=retries + 1,
                    error=reason,
                    reason=failure_reason(exc),
                    usage=usage,
                    retry_at=utcnow() + timedelta(seconds=wait),
                    started_at=started,
                )
            self._changed(run_id)
        except sa_exc.SQLAlchemyError:
            log.exception("could not record the retry of run %s", run_id)
        log.warning(
            "%s run %s: retry %d/%d in %.1fs after %s",
            self.name,
            run_id,
            retries + 1,
            self.policy.max_retries,
            wait,
            reason,
        )
        hop, headers = self._hop(wait)
        raise self.retry(exc=exc, countdown=hop, max_retries=None, headers=headers)

    def _hop(self, wait: float) -> tuple[float, dict[str, str]]:
        """One countdown of at most the policy's longest wait, and the header that keeps
        the rest of a longer wait."""
        hop = min(wait, self.policy.longest_wait)
        if hop < wait:
            return hop, {NOT_BEFORE: repr(time.time() + wait)}
        return hop, {}

    def _hold_until_not_before(self) -> None:
        """A message still inside a server's long Retry-After goes back for another hop,
        without calling anyone and without counting a retry."""
        not_before = (self.request.headers or {}).get(NOT_BEFORE) or self.request.get(NOT_BEFORE)
        if not_before is None:
            return
        left = float(not_before) - time.time()
        if left <= 0:
            return
        hop, headers = self._hop(left)
        self._send_back(hop, f"Retry-After: {left:.0f}s left", headers=headers)

    def _stop(self, run_id: str, reason: str) -> NoReturn:
        """The run was superseded, cancelled or its issue deleted: end it REVOKED, tell
        monitors (Flower) this task is revoked, and stop the chain."""
        log.info("%s run %s stopped: %s", self.name, run_id, reason)
        self.request.update(issueflow_stopped=True)  # for pipelines.metrics: a revoked task
        self._write_marks()
        try:
            with self.context.marks_engine.begin() as connection:
                stop_run(connection, run_id=run_id, reason=reason)
            self._changed(run_id)
        except sa_exc.SQLAlchemyError:
            log.exception("could not record that run %s stopped", run_id)
        if self.request.hostname:  # in a worker: monitors follow its events
            try:
                self.send_event("task-revoked", terminated=False, signum=None, expired=False)
            except Exception:
                log.warning("could not tell monitors that %s was revoked", self.request.id)
        raise Ignore()

    def _take_provider_slot(self) -> None:
        """Take a token from the provider bucket, or send the task back to wait for one.

        Waiting for the rate limit is not a failure: the task goes back to its queue with a
        countdown and its retry count unchanged.
        """
        bucket = self.context.bucket
        if bucket is None:
            return
        delay = bucket.acquire()
        if delay == 0.0:
            return
        if delay <= PROVIDER_SLOT_MAX_BLOCK and bucket.wait(PROVIDER_SLOT_MAX_BLOCK):
            return
        countdown = delay + random.uniform(0, delay / 10)
        # The stage stays STARTED meanwhile: the attempt that started it is this message's.
        self._send_back(
            countdown,
            f"waiting {countdown:.1f}s for PROVIDER_RATE_LIMIT",
            headers={OWN_ATTEMPT: "1"},
        )

    def _send_back(
        self, countdown: float, reason: str, *, headers: dict[str, str] | None = None
    ) -> NoReturn:
        """Back to the queue for ``countdown`` seconds, the retry count unchanged: waiting
        is not a failed attempt.

        The message's own headers are ``headers`` only: Celery would otherwise copy in what
        the stage keeps on its request (the issue it read), which JSON cannot carry.
        """
        request = self.request
        self.signature_from_request(
            request, countdown=countdown, retries=request.retries, headers=dict(headers or {})
        ).apply_async()
        # celery-types declares `when` as numbers.Real, which mypy cannot match with a float.
        raise Retry(reason, when=countdown)  # type: ignore[arg-type]

    def _record_failure(
        self,
        engine: Any,
        run_id: str,
        reason: str,
        progress: ProgressPublisher | None,
        settings: Settings,
    ) -> None:
        try:
            with (
                events_after_commit(settings, engine) as events,
                engine.begin() as connection,
            ):
                failed = fail_run(
                    connection, run_id=run_id, stage=self.stage, error=reason, events=events
                )
        except sa_exc.SQLAlchemyError:
            log.exception("could not record the failure of run %s", run_id)
            return
        if failed:
            log.error("%s run %s failed: %s", self.name, run_id, reason)
            if progress is not None:
                progress.changed(run_id)

    def _record_failure_on_own_engine(self, run_id: str, reason: str) -> None:
        settings = get_settings()
        engine = make_engine(settings.database_url)
        progress = ProgressPublisher.from_settings(settings)
        try:
            self._record_failure(engine, run_id, reason, progress, settings)
        finally:
            engine.dispose()
            progress.close()

    def _changed(self, run_id: str) -> None:
        """Tell the run's watchers (``GET /tasks/<id>/events``) it changed: one PUBLISH at
        once (a stream re-reads the run then: a short RETRY must still be there to see),
        never an error (the database has the change either way)."""
        progress = self.context.progress
        if progress is None:
            return
        try:
            progress.changed(run_id)
        except Exception:
            log.exception("could not publish the progress of run %s", run_id)

    def _run_ended(self, run_id: str) -> bool:
        with self.context.single_engine.connect() as connection:
            return run_ended(connection, run_id=run_id)


@worker_process_init.connect
def _own_context(**_: Any) -> None:
    """A forked pool process builds its own context: never its parent's connections."""
    forget_context_after_fork()


@worker_process_shutdown.connect  # a pool process exits
@worker_shutdown.connect  # the worker itself (thread and solo pools run stages in it)
def _write_waiting_marks(**_: Any) -> None:
    """The marks still waiting are written before the process goes."""
    context = current_context()
    if context is not None and context.marks is not None:
        context.marks.close()
