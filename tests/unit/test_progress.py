"""The events' revision of a run, and a publisher that never fails its caller."""

from __future__ import annotations

import logging

import pytest

from app.models import EnrichmentRun, EnrichmentStage
from app.progress import ProgressPublisher, revision, run_channel, stop_channel
from app.states import TaskState
from tests.support.processes import free_port


def run_with(*stages: tuple[TaskState, int], state: TaskState = TaskState.PENDING) -> EnrichmentRun:
    run = EnrichmentRun(id="r", issue_id=1, state=state)
    run.stages = [
        EnrichmentStage(
            run_id="r", position=n, name=f"s{n}", queue="q", task_id=f"t{n}", state=s, retries=r
        )
        for n, (s, r) in enumerate(stages)
    ]
    return run


def test_revision_grows_with_every_transition_of_a_run() -> None:
    P, S, R, OK, X = (
        TaskState.PENDING,
        TaskState.STARTED,
        TaskState.RETRY,
        TaskState.SUCCESS,
        TaskState.REVOKED,
    )
    life = [
        run_with((P, 0), (P, 0), (P, 0)),
        run_with((S, 0), (P, 0), (P, 0)),
        run_with((OK, 0), (P, 0), (P, 0)),
        run_with((OK, 0), (S, 0), (P, 0)),
        run_with((OK, 0), (R, 1), (P, 0)),
        run_with((OK, 0), (S, 1), (P, 0)),
        run_with((OK, 0), (R, 2), (P, 0)),
        run_with((OK, 0), (S, 2), (P, 0)),
        run_with((OK, 0), (X, 2), (X, 0), state=TaskState.REVOKED),
    ]
    revisions = [revision(run) for run in life]
    assert revisions == sorted(set(revisions)), revisions
    assert revisions[0] == 0


def test_the_run_ending_alone_still_counts() -> None:
    done = run_with((TaskState.SUCCESS, 0), (TaskState.SUCCESS, 0))
    assert revision(done) + 1 == revision(
        run_with((TaskState.SUCCESS, 0), (TaskState.SUCCESS, 0), state=TaskState.SUCCESS)
    )


def test_channels_carry_the_prefix() -> None:
    assert run_channel("p:", "abc") == "p:run:abc"
    assert stop_channel("p:") == "p:stop"


def test_an_unreachable_redis_is_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = ProgressPublisher(f"redis://127.0.0.1:{free_port()}/0", "p:")
    with caplog.at_level(logging.WARNING, logger="app.progress"):
        publisher.changed("run-1")
        publisher.changed("run-2")  # within the pause: not even tried
        publisher.stopped(["run-3"])
    warnings = [r for r in caplog.records if "progress notifications paused" in r.message]
    assert len(warnings) == 1
    publisher.close()


def test_no_redis_configured_publishes_nothing() -> None:
    publisher = ProgressPublisher(None, "p:")
    publisher.changed("run-1")  # no error, no connection
    assert publisher._client is None
