"""Graceful shutdown: SIGTERM (what a deploy, ``docker stop`` or Kubernetes sends).

A worker finishes the stage it is running and takes no new one; the API stops accepting
connections, finishes the requests in flight and sends what its outbox still holds.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import StackFactory
from tests.e2e.fake_llm import FakeLLM
from tests.e2e.test_faults import assert_enriched_once, unacked_task_ids
from tests.support.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sigterm_mid_stage_the_worker_finishes_it_takes_no_new_one_nothing_runs_twice(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = make_stack(database="postgres", llm=fake)
    stack.api()
    workers = stack.stage_workers()
    fake.set_mode("hang", op="summarise", title="in flight", times=1)

    running = stack.create("in flight")
    wait_until(
        lambda: fake.calls(op="summarise", title="in flight"),
        timeout=30,
        what="the summarise call to reach the provider",
    )
    waiting = [stack.create(f"queued behind {n}") for n in range(3)]
    assert stack.queue_length("summarise") == 3  # concurrency 1, prefetch 1: they wait

    summarise = workers["summarise"]
    since = stack.group.log_size("worker-summarise")
    summarise.send_signal(signal.SIGTERM)
    stack.group.wait_for_log("worker-summarise", "Warm shutdown", since=since, timeout=30)
    # The stage in flight still holds its message and its worker; the queue is untouched.
    assert summarise.poll() is None
    assert unacked_task_ids(stack) == [running["task_id"]]
    assert stack.queue_length("summarise") == 3

    fake.release()  # the provider answers: the stage finishes, then the worker exits
    assert summarise.wait(timeout=60) == 0
    status = stack.task(running["task_id"])
    assert status["stages"][0]["state"] == "SUCCESS", status
    assert stack.queue_length("summarise") == 3, "a worker shutting down took a new stage"
    assert running["task_id"] not in unacked_task_ids(stack)  # acknowledged once done

    stack.worker("summarise", "worker-summarise-2")
    stack.wait_all_succeeded([c["task_id"] for c in [running, *waiting]], timeout=60)
    for created in [running, *waiting]:
        assert_enriched_once(stack, created)
        for stage in stack.task(created["task_id"])["stages"]:
            assert stack.received(stage["name"], stage["task_id"]) == 1, stage
    assert len(fake.calls(op="summarise", title="in flight")) == 1  # not run twice
    first_log = stack.log("worker-summarise")[since:]
    assert all(c["task_id"] not in first_log for c in waiting)


def test_sigterm_to_the_api_finishes_requests_in_flight_and_flushes_the_outbox(
    make_stack: StackFactory,
) -> None:
    # No sweep would happen during the test: only the last one, at shutdown, sends the run.
    stack = make_stack(database="postgres", env={"OUTBOX_SWEEP_INTERVAL": "3600"})
    api = stack.api()
    locked = stack.create("re-enriched while the API shuts down")

    stack.stop_redis()
    outboxed = stack.create("created while the broker is down")
    assert "broker" in outboxed["issue"]["enrichment"]["error"]
    stack.start_redis()
    assert stack.queue_length("summarise") == 0  # a Redis of no persistence came back empty

    engine = sa.create_engine(stack.database_url)
    answer: dict[str, Any] = {}

    def enrich() -> None:
        try:
            response = httpx.post(f"{stack.base}/issues/{locked['issue']['id']}/enrich", timeout=60)
            answer["status"], answer["body"] = response.status_code, response.json()
        except httpx.HTTPError as exc:  # pragma: no cover - reported by the assertion below
            answer["error"] = repr(exc)

    try:
        with engine.connect() as locker:
            locker.execute(
                sa.text("SELECT id FROM issues WHERE id = :id FOR UPDATE"),
                {"id": locked["issue"]["id"]},
            )
            request = threading.Thread(target=enrich, name="in-flight-request")
            request.start()

            def request_waits_for_the_lock() -> bool:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
                    return bool(
                        watch.execute(
                            sa.text(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                " current_database() AND wait_event_type = 'Lock'"
                            )
                        ).scalar_one()
                    )

            wait_until(request_waits_for_the_lock, timeout=30, what="the request to block")
            api.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    httpx.get(f"{stack.base}/healthz", timeout=2)
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    # Refused, or reset: a connection the kernel had queued when the
                    # listening socket closed is dropped unanswered. Nothing serves it.
                    return True
                return False

            wait_until(refused, timeout=30, what="the API to stop accepting connections")
            assert api.poll() is None  # still finishing the request in flight
            locker.rollback()
        request.join(timeout=60)
    finally:
        engine.dispose()

    assert answer.get("status") == 202, answer
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15).
    assert api.wait(timeout=60) in (0, -signal.SIGTERM)
    # The request's chain and the outbox's one went out; nothing else.
    assert stack.queue_length("summarise") == 2
    stack.base = ""
    stack.api("api-2")
    stack.stage_workers()
    stack.wait_all_succeeded([answer["body"]["task_id"], outboxed["task_id"]], timeout=60)
    assert stack.issue(outboxed["issue"]["id"])["enrichment"]["error"] is None
    assert stack.task(locked["task_id"])["state"] == "REVOKED"  # superseded by the re-run
