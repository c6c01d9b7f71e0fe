"""A stage message delivered twice is harmless: the stage runs once, its result is reused.

Two deliveries of one stage task happen when a message was only late, not lost: a run the
sweeper resumed (``pipelines.recovery``) whose original message turns up after all, or a
Redis that came back from a snapshot holding messages already consumed. The stage's row
says what to do with the second one (``begin_stage`` claims the row; this module explains
a claim that failed):

- the stage already succeeded: its stored result is passed on down the chain, no provider
  call (``StageDone``);
- the stage was STARTED by another delivery less than a *lease* ago (the stage's hard time
  limit plus ``LEASE_MARGIN``: no attempt lives longer): that attempt may still be running,
  so this delivery goes back to its queue until the lease ends (``StageHeld``), and then
  finds the stage done, or takes it over.

A message the broker itself gave back because its holder died (``acks_late`` +
``reject_on_worker_lost``, a visibility timeout, a lost connection) carries the
``redelivered`` flag: its earlier attempt is dead, so it takes the stage over at once
(``started_here``); so does a message the stage sent back itself to wait for the provider
rate limit (``OWN_ATTEMPT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select

from app.models import EnrichmentStage
from app.states import TaskState
from pipelines.queues import Stage

# Seconds added to the hard time limit: the time an attempt killed by it takes to be
# recorded, and clock differences between workers.
LEASE_MARGIN = 10.0


class StageDone(Exception):
    """Another delivery finished this stage: pass its ``result`` on."""

    def __init__(self, result: Any) -> None:
        super().__init__("already done by another delivery")
        self.result = result


class StageHeld(Exception):
    """Another delivery started this stage ``wait`` seconds before its lease ends."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"started by another delivery; looking again in {wait:.0f}s")
        self.wait = wait


# Header of a message a stage sent back to its queue itself, leaving its row STARTED (a wait
# for PROVIDER_RATE_LIMIT): the attempt that started the stage is this message's own.
OWN_ATTEMPT = "issueflow_own_attempt"


def lease_for(time_limit: float, *, alive_elsewhere: bool) -> timedelta | None:
    """How long another attempt of the stage is presumed alive; None: it is not running."""
    if not alive_elsewhere:
        return None
    return timedelta(seconds=time_limit + LEASE_MARGIN)


def started_here(request: Any) -> bool:
    """Whether the attempt that may have started this stage is known not to be running:

    the broker gave the message back after its holder died (kombu's Redis transport marks a
    restored message in its headers, which become the request's own keys, and in its
    delivery info; RabbitMQ in the delivery info), or the stage sent it back itself
    (``OWN_ATTEMPT``)."""
    delivery_info: Mapping[str, Any] = request.delivery_info or {}
    headers: Mapping[str, Any] = request.headers or {}
    return any(
        bool(place.get(mark))
        for place in (delivery_info, headers, request)
        for mark in ("redelivered", OWN_ATTEMPT)
    )


_STAGE_ROW = select(
    EnrichmentStage.state, EnrichmentStage.started_at, EnrichmentStage.result
).where(
    EnrichmentStage.run_id == bindparam("p_run"),
    EnrichmentStage.position == bindparam("p_position"),
)


def unclaimed_stage(
    connection: Connection, *, run_id: str, stage: Stage, lease: timedelta | None, now: datetime
) -> None:
    """Why ``begin_stage`` could not mark the stage STARTED: raises ``StageDone`` or
    ``StageHeld``. Returns for a stage that succeeded before results were kept (it runs
    again, as it always did) or that ended otherwise (the run's state decides)."""
    row = connection.execute(
        _STAGE_ROW, {"p_run": run_id, "p_position": stage.position}
    ).one_or_none()
    if row is None:
        return
    state, started_at, result = row
    if state == TaskState.SUCCESS and result is not None:
        raise StageDone(result)
    if state == TaskState.STARTED and lease is not None and started_at is not None:
        raise StageHeld(max(1.0, (started_at + lease - now).total_seconds()))
