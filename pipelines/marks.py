"""Start marks written behind: a stage's STARTED and the issue's running, batched.

Each mark used to be a statement of its own, one round trip and one commit. A start mark is
progress, not a result: issue 11 allows a crash to lose progress marks, never a run's final
state. So on PostgreSQL a worker process keeps its start marks in a ``MarkBuffer`` and a
daemon thread writes them every ``FLUSH_INTERVAL`` seconds (sooner when ``FLUSH_AT`` wait):
one statement for all of them, one round trip, committed without waiting for the disk; the
runs' watchers are told after that commit (``ProgressPublisher.changed_many``, one Redis
round trip for all of them). A stage that finished mid-chain (summarise, tag) leaves its
watchers' notice here too (``notify``), sent with the next flush's: one PUBLISH per run,
pipelined with the others, instead of a round trip of its own per stage; a run's watchers
re-read its whole status on a notice, so notices merged within a flush lose nothing, and a
lost one costs only the stream's poll interval.

A stage that ends while its start marks still wait takes them back (``take_start``): its
finish, written at once as before (it says whether the run was cancelled meanwhile),
carries the start time and the issue's running mark, so a short stage costs one write, not
two or three; a retry's RETRY mark carries the start time the same way.

Every mark is guarded as the synchronous one was (a stage is started only while PENDING or
RETRY; the issue turns running only while it is still pending for this run), so a mark
written late never undoes a later state (a finish, a failure, a cancel, persist's result).
The context writes what waits when the worker stops. SQLite keeps writing its marks at
once (``pipelines.stage_task``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from app.states import EnrichmentStatus, TaskState

log = logging.getLogger(__name__)

# A mark waits at most this long (seconds) before the thread writes it: how long a run's
# page may lag behind the stage, and what a crash of the worker process may lose.
FLUSH_INTERVAL = 0.05
# The thread is woken before the interval ends once this many marks wait.
FLUSH_AT = 200
# Marks kept for the next flush after a failed one (the database was away); beyond this
# the oldest are dropped, as a crash would drop them.
MAX_WAITING = 10_000

# One statement for any number of marks: the rows travel as arrays (unnest), so its text,
# and PostgreSQL's parse of it, is the same for every flush. Returns the runs it changed.
_FLUSH_SQL = f"""
WITH running AS (
    UPDATE issues AS i
    SET enrichment_status = '{EnrichmentStatus.RUNNING.value}', updated_at = now()
    FROM unnest(%(issue_id)s::int[], %(issue_run)s::varchar[]) AS v(issue_id, run_id)
    WHERE i.id = v.issue_id AND i.enrichment_task_id = v.run_id
      AND i.enrichment_status = '{EnrichmentStatus.PENDING.value}'
    RETURNING v.run_id
), started AS (
    UPDATE enrichment_stages AS s
    SET state = '{TaskState.STARTED.value}', started_at = v.started_at, retry_at = NULL
    FROM unnest(%(run_id)s::varchar[], %(position)s::int[], %(started_at)s::timestamptz[])
        AS v(run_id, position, started_at)
    WHERE s.run_id = v.run_id AND s.position = v.position
      AND s.state IN ('{TaskState.PENDING.value}', '{TaskState.RETRY.value}')
    RETURNING s.run_id
)
SELECT run_id FROM running UNION SELECT run_id FROM started
"""

Starts = dict[tuple[str, int], datetime]
Issues = dict[str, int]  # run id -> its issue's id


def flush_params(starts: Starts, issues: Issues) -> dict[str, list[Any]]:
    """The statement's arrays, sorted: rows are locked in key order, as the API's writers
    lock theirs (issues in id order, then stages), so two writers never wait on each other
    in a circle. The statement updates the issues first (``running`` is read first)."""
    running = sorted((issue_id, run_id) for run_id, issue_id in issues.items())
    keys = sorted(starts)
    return {
        "issue_id": [issue_id for issue_id, _ in running],
        "issue_run": [run_id for _, run_id in running],
        "run_id": [run_id for run_id, _ in keys],
        "position": [position for _, position in keys],
        "started_at": [starts[key] for key in keys],
    }


class MarkBuffer:
    """One worker process's waiting start marks and the thread that writes them.

    ``engine`` is an autocommit engine (one round trip per flush); ``on_written`` gets the
    ids of the runs whose rows a flush changed, after its commit.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        on_written: Callable[[set[str]], None] | None = None,
        interval: float = FLUSH_INTERVAL,
        flush_at: int = FLUSH_AT,
    ) -> None:
        self._engine = engine
        self._on_written = on_written
        self._interval = interval
        self._flush_at = flush_at
        self._starts: Starts = {}  # (run id, position) -> started at
        self._issues: Issues = {}  # run id -> its issue, to turn running
        self._notices: set[str] = set()  # runs whose watchers are told at the next flush
        self._lock = threading.Lock()  # guards the two dicts
        self._flushing = threading.Lock()  # one flush at a time: marks land in order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def started(self, run_id: str, position: int, at: datetime, *, issue_id: int | None) -> None:
        """The stage started ``at``; ``issue_id``: its issue turns running (summarise)."""
        with self._lock:
            self._starts[(run_id, position)] = at
            if issue_id is not None:
                self._issues[run_id] = issue_id
            many = len(self._starts) + len(self._issues) >= self._flush_at
            closed = self._closed
            self._start_thread()
        if closed:  # after shutdown began: written at once, as on SQLite
            self.flush()
        elif many:
            self._wake.set()

    def take_start(
        self, run_id: str, position: int, *, with_issue: bool = True
    ) -> tuple[datetime | None, int | None]:
        """The stage's start mark and (summarise, ``with_issue``) its issue's running mark,
        if they still wait, no longer to be written by the buffer: the caller's own write (a finish)
        carries them, or (a retry) writes its own state. Waits for a flush in flight, so a
        mark taken is never written as well."""
        with self._flushing, self._lock:
            started = self._starts.pop((run_id, position), None)
            issue_id = self._issues.pop(run_id, None) if position == 0 and with_issue else None
            return started, issue_id

    def notify(self, run_id: str) -> None:
        """Tell the run's watchers at the next flush (within ``FLUSH_INTERVAL``)."""
        with self._lock:
            self._notices.add(run_id)
            closed = self._closed
            self._start_thread()
        if closed:
            self.flush()

    def holds_start(self, run_id: str, position: int) -> bool:
        """Whether an attempt in this process started the stage and its mark still waits."""
        with self._lock:
            return (run_id, position) in self._starts

    def _start_thread(self) -> None:
        """The writer thread, on the first mark (with ``_lock`` held; not after close)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._loop, name="issueflow-marks", daemon=True)
            self._thread.start()

    def waiting(self) -> int:
        with self._lock:
            return len(self._starts) + len(self._issues)

    def flush(self) -> int:
        """Write every waiting mark now, in the caller's thread, and tell the watchers of
        the runs it changed; how many those are.

        A failed write keeps its marks for the next flush and raises."""
        with self._flushing:
            with self._lock:
                starts, issues, notices = self._starts, self._issues, self._notices
                self._starts, self._issues, self._notices = {}, {}, set()
            runs: set[str] = set()
            if starts or issues:
                try:
                    with self._engine.begin() as connection:
                        runs = {
                            row[0]
                            for row in connection.exec_driver_sql(
                                _FLUSH_SQL, flush_params(starts, issues)
                            )
                        }
                except Exception:
                    self._put_back(starts, issues)
                    self._tell(notices)
                    raise
        self._tell(runs | notices)
        return len(runs)

    def _tell(self, runs: set[str]) -> None:
        if runs and self._on_written is not None:
            try:
                self._on_written(runs)
            except Exception:
                log.exception("could not tell the watchers of %d runs", len(runs))

    def _put_back(self, starts: Starts, issues: Issues) -> None:
        """Marks of a failed flush wait again, behind any newer mark of the same row; over
        ``MAX_WAITING`` the oldest go."""
        with self._lock:
            self._starts = {**starts, **self._starts}
            self._issues = {**issues, **self._issues}
            for marks in (self._starts, self._issues):
                for key in list(marks)[: max(0, len(marks) - MAX_WAITING)]:
                    del marks[key]  # type: ignore[arg-type]

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                closed = self._closed
            try:
                self.flush()
            except Exception:
                log.warning("start marks not written; trying again", exc_info=True)
            if closed:
                return

    def close(self) -> None:
        """Stop the thread and write what waits (the worker is stopping); marks added
        later are written at once."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake.set()
            thread.join(timeout=5)
        try:
            self.flush()
        except Exception:
            log.exception("start marks lost at shutdown")
