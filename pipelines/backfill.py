"""Backfill: enrich issues that exist already (``issueflow backfill``).

The command walks the selected issues in id order, in small batches, and starts a run for
each with ``start_enrichment`` (the same path as ``POST /issues/<id>/enrich``), at a
controlled rate so it never floods the queues or the provider:

* each batch is one transaction; its issue rows are locked (id order, the first lock any
  write takes) and the selection is checked again under the lock, so an issue whose run is
  still going (pending, started, retrying, or waiting in the outbox) is skipped as
  "already running", never superseded;
* batches are paced: batch ``k`` starts no earlier than ``k * batch / rate`` seconds after
  the start, and a batch never holds its locks longer than about a tenth of a second;
* after each committed batch the last id sent is written to a checkpoint file. Ctrl-C
  finishes the batch in flight, saves the checkpoint and prints the summary; the same
  command run again resumes after that id. The walk stops at the largest id that existed
  when the backfill began (issues created later get their own run from the API).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from sqlalchemy import ColumnElement, Engine, func, select, true
from sqlalchemy.orm import Session

from app.models import EnrichmentRun, Issue
from app.states import UNFINISHED_STATES, EnrichmentStatus
from pipelines.dispatch import start_enrichment

# One batch holds its issue locks for at most about this long (and at most MAX_BATCH rows).
BATCH_SECONDS = 0.1
MAX_BATCH = 200


class BackfillError(Exception):
    """The backfill cannot go on (bad arguments, broker unreachable): the message says why."""


@dataclass(frozen=True)
class Selection:
    """Which issues: ``kind`` is ``missing`` (never enriched), ``failed`` or ``all``;
    ``since`` keeps only issues created at or after it."""

    kind: str
    since: datetime | None = None

    def where(self) -> ColumnElement[bool]:
        if self.kind == "missing":
            clause: ColumnElement[bool] = Issue.enriched_at.is_(None)
        elif self.kind == "failed":
            clause = Issue.enrichment_status == EnrichmentStatus.FAILED
        elif self.kind == "all":
            clause = true()
        else:
            raise BackfillError(f"unknown selection {self.kind!r}")
        if self.since is not None:
            clause = clause & (Issue.created_at >= self.since)
        return clause

    def key(self) -> str:
        """Names this selection in the checkpoint: a resume must select the same issues."""
        return f"{self.kind}:{self.since.isoformat() if self.since else ''}"

    def describe(self) -> str:
        what = {"missing": "never enriched", "failed": "failed", "all": "all"}[self.kind]
        return what + (f", created since {self.since.isoformat()}" if self.since else "")


def parse_since(text: str) -> datetime:
    """``2026-11-01`` or an ISO timestamp; a date or a naive time is taken as UTC."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BackfillError(
            f"--since wants a date like 2026-11-01 or an ISO time like 2026-11-01T12:00:00Z, "
            f"got {text!r}"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class Summary:
    selected: int = 0  # matched the selection when the backfill began (after any resume)
    sent: int = 0
    skipped: int = 0  # no longer matched when its turn came (enriched meanwhile, deleted)
    already_running: int = 0  # a run of its own was still going: left alone
    last_id: int = 0
    interrupted: bool = False
    error: str | None = None  # why the backfill stopped early (the broker went away)
    dry_run: bool = False
    seconds: float = 0.0

    def line(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{verb} {self.sent}, skipped {self.skipped}, already running "
            f"{self.already_running} (of {self.selected} selected) in {self.seconds:.1f}s"
            f" ({rate:.0f}/s)"
        )
        if self.error:
            text += f"; stopped after issue {self.last_id}: {self.error}"
        elif self.interrupted:
            text += f"; interrupted after issue {self.last_id}: run the same command to resume"
        return text


@dataclass
class Checkpoint:
    """Where a backfill got to, saved after every committed batch."""

    selection: str
    last_id: int
    max_id: int
    sent: int = 0
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def load(cls, path: Path, selection: Selection) -> Checkpoint | None:
        """The checkpoint of this selection at ``path``, or None (absent, or another one)."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise BackfillError(f"cannot read the checkpoint {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("selection") != selection.key():
            return None
        try:
            return cls(
                selection=str(data["selection"]),
                last_id=int(data["last_id"]),
                max_id=int(data["max_id"]),
                sent=int(data.get("sent", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackfillError(f"the checkpoint {path} is damaged ({exc}): delete it") from exc

    def save(self, path: Path) -> None:
        self.updated_at = datetime.now(UTC).isoformat()
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self)) + "\n")
        os.replace(partial, path)  # never a half-written checkpoint


def default_checkpoint(database_url: str) -> Path:
    """One checkpoint file per database, in the current directory."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(f".issueflow-backfill-{digest}.json")


class Pacer:
    """A paced loop: ``delay()`` is how long to wait before the next items go, ``take(n)``
    counts ``n`` items as gone. The schedule is absolute (item ``i`` at ``start + i /
    rate``), so a slow batch is made up for by the next ones instead of lowering the rate.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise BackfillError(f"--rate must be a positive number of issues per second: {rate}")
        self.rate = rate
        self.clock = clock
        self.start = clock()
        self.released = 0

    def delay(self) -> float:
        """Seconds to wait before the next items may go (0 when they may go now)."""
        due = self.start + self.released / self.rate
        return max(0.0, due - self.clock())

    def take(self, count: int) -> None:
        self.released += count


class _Interrupt:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop after the batch in flight; the
    second one stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[_Interrupt]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may handle signals; Ctrl-C stops it as usual
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def count_selected(engine: Engine, selection: Selection, *, after: int, up_to: int) -> int:
    with Session(engine) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Issue)
                .where(selection.where(), Issue.id > after, Issue.id <= up_to)
            )
            or 0
        )


def _next_ids(
    session: Session, selection: Selection, *, after: int, up_to: int, n: int
) -> list[int]:
    return list(
        session.scalars(
            select(Issue.id)
            .where(selection.where(), Issue.id > after, Issue.id <= up_to)
            .order_by(Issue.id)
            .limit(n)
        )
    )


def _send_batch(
    session: Session, selection: Selection, ids: Sequence[int], summary: Summary, *, dry_run: bool
) -> None:
    """Lock the batch's issues, check them again, and start a run for each still selected."""
    query = select(Issue).where(Issue.id.in_(ids), selection.where()).order_by(Issue.id)
    if not dry_run:
        query = query.with_for_update(of=Issue)
    issues = session.scalars(query).all()
    summary.skipped += len(ids) - len(issues)
    current = [issue.enrichment_task_id for issue in issues if issue.enrichment_task_id]
    live = set(
        session.scalars(
            select(EnrichmentRun.id).where(
                EnrichmentRun.id.in_(current), EnrichmentRun.state.in_(UNFINISHED_STATES)
            )
        )
    )
    for issue in issues:
        if issue.enrichment_task_id in live:
            summary.already_running += 1
            continue
        if not dry_run:
            start_enrichment(session=session, issue=issue)
            if issue.enrichment_error is not None:  # the broker refused: kept in the outbox
                raise BackfillError(
                    f"the broker is unreachable ({issue.enrichment_error}); nothing of this "
                    "batch was committed: run the same command again once it is back"
                )
        summary.sent += 1


def backfill(
    engine: Engine,
    selection: Selection,
    *,
    rate: float,
    dry_run: bool = False,
    checkpoint: Path | None = None,
    restart: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    out: TextIO = sys.stderr,
) -> Summary:
    """Start a run for every selected issue with no live run; see the module docstring.

    ``progress(total, done_delta)`` is called once with the total (delta 0) and then after
    every batch. A dry run counts what it would do, sends nothing and keeps no checkpoint.
    """
    pacer = Pacer(rate)
    with Session(engine) as session:
        max_id = session.scalar(select(func.max(Issue.id))) or 0
    resumed = None
    if checkpoint is not None and not dry_run:
        resumed = None if restart else Checkpoint.load(checkpoint, selection)
    state = resumed or Checkpoint(selection=selection.key(), last_id=0, max_id=max_id)
    if resumed is not None:
        print(
            f"resuming after issue {resumed.last_id} (checkpoint {checkpoint}; "
            f"{resumed.sent} sent before); --restart starts over",
            file=out,
        )
    summary = Summary(dry_run=dry_run, last_id=state.last_id)
    summary.selected = count_selected(engine, selection, after=state.last_id, up_to=state.max_id)
    if progress:
        progress(summary.selected, 0)
    batch = max(1, min(MAX_BATCH, int(rate * BATCH_SECONDS)))
    started = time.monotonic()
    with _Interrupt().installed() as interrupt:
        while not interrupt.requested:
            with Session(engine, expire_on_commit=False) as session:
                ids = _next_ids(
                    session, selection, after=state.last_id, up_to=state.max_id, n=batch
                )
            if not ids:
                break
            pause = 0.0 if dry_run else pacer.delay()  # a dry run sends nothing to pace
            if pause > 0:
                time.sleep(pause)  # pacing the publisher, not synchronising with anything
            before = (summary.sent, summary.skipped, summary.already_running)
            try:
                with Session(engine, expire_on_commit=False) as session:
                    _send_batch(session, selection, ids, summary, dry_run=dry_run)
                    if not dry_run:
                        session.commit()  # a dry run's session closes with a rollback
            except BackfillError as exc:
                summary.sent, summary.skipped, summary.already_running = before
                summary.error = str(exc)
                break
            pacer.take(summary.sent - before[0])
            state.last_id = summary.last_id = ids[-1]
            state.sent += summary.sent - before[0]
            if checkpoint is not None and not dry_run:
                state.save(checkpoint)
            if progress:
                progress(summary.selected, len(ids))
        summary.interrupted = interrupt.requested
    summary.seconds = time.monotonic() - started
    finished = not (summary.interrupted or summary.error)
    if checkpoint is not None and not dry_run and finished:
        checkpoint.unlink(missing_ok=True)  # done: the next backfill starts afresh
    return summary
