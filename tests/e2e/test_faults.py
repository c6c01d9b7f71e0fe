"""The reliability promises of README.md ("Reliability"), with real processes and real faults.

Each test runs its own redis-server (or RabbitMQ vhost), its own SQLite file, PostgreSQL
database or PostgreSQL cluster, the API and ``celery worker`` processes, and kills only
those, by PID or process group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e import fake_llm
from tests.e2e.conftest import StackFactory
from tests.e2e.fake_llm import FakeLLM
from tests.e2e.stack import Stack
from tests.support.processes import child_pids, wait_until
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.e2e


def runs_of_issue(stack: Stack, issue_id: int) -> list[dict[str, Any]]:
    """Every run of the issue, whatever its state (GET /tasks, all pages)."""
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = stack.http.get(f"{stack.base}/tasks", params=params).json()
        runs += [item for item in page["items"] if item["issue_id"] == issue_id]
        cursor = page["next_cursor"]
        if not cursor:
            return runs


def assert_enriched_once(
    stack: Stack, created: dict[str, Any], tags: list[str] | None = None
) -> None:
    """The issue shows its run's result, tags not repeated, and exactly one run succeeded."""
    issue = stack.issue(created["issue"]["id"])
    assert issue["ai_summary"], issue
    assert issue["tags"], issue
    assert len(issue["tags"]) == len(set(issue["tags"])), issue["tags"]
    if tags is not None:
        assert issue["tags"] == tags
    assert issue["enrichment"]["status"] == "succeeded", issue
    assert issue["enrichment"]["task_id"] == created["task_id"]
    runs = runs_of_issue(stack, created["issue"]["id"])
    assert [(r["task_id"], r["state"]) for r in runs] == [(created["task_id"], "SUCCESS")], runs


def unacked_task_ids(stack: Stack) -> list[str]:
    """Task ids of the messages kombu's Redis transport holds for a worker (not yet acked)."""
    with stack.redis() as client:
        held = client.hvals("unacked")
    return [json.loads(raw)[0]["headers"]["id"] for raw in held]


def publish(
    stack: Stack, name: str, task_id: str, *, args: list[Any], kwargs: dict[str, Any], queue: str
) -> None:
    """Send one task message to the stack's own broker, as Celery would.

    Not with ``Celery(broker=...).send_task``: Celery lets the CELERY_BROKER_URL of the test
    process (the shared Redis of tests/conftest.py) win over its ``broker`` argument.
    """
    from celery import Celery
    from kombu import Connection, Exchange, Queue

    message = Celery(set_as_current=False).amqp.as_task_v2(task_id, name, args, kwargs)
    with Connection(stack.broker_url, connect_timeout=5) as connection:
        connection.Producer(serializer="json").publish(
            message.body,
            exchange=queue,
            routing_key=queue,
            headers=message.headers,
            declare=[Queue(queue, Exchange(queue), routing_key=queue)],
            **message.properties,
        )


# -- 1. a worker killed mid-task ------------------------------------------------------------


@pytest.mark.slow
def test_pool_process_killed_during_summarise_the_run_still_succeeds(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = make_stack(llm=fake)
    stack.api()
    workers = stack.stage_workers()
    fake.set_mode("hang", op="summarise", title="victim", times=1)  # the 2nd call answers

    created = stack.create("victim")
    task_id = created["task_id"]
    wait_until(
        lambda: fake.calls(op="summarise", title="victim"),
        timeout=30,
        what="the summarise call to reach the provider",
    )
    assert stack.task(task_id)["stages"][0]["state"] == "STARTED"
    assert unacked_task_ids(stack) == [task_id], "acks_late: the message is held until done"

    (child,) = child_pids(workers["summarise"].pid)  # --concurrency 1: one pool process
    os.kill(child, signal.SIGKILL)

    status = stack.wait_task(task_id, "SUCCESS", timeout=60)
    assert [c.status for c in fake.calls(op="summarise", title="victim")] == [0, 200]
    assert status["stages"][0]["state"] == "SUCCESS"
    assert_enriched_once(stack, created, tags=fake_llm.TAGS)
    assert stack.issue(created["issue"]["id"])["ai_summary"] == fake_llm.SUMMARY
    log = stack.log("worker-summarise")
    assert "WorkerLostError" in log
    assert log.count(f"Task enrichment.summarise[{task_id}] received") == 2
    assert workers["summarise"].poll() is None  # the worker itself lives on
    assert unacked_task_ids(stack) == []


@pytest.mark.slow
def test_worker_killed_during_persist_the_message_is_redelivered_and_persisted_once(
    make_stack: StackFactory,
) -> None:
    visibility = 20
    stack = make_stack(
        database="postgres",
        env={
            "CELERY_VISIBILITY_TIMEOUT": str(visibility),
            **{f"{s}_TIME_LIMIT": "10" for s in ("SUMMARISE", "TAG", "PERSIST")},
        },
    )
    stack.api()
    stack.worker("summarise", wait=False)
    stack.worker("tag")
    created = [stack.create(f"Crash number {n} when saving") for n in range(3)]
    issue_ids = [c["issue"]["id"] for c in created]

    # Persist messages wait in their queue: no persist worker yet.
    wait_until(
        lambda: stack.queue_length("persist") == 3,
        timeout=60,
        what="three persist messages in the persist queue",
    )

    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as locker:
            # Hold the issue rows: persist locks its issue first, so it blocks mid-task.
            locker.execute(
                sa.text("SELECT id FROM issues WHERE id = ANY(:ids) FOR UPDATE"), {"ids": issue_ids}
            )
            first = stack.worker("persist", "worker-persist-1")

            def persist_blocked() -> bool:
                # A connection of its own: pg_stat_activity is a snapshot per transaction.
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
                    waiting = watcher.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar_one()
                return bool(waiting)

            wait_until(persist_blocked, timeout=30, what="persist to wait for the issue lock")
            (held,) = unacked_task_ids(stack)
            delivered = time.monotonic()
            stack.group.kill(first, signal.SIGKILL)  # the whole worker: main process and pool
            locker.rollback()
    finally:
        engine.dispose()

    persist_ids = {c["task_id"]: stack.task(c["task_id"])["stages"][2]["task_id"] for c in created}
    assert held in persist_ids.values()
    held_run = next(run for run, persist in persist_ids.items() if persist == held)
    assert stack.queue_length("persist") == 2  # prefetch 1: the others were never taken
    assert unacked_task_ids(stack) == [held]  # never acked: it will be redelivered

    stack.worker("persist", "worker-persist-2")
    others = [run for run in persist_ids if run != held_run]
    stack.wait_all_succeeded(others, timeout=60)
    # Kombu restores it after the visibility timeout, scanning every 10 s (app/celery_app.py).
    stack.wait_task(held_run, "SUCCESS", timeout=visibility + 15 + 15)
    print(
        f"redelivered and persisted {time.monotonic() - delivered:.1f}s after delivery "
        f"(visibility timeout {visibility}s)"
    )

    for item in created:
        assert_enriched_once(stack, item)
    log = stack.log("worker-persist-2")
    assert log.count(f"Task enrichment.persist[{held}] received") == 1
    assert log.count(f"Task enrichment.persist[{held}] succeeded") == 1
    assert unacked_task_ids(stack) == []

    # The same persist message delivered once more (as after a lost ack) changes nothing.
    victim = next(c for c in created if c["task_id"] == held_run)
    before = stack.issue(victim["issue"]["id"])
    publish(
        stack,
        "enrichment.persist",
        held,
        args=[{"summary": "a stale summary", "tags": ["stale", "stale"]}],
        kwargs={"issue_id": victim["issue"]["id"], "run_id": held_run},
        queue="persist",
    )
    stack.group.wait_for_log(
        "worker-persist-2",
        f"Task enrichment.persist[{held}] succeeded in",
        timeout=30,
        since=log.index(f"Task enrichment.persist[{held}] succeeded") + 1,
    )
    results = re.findall(
        rf"persist\[{held}\] succeeded in [\d.]+s: (\w+)", stack.log("worker-persist-2")
    )
    assert results == ["True", "False"]  # the second delivery found the run done
    assert stack.issue(victim["issue"]["id"]) == before
    assert_enriched_once(stack, victim)


@pytest.mark.slow
def test_attempt_killed_by_its_hard_time_limit_leaves_a_run_that_says_why(
    make_stack: StackFactory,
) -> None:
    """The soft limit cannot interrupt a call blocked in C (here: a row lock in libpq); the
    hard limit then kills the pool process, and the run must still end with its reason."""
    stack = make_stack(database="postgres", env={"PERSIST_TIME_LIMIT": "2"})
    stack.api()
    stack.worker("summarise", wait=False)
    stack.worker("tag")
    created = stack.create("Blocked for longer than its time limit")
    wait_until(
        lambda: stack.queue_length("persist") == 1,
        timeout=60,
        what="the persist message in its queue",
    )
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as locker:
            locker.execute(
                sa.text("SELECT id FROM issues WHERE id = :id FOR UPDATE"),
                {"id": created["issue"]["id"]},
            )
            stack.worker("persist")
            stack.group.wait_for_log(
                "worker-persist", "Hard time limit (2.0s) exceeded", timeout=60
            )
            locker.rollback()
    finally:
        engine.dispose()
    status = stack.wait_task(created["task_id"], "FAILURE", timeout=30)
    assert status["error"].startswith("persist: TimeLimitExceeded"), status["error"]
    assert "PERSIST_TIME_LIMIT" in status["error"], status["error"]
    assert status["stages"][2]["state"] == "FAILURE"
    issue = stack.issue(created["issue"]["id"])
    assert issue["enrichment"]["status"] == "failed"
    assert issue["enrichment"]["error"] == status["error"]


# -- 2. workers stopped while issues arrive -------------------------------------------------


@pytest.mark.slow
def test_workers_stopped_while_100_issues_arrive_all_succeed_once_they_are_back(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    stack.api()
    workers = stack.stage_workers()
    before = stack.create("Before the workers stop")
    stack.wait_task(before["task_id"], "SUCCESS", timeout=60)
    stack.group.terminate(*workers.values())  # a warm shutdown, as in a deploy

    created = [stack.create(f"Issue {n} while the workers are stopped") for n in range(100)]
    assert stack.queue_length("summarise") == 100
    stack.stage_workers()
    stack.wait_all_succeeded([c["task_id"] for c in created], timeout=180)
    for item in created[::10]:
        assert_enriched_once(stack, item)
    assert len(stack.runs_in("SUCCESS")) == 101


# -- 3. Redis restarted while workers run ---------------------------------------------------


@pytest.mark.slow
def test_redis_restart_workers_reconnect_and_readiness_follows(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.api()
    stack.stage_workers()
    first = [stack.create(f"Before the restart {n}") for n in range(3)]
    stack.wait_all_succeeded([c["task_id"] for c in first], timeout=60)
    assert stack.http.get(f"{stack.base}/readyz").status_code == 200

    since = {name: len(text) for name, text in stack.worker_logs().items()}
    stack.stop_redis(signal.SIGKILL)  # a crash: every connection drops at once
    down = stack.http.get(f"{stack.base}/readyz", timeout=30)
    assert down.status_code == 503, down.text
    assert down.json()["checks"]["broker"].startswith("unreachable"), down.json()
    assert down.json()["checks"]["database"] == "ok"
    for name, offset in since.items():  # every worker noticed while Redis stays down
        stack.group.wait_for_log(name, "Connection to broker lost", since=offset, timeout=60)
    stack.start_redis()  # same port, empty (no persistence)

    wait_until(
        lambda: stack.http.get(f"{stack.base}/readyz").status_code == 200,
        timeout=30,
        what="/readyz to answer 200 again",
    )
    for name, offset in since.items():
        stack.group.wait_for_log(name, "Connected to redis://", since=offset, timeout=60)
    after = [stack.create(f"After the restart {n}") for n in range(5)]
    stack.wait_all_succeeded([c["task_id"] for c in after], timeout=90)
    for item in first + after:
        assert_enriched_once(stack, item)


# -- 4. the broker down at POST time --------------------------------------------------------


@pytest.mark.slow
def test_broker_down_at_post_the_run_is_dispatched_once_when_it_is_back(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(start_redis=False)
    stack.api()
    # A second API process sweeps the same outbox: still no run may be sent twice.
    second_api = stack.api("api-2")
    created = [stack.create(f"While the broker is down {n}") for n in range(5)]
    for item in created:
        enrichment = item["issue"]["enrichment"]
        assert enrichment["status"] == "pending"
        assert "broker" in enrichment["error"], enrichment
        assert stack.task(item["task_id"])["state"] == "PENDING"
    ready = stack.http.get(f"{stack.base}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("unreachable")

    stack.start_redis()
    back = time.monotonic()

    def dispatched() -> bool:  # the outbox clears the note once the chain is sent
        return all(stack.issue(c["issue"]["id"])["enrichment"]["error"] is None for c in created)

    wait_until(
        dispatched,
        timeout=60,
        interval=0.5,
        what="the outbox to send every run within 60 s of the broker coming back",
    )
    print(f"dispatched {time.monotonic() - back:.1f}s after the broker came back")
    time.sleep(3)  # three more sweeps of each API: nothing may be sent again
    assert stack.queue_length("summarise") == len(created)  # each chain sent exactly once
    stack.stage_workers()
    stack.wait_all_succeeded([c["task_id"] for c in created], timeout=60)
    assert second_api.poll() is None
    for item in created:
        assert_enriched_once(stack, item)
        assert stack.issue(item["issue"]["id"])["enrichment"]["error"] is None
        for stage in stack.task(item["task_id"])["stages"]:
            assert stack.received(stage["name"], stage["task_id"]) == 1, stage


# -- 5. the database down while persist runs ------------------------------------------------


_RETRY_LINE = re.compile(
    r"enrichment\.persist run (\S+): retry (\d+)/(\d+) in ([\d.]+)s after (\w+)"
)


@pytest.mark.slow
def test_database_down_persist_retries_with_backoff_and_completes(
    pg_cluster: PostgresServer, make_stack: StackFactory
) -> None:
    backoff, backoff_max = 0.5, 2.0
    stack = make_stack(
        database=pg_cluster.url,
        env={
            "PERSIST_MAX_RETRIES": "10",
            "PERSIST_RETRY_BACKOFF": str(backoff),
            "PERSIST_RETRY_BACKOFF_MAX": str(backoff_max),
        },
    )
    stack.api()
    stack.worker("summarise", wait=False)
    stack.worker("tag")
    created = [stack.create(f"Database outage issue {n}") for n in range(3)]
    runs = [c["task_id"] for c in created]
    wait_until(
        lambda: stack.queue_length("persist") == 3,
        timeout=60,
        what="three persist messages in the persist queue",
    )

    pg_cluster.stop()
    down = stack.http.get(f"{stack.base}/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["database"].startswith("unreachable")
    stack.worker("persist")

    def retried_twice() -> bool:
        seen = {
            m.group(1)
            for m in _RETRY_LINE.finditer(stack.log("worker-persist"))
            if int(m.group(2)) >= 2
        }
        return set(runs) <= seen

    wait_until(retried_twice, timeout=60, what="every persist to retry twice")
    pg_cluster.start()

    wait_until(
        lambda: stack.http.get(f"{stack.base}/readyz").status_code == 200,
        timeout=30,
        what="/readyz to answer 200 again",
    )
    stack.wait_all_succeeded(runs, timeout=60)
    for item in created:
        assert_enriched_once(stack, item)
    retries = list(_RETRY_LINE.finditer(stack.log("worker-persist")))
    assert retries
    for match in retries:
        number, wait, error = int(match.group(2)), float(match.group(4)), match.group(5)
        assert error == "OperationalError", match.group(0)
        step = min(backoff * 2 ** (number - 1), backoff_max)
        # Equal jitter: between half the step and all of it, never 0 (rounded to 0.1 s).
        assert step / 2 - 0.05 <= wait <= step + 0.05, match.group(0)


# -- 6. the cluster-wide provider rate limit ------------------------------------------------


def _three_summarise_workers(stack: Stack, prefix: str, env: dict[str, str]) -> list[Any]:
    started = [
        stack.worker("summarise", f"{prefix}-{n}", concurrency=2, env=env, wait=False)
        for n in range(3)
    ]
    for n, process in enumerate(started):
        stack.group.wait_for_log(f"{prefix}-{n}", " ready.", timeout=60, process=process)
    return started


@pytest.mark.slow
def test_provider_rate_limit_is_shared_by_all_workers(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = make_stack(llm=fake, env={"PROVIDER_RATE_LIMIT": "10/s"})
    stack.api()

    # Control: without the limit, the same three workers call the provider much faster
    # than 65 calls in 5 s, so a count within the limit below is the limiter's doing.
    for n in range(120):
        stack.create(f"Unlimited {n}")
    unlimited = _three_summarise_workers(stack, "worker-unlimited", {"PROVIDER_RATE_LIMIT": ""})
    wait_until(
        lambda: len(fake.calls(op="summarise")) == 120,
        timeout=60,
        what="120 unlimited provider calls",
    )
    stack.group.terminate(*unlimited)
    calls = fake.calls(op="summarise")
    free_rate = 80 / (calls[100].at - calls[20].at)  # past the first tasks' imports
    print(f"without the limit: {free_rate:.0f} provider calls/s")
    # Above 13/s a per-worker limit (3 x 10/s) would show more than 65 calls in 5 s.
    assert free_rate > 15, "too slow to tell a shared limit from a per-worker one"

    # Enough work for three workers limited each on their own (30/s) to stay busy past the
    # window; with the shared limit of 10/s it lasts 25 s.
    for n in range(250):
        stack.create(f"Flood {n}")
    _three_summarise_workers(stack, "worker-summarise", {})

    def flood() -> list[fake_llm.Call]:
        return [c for c in fake.calls(op="summarise") if c.title.startswith("Flood")]

    def warm() -> bool:  # every worker past its first tasks (imports, first connections)
        return all(stack.log(f"worker-summarise-{n}").count("succeeded in") >= 2 for n in range(3))

    wait_until(warm, timeout=60, what="all three workers to run tasks")
    start = time.monotonic() + 1  # past the bucket's initial burst: the steady state
    end = start + 5
    wait_until(lambda: time.monotonic() > end + 0.5, timeout=30, what="the window to pass")
    in_window = [c for c in flood() if start <= c.at < end]
    per_worker = {n: stack.log(f"worker-summarise-{n}").count("succeeded in") for n in range(3)}
    print(f"{len(in_window)} provider calls in 5 s; tasks per worker so far: {per_worker}")
    assert 40 <= len(in_window) <= 65, len(in_window)
    assert all(per_worker.values()), per_worker  # all three took part
    assert stack.queue_length("summarise") > 0, "the backlog ran dry: the window is not steady"
