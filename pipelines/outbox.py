"""Runs recorded while the broker was down are sent once it is back.

The API runs ``OutboxSweeper`` in a thread. Each run is sent once: the sweeper locks the
issue row, then the run row, and sends only a run still marked undispatched.
"""

from __future__ import annotations

import logging
import threading

from kombu.exceptions import KombuError
from sqlalchemy import Engine, select

from app.db import session_scope
from app.models import EnrichmentRun, TaskState
from app.services.issues import get_issue
from pipelines.enrichment import build_chain

log = logging.getLogger(__name__)


def dispatch_pending(engine: Engine, *, limit: int = 100) -> int:
    """Send up to ``limit`` undispatched runs, oldest first; how many were sent."""
    with session_scope(engine) as session:
        pending = session.execute(
            select(EnrichmentRun.id, EnrichmentRun.issue_id)
            .where(EnrichmentRun.dispatched.is_(False), EnrichmentRun.state == TaskState.PENDING)
            .order_by(EnrichmentRun.created_at)
            .limit(limit)
        ).all()
    sent = 0
    for run_id, issue_id in pending:
        with session_scope(engine) as session:
            issue = get_issue(session=session, issue_id=issue_id, for_update=True)
            run = session.get(EnrichmentRun, run_id, with_for_update=True)
            if run is None or run.dispatched or run.state != TaskState.PENDING:
                continue
            try:
                build_chain(issue_id, [stage.task_id for stage in run.stages]).apply_async()
            except (KombuError, OSError) as exc:
                log.info(
                    "outbox: broker still unreachable (%s); %d runs waiting",
                    type(exc).__name__,
                    len(pending) - sent,
                )
                return sent
            run.dispatched, run.dispatch_error = True, None
            if issue is not None and issue.enrichment_task_id == run_id:
                issue.enrichment_error = None
            sent += 1
    if sent:
        log.info("outbox: sent %d runs that were waiting for the broker", sent)
    return sent


class OutboxSweeper:
    """A daemon thread calling ``dispatch_pending`` every ``interval`` seconds."""

    def __init__(self, engine: Engine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                dispatch_pending(self._engine)
            except Exception:
                log.exception("outbox sweep failed; trying again in %.0fs", self._interval)
