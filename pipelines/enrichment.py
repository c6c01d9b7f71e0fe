"""The enrichment chain: three thin stage tasks, and how a run is started.

``chain(summarise | tag | persist)``; each task on its own queue with its own policy. The
tasks pass ids and small JSON values; each re-reads the issue from the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast
from uuid import uuid4

from celery import Task, chain
from celery.canvas import Signature
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, worker_process_init
from kombu.exceptions import KombuError
from sqlalchemy.orm import Session

from app.celery_app import celery_app
from app.config import get_settings
from app.db import dispose_engines
from app.models import Issue
from app.services.runs import StageSpec, StaleRun, mark_undispatched, persist_result, record_run
from pipelines.policies import StagePolicy, policy_for
from pipelines.providers import Provider, get_provider
from pipelines.queues import Stage
from pipelines.stages import (
    engine,
    handle_stage_error,
    record_hard_time_limit,
    run_stage,
    stop_stale,
    take_provider_slot,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

POLICIES: dict[Stage, StagePolicy] = {stage: policy_for(stage, get_settings()) for stage in Stage}


def stage_task(stage: Stage) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Celery's task decorator with the stage's name and policy."""
    policy = POLICIES[stage]
    options: dict[str, Any] = {
        "name": stage.task_name,
        "bind": True,
        # The stage policy counts retries itself (pipelines.stages); Celery must not cap them.
        "max_retries": None,
        "rate_limit": policy.rate_limit,
        "time_limit": policy.time_limit,
        "soft_time_limit": policy.soft_time_limit,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "ignore_result": True,
    }
    return cast(Callable[[Callable[P, R]], "Task[P, R]"], celery_app.task(**options))


def _provider(task: Task[Any, Any]) -> Provider:
    """The provider, once the cluster-wide rate limit allows one more call."""
    take_provider_slot(task)
    return get_provider()


@stage_task(Stage.SUMMARISE)
def summarise(self: Task[Any, Any], issue_id: int, run_id: str) -> dict[str, str]:
    stage = Stage.SUMMARISE
    return run_stage(
        self,
        stage,
        POLICIES[stage],
        run_id,
        lambda issue: {"summary": _provider(self).summarise(issue.title, issue.body)},
    )


@stage_task(Stage.TAG)
def tag(
    self: Task[Any, Any], previous: dict[str, str], *, issue_id: int, run_id: str
) -> dict[str, Any]:
    stage = Stage.TAG
    summary = previous["summary"]
    return run_stage(
        self,
        stage,
        POLICIES[stage],
        run_id,
        lambda issue: {
            "summary": summary,
            "tags": _provider(self).tag(issue.title, issue.body, summary),
        },
    )


@stage_task(Stage.PERSIST)
def persist(self: Task[Any, Any], previous: dict[str, Any], *, issue_id: int, run_id: str) -> bool:
    """Write summary and tags in one transaction; a redelivered persist changes nothing."""
    stage = Stage.PERSIST
    try:
        with engine().begin() as connection:
            return persist_result(
                session=connection,
                run_id=run_id,
                issue_id=issue_id,
                position=stage.position,
                summary=previous["summary"],
                tags=previous["tags"],
            )
    except StaleRun as exc:
        stop_stale(run_id, stage, str(exc))
    except Exception as exc:
        handle_stage_error(self, stage, POLICIES[stage], run_id, exc)


@worker_process_init.connect
def _own_connections(**_: Any) -> None:
    """A forked pool process opens its own database connections, never its parent's."""
    dispose_engines()


# Celery reports one hard time limit twice (the pool's error callback and on_timeout).
_timed_out: set[str] = set()


@task_failure.connect
def _hard_time_limit(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """A stage attempt killed by its hard time limit still ends its run with the reason.

    This runs in the worker's event loop: the database write goes to a thread, so a slow or
    locked database never stalls the worker.
    """
    if not isinstance(exception, TimeLimitExceeded) or task_id in _timed_out:
        return
    if len(_timed_out) > 10_000:
        _timed_out.clear()
    _timed_out.add(task_id or "")
    stage = next((s for s in Stage if s.task_name == getattr(sender, "name", None)), None)
    run_id = (kwargs or {}).get("run_id") or (args[1] if args and len(args) > 1 else None)
    if stage is not None and isinstance(run_id, str):
        threading.Thread(
            target=record_hard_time_limit,
            args=(stage, POLICIES[stage], run_id),
            name=f"time-limit-{run_id}",
            daemon=True,
        ).start()


def build_chain(issue_id: int, task_ids: list[str]) -> Signature:
    """The chain with every stage's task id fixed in advance: the first one is the run id."""
    run_id = task_ids[0]
    ids = {"issue_id": issue_id, "run_id": run_id}
    return chain(
        summarise.signature((issue_id, run_id), task_id=task_ids[0]),
        tag.signature(kwargs=ids, task_id=task_ids[1]),
        persist.signature(kwargs=ids, task_id=task_ids[2]),
    )


def start_enrichment(*, session: Session, issue: Issue) -> str:
    """Record a run for ``issue`` and send its chain, inside the caller's transaction.

    Returns the run id: the chain's root (summarise) task id.

    The chain is published before the caller commits, so a crash in between leaves a
    message whose run never appears (the worker drops it after a few seconds) rather than
    a committed run that no message will ever carry. If the broker is unreachable the run
    stays in the outbox and ``pipelines.outbox`` sends it later.
    """
    task_ids = [str(uuid4()) for _ in Stage]
    run_id = record_run(
        session=session,
        issue=issue,
        run_id=task_ids[0],
        stages=[
            StageSpec(stage.value, stage.queue.value, task_id)
            for stage, task_id in zip(Stage, task_ids, strict=True)
        ],
    )
    try:
        build_chain(issue.id, task_ids).apply_async()
    except (KombuError, OSError) as exc:
        log.warning("broker unreachable; run %s kept in the outbox: %s", run_id, exc)
        mark_undispatched(session=session, issue=issue, run_id=run_id, reason=type(exc).__name__)
    return run_id
