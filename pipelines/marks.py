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

A stage that ends while its start marks still wait takes them back (``take_start``): tag's
finish, written at once as before (it says whether the run was cancelled meanwhile, before
persist is sent), carries the start time; a retry's RETRY mark carries the start time the
same way. summarise's finish is written behind as well (``finished``, a ``Finish``): it
travels in tag's message, and tag's one read writes it before tag calls its provider
(``pipelines.bookkeeping.begin_stage_behind``); the buffer keeps it too, so that the run's
page shows summarise done within ``FLUSH_INTERVAL`` even while tag waits in its queue. Both
writes are guarded the same way and whichever comes second changes nothing. Whether the run
was cancelled or superseded while summarise ran, tag's read tells, as it always did.

Every mark is guarded as the synchronous one was (a stage is started only while PENDING or
RETRY, finished only while unfinished; the issue turns running only while it is still
pending for this run), so a mark written late never undoes a later state (a finish, a
failure, a cancel or supersede, persist's result), and writing one twice changes nothing.
The context writes what waits when the worker stops. SQLite keeps writing its marks at
once (``pipelines.stage_task``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from app.states import UNFINISHED_STATES, EnrichmentStatus, TaskState
from pipelines import prepared

log = logging.getLogger(__name__)

# A mark waits at most this long (seconds) before the thread writes it: how long a run's
# page may lag behind the stage, and what a crash of the worker process may lose.
FLUSH_INTERVAL = 0.05
# The thread is woken before the interval ends once this many marks wait.
FLUSH_AT = 200
# Marks kept for the next flush after a failed one (the database was away); beyond this
# the oldest are dropped, as a crash would drop them.
MAX_WAITING = 10_000

_UNFINISHED_LIST = ", ".join(f"'{state.value}'" for state in sorted(UNFINISHED_STATES))

# A stage row (``s``) finished from a row ``v`` of finishes (``Finish.row``'s columns):
# SUCCESS with its result; the attempt's tokens added when it reported any (a retried stage
# paid for every attempt); its start kept if already written. Guarded by the caller's
# ``s.state IN (...unfinished)``: a second write of the same finish changes nothing.
FINISH_SET = f"""state = '{TaskState.SUCCESS.value}', error = NULL, finished_at = v.finished_at,
        started_at = COALESCE(s.started_at, v.started_at, v.finished_at), result = v.result,
        prompt_tokens = CASE WHEN v.prompt IS NULL THEN s.prompt_tokens
            ELSE COALESCE(s.prompt_tokens, 0) + v.prompt END,
        completion_tokens = CASE WHEN v.completion IS NULL THEN s.completion_tokens
            ELSE COALESCE(s.completion_tokens, 0) + v.completion END,
        cached = s.cached OR v.cached"""
FINISH_WHERE = f"s.position = v.position AND s.state IN ({_UNFINISHED_LIST})"
# The finishes of a message (``Finish.message``, a JSON list) as rows ``v``.
FINISH_ROWS = """json_to_recordset(%(finished)s::json) AS v(
        position int, started_at timestamptz, finished_at timestamptz, result json,
        prompt int, completion int, cached bool)"""

# One statement for any number of marks: each kind of mark travels as one JSON list, so
# its text is the same for every flush and it is prepared once per connection
# (``pipelines.prepared``; arrays would be sent inline, ``ARRAY[...]``, a new text, parse
# and plan for every count of marks). Returns the runs it changed. The issues are updated
# first (``running`` is read first), then the stages, as every writer locks them.
# A list's rows come from ``issueflow_rows`` (migration 0060), which the planner takes for
# one row, so each UPDATE looks its rows up by primary key; joined to json_to_recordset
# (100 rows to the planner) they were hash joins over a sequential scan of the whole table
# in the prepared statement's generic plan, a cost that grew with the tables. The
# issue's status is tested as ``(...) IS TRUE`` (the same test) so that it is not an index
# condition: the issue is found by its id, not among every pending issue by the
# ``(enrichment_status, id)`` index.
FLUSH_SQL = f"""
WITH running AS (
    UPDATE issues AS i
    SET enrichment_status = '{EnrichmentStatus.RUNNING.value}', updated_at = now()
    FROM issueflow_rows(%(issues)s::json) AS e,
        json_to_record(e) AS v(issue_id int, run_id varchar)
    WHERE i.id = v.issue_id AND i.enrichment_task_id = v.run_id
      AND (i.enrichment_status = '{EnrichmentStatus.PENDING.value}') IS TRUE
    RETURNING v.run_id
), started AS (
    UPDATE enrichment_stages AS s
    SET state = '{TaskState.STARTED.value}', started_at = v.started_at, retry_at = NULL
    FROM issueflow_rows(%(starts)s::json) AS e,
        json_to_record(e) AS v(run_id varchar, position int, started_at timestamptz)
    WHERE s.run_id = v.run_id AND s.position = v.position
      AND s.state IN ('{TaskState.PENDING.value}', '{TaskState.RETRY.value}')
    RETURNING s.run_id
), finished AS (
    UPDATE enrichment_stages AS s
    SET {FINISH_SET}
    FROM issueflow_rows(%(finished)s::json) AS e, json_to_record(e) AS v(
        run_id varchar, position int, started_at timestamptz, finished_at timestamptz,
        result json, prompt int, completion int, cached bool)
    WHERE s.run_id = v.run_id AND {FINISH_WHERE}
    RETURNING s.run_id
)
SELECT run_id FROM running UNION SELECT run_id FROM started UNION SELECT run_id FROM finished
"""


@dataclass(frozen=True)
class Finish:
    """A stage's SUCCESS as its row keeps it: when it started (None: its start mark was
    written already) and finished, its result, the attempt's tokens (None when no response
    reported any), whether it reused an earlier result."""

    finished_at: datetime
    result: Any
    started_at: datetime | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False

    def row(self, position: int) -> dict[str, Any]:
        """The JSON object ``FINISH_ROWS`` reads: what the next stage's message carries."""
        return {
            "position": position,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "result": self.result,
            "prompt": self.prompt_tokens,
            "completion": self.completion_tokens,
            "cached": self.cached,
        }


def finish_rows(finishes: Iterable[dict[str, Any]]) -> str:
    """The ``finished`` parameter of ``FINISH_ROWS``: rows of ``Finish.row``, as JSON."""
    return _json(list(finishes))


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))


Starts = dict[tuple[str, int], datetime]
Issues = dict[str, int]  # run id -> its issue's id
Finishes = dict[tuple[str, int], Finish]


def flush_params(
    starts: Starts, issues: Issues, finishes: Finishes | None = None
) -> dict[str, Any]:
    """The statement's lists, sorted: rows are locked in key order, as the API's writers
    lock theirs (issues in id order, then stages), so two writers never wait on each other
    in a circle. The statement updates the issues first (``running`` is read first)."""
    running = sorted((issue_id, run_id) for run_id, issue_id in issues.items())
    done = finishes or {}
    return {
        "issues": _json([{"issue_id": issue_id, "run_id": run_id} for issue_id, run_id in running]),
        "starts": _json(
            [
                {"run_id": run_id, "position": position, "started_at": at.isoformat()}
                for (run_id, position), at in sorted(starts.items())
            ]
        ),
        "finished": finish_rows(
            {"run_id": run_id, **done[run_id, position].row(position)}
            for run_id, position in sorted(done)
        ),
    }


class MarkBuffer:
    """One worker process's waiting marks (starts, the issue's running, finishes written
    behind) and the thread that writes them.

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
        self._finishes: Finishes = {}  # (run id, position) -> its finish
        self._notices: set[str] = set()  # runs whose watchers are told at the next flush
        self._lock = threading.Lock()  # guards the marks and notices
        self._flushing = threading.Lock()  # one flush at a time: marks land in order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def engine(self) -> Engine:
        """The engine the flushes write with."""
        return self._engine

    def started(self, run_id: str, position: int, at: datetime, *, issue_id: int | None) -> None:
        """The stage started ``at``; ``issue_id``: its issue turns running (summarise)."""
        with self._lock:
            if (run_id, position) not in self._finishes:  # else done here already
                self._starts[(run_id, position)] = at
            if issue_id is not None:
                self._issues[run_id] = issue_id
            many = self._count() >= self._flush_at
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

    def finished(self, run_id: str, position: int, finish: Finish) -> Finish:
        """The stage succeeded: its finish waits for the next flush, which also tells the
        run's watchers. A start mark still waiting goes with it (its time becomes the
        finish's ``started_at``). Returns the finish as it will be written."""
        with self._lock:
            started = self._starts.pop((run_id, position), None)
            if finish.started_at is None and started is not None:
                finish = Finish(
                    finished_at=finish.finished_at,
                    result=finish.result,
                    started_at=started,
                    prompt_tokens=finish.prompt_tokens,
                    completion_tokens=finish.completion_tokens,
                    cached=finish.cached,
                )
            self._finishes[(run_id, position)] = finish
            self._notices.add(run_id)
            many = self._count() >= self._flush_at
            closed = self._closed
            self._start_thread()
        if closed:
            self.flush()
        elif many:
            self._wake.set()
        return finish

    def finish_of(self, run_id: str, position: int) -> Finish | None:
        """The stage's finish if it still waits here (a duplicate delivery reuses it)."""
        with self._lock:
            return self._finishes.get((run_id, position))

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
            return self._count()

    def _count(self) -> int:
        return len(self._starts) + len(self._issues) + len(self._finishes)

    def flush(self) -> int:
        """Write every waiting mark now, in the caller's thread, and tell the watchers of
        the runs it changed; how many those are.

        A failed write keeps its marks for the next flush and raises."""
        with self._flushing:
            with self._lock:
                starts, issues, finishes = self._starts, self._issues, self._finishes
                notices = self._notices
                self._starts, self._issues, self._finishes, self._notices = {}, {}, {}, set()
            runs: set[str] = set()
            if starts or issues or finishes:
                try:
                    with self._engine.begin() as connection:
                        runs = {
                            row[0]
                            for row in prepared.execute(
                                connection, FLUSH_SQL, flush_params(starts, issues, finishes)
                            )
                        }
                except Exception:
                    self._put_back(starts, issues, finishes)
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

    def _put_back(self, starts: Starts, issues: Issues, finishes: Finishes) -> None:
        """Marks of a failed flush wait again, behind any newer mark of the same row (a
        start never beside its stage's finish); over ``MAX_WAITING`` the oldest go."""
        with self._lock:
            self._finishes = {**finishes, **self._finishes}
            self._starts = {
                key: at
                for key, at in {**starts, **self._starts}.items()
                if key not in self._finishes
            }
            self._issues = {**issues, **self._issues}
            for marks in (self._starts, self._issues, self._finishes):
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
