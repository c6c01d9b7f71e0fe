"""``issueflow recover`` and the API's sweeper: which runs count as stalled, what is sent
again, and that one sweeper sends it (PostgreSQL and a redis-server of the test's own; no
worker)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.models import EnrichmentRun, EnrichmentStage, Issue, WebhookDelivery, utcnow
from app.schemas import IssueCreate
from app.services.issues import create_issue_with_run
from app.services.runs import get_run, task_status
from pipelines.dispatch import OutboxSweeper, stage_specs
from pipelines.queues import Stage
from pipelines.recovery import (
    SCAN_LIMIT,
    StalledRun,
    find_stalled_runs,
    recover_lost_runs,
    resume,
)
from tests.conftest import create_migrated_database, drop_database, flush_broker
from tests.support.processes import free_port, processes, wait_until
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def engine() -> Iterator[Engine]:
    name, url = create_migrated_database("issueflow_scale_recover")
    engine = make_engine(url)
    flush_broker()
    yield engine
    engine.dispose()
    flush_broker()
    drop_database(name)


def add_run(engine: Engine, issue_id: int, run: str, *, age: float, state: str = "PENDING",
            done: int = 0, dispatched: bool = True, resumes: int = 0,
            retry_at: float | None = None) -> list[str]:  # fmt: skip
    """An issue with one run ``age`` seconds old whose first ``done`` stages succeeded (with
    their results kept); ``retry_at``: the next stage waits for a retry due in so many
    seconds."""
    then = utcnow() - timedelta(seconds=age)
    task_ids = [run, f"{run}-tag", f"{run}-persist"]  # the run id is its root task's id
    results = [{"summary": f"summary {run}", "fingerprint": None},
               {"summary": f"summary {run}", "tags": ["bug"], "fingerprint": None}]  # fmt: skip

    def stage_state(n: int) -> str:
        if n < done:
            return "SUCCESS"
        return "RETRY" if n == done and retry_at is not None else "PENDING"

    with engine.begin() as connection:
        connection.execute(
            insert(Issue),
            {"id": issue_id, "title": f"issue {issue_id}", "body": "", "status": "open",
             "enrichment_status": "pending", "enrichment_task_id": run,
             "created_at": then, "updated_at": then},
        )  # fmt: skip
        connection.execute(
            insert(EnrichmentRun),
            {"id": run, "issue_id": issue_id, "state": state, "dispatched": dispatched,
             "created_at": then, "resumes": resumes,
             "resumed_at": then if resumes else None},
        )  # fmt: skip
        connection.execute(
            insert(EnrichmentStage),
            [
                {"run_id": run, "position": n, "name": name, "queue": name, "task_id": task_id,
                 "state": stage_state(n),
                 "started_at": then if n < done else None,
                 "finished_at": then if n < done else None,
                 "result": results[n] if n < min(done, 2) else None,
                 "retry_at": utcnow() + timedelta(seconds=retry_at)
                 if retry_at is not None and n == done else None}
                for n, (name, task_id) in enumerate(zip(("summarise", "tag", "persist"),
                                                        task_ids, strict=True))
            ],
        )  # fmt: skip
    return task_ids


def message(task_id: str) -> bytes:
    return json.dumps({"headers": {"id": task_id}, "body": ""}).encode()


def sent(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The task messages in ``queue``: task id, args, and the task ids of the rest of the
    chain."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, _kwargs, embed = json.loads(envelope["body"])  # body_encoding utf-8
        rest = [s["options"]["task_id"] for s in reversed(embed.get("chain") or [])]
        found.append({"id": envelope["headers"]["id"], "args": args, "rest": rest})
    return found


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server of the test's own: the tests' broker database has a worker on it."""
    with processes({}, tmp_path) as group:
        port = free_port()
        RedisServer(group, port=port, workdir=tmp_path).start()
        with redis.Redis(port=port) as client:
            yield client


def broker_of(client: redis.Redis) -> str:
    return f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"


def run_row(engine: Engine, run_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(EnrichmentRun).where(EnrichmentRun.id == run_id)).one()


def test_only_idle_runs_with_no_message_anywhere_are_stalled(
    engine: Engine, client: redis.Redis
) -> None:
    add_run(engine, 1, "lost-first", age=300)
    add_run(engine, 2, "lost-later", age=300, done=1)
    add_run(engine, 3, "lost-at-persist", age=300, done=2)
    queued = add_run(engine, 4, "queued", age=300, done=1)
    held = add_run(engine, 5, "held", age=300, done=2)
    add_run(engine, 6, "recent", age=5)
    add_run(engine, 7, "finished", age=300, state="SUCCESS", done=3)
    add_run(engine, 8, "in-the-outbox", age=300, dispatched=False)
    add_run(engine, 9, "waits-for-its-retry", age=300, done=1, retry_at=600)
    client.lpush("tag", message(queued[1]))  # waiting behind a backlog
    client.hset("unacked", "tag-1", json.dumps([json.loads(message(held[2])), "", "persist"]))

    stalled = {run.run_id: run for run in find_stalled_runs(engine, client, stalled_after=60)}
    assert sorted(stalled) == ["lost-at-persist", "lost-first", "lost-later"]
    assert stalled["lost-first"].start == Stage.SUMMARISE
    assert stalled["lost-first"].previous is None
    assert stalled["lost-later"].start == Stage.TAG
    assert stalled["lost-later"].previous == {"summary": "summary lost-later", "fingerprint": None}
    assert stalled["lost-at-persist"].start == Stage.PERSIST
    assert stalled["lost-at-persist"].previous["tags"] == ["bug"]  # type: ignore[index]


def test_a_stalled_run_resumes_from_its_first_unfinished_stage_with_its_own_task_ids(
    engine: Engine, client: redis.Redis
) -> None:
    first = add_run(engine, 1, "lost-first", age=300)
    later = add_run(engine, 2, "lost-later", age=300, done=1)
    last = add_run(engine, 3, "lost-at-persist", age=300, done=2)
    stalled = find_stalled_runs(engine, client, stalled_after=60)

    assert resume(engine, stalled, stalled_after=60, max_resumes=3,
                  broker_url=broker_of(client)) == (3, 0)  # fmt: skip
    assert sent(client, "summarise") == [{"id": first[0], "args": [], "rest": first[1:]}]
    [tag_message] = sent(client, "tag")
    assert tag_message == {
        "id": later[1],
        "args": [{"summary": "summary lost-later", "fingerprint": None}],
        "rest": [later[2]],
    }
    [persist_message] = sent(client, "persist")
    assert persist_message["id"] == last[2]
    assert persist_message["args"][0]["tags"] == ["bug"]
    with Session(engine) as session:  # what GET /tasks/<id> shows
        run = get_run(session=session, task_id=later[1])
        assert run is not None
        status = task_status(run).model_dump()
    assert (status["resumes"], status["resumed_from"]) == (1, "tag")
    assert status["resumed_at"] > utcnow() - timedelta(seconds=30)
    assert status["state"] == "PENDING"
    # Once resumed, they have a message again (and just moved): a second pass finds nothing.
    assert find_stalled_runs(engine, client, stalled_after=60) == []


def test_a_post_whose_process_died_before_the_send_is_resumed(
    engine: Engine, client: redis.Redis
) -> None:
    """POST /issues commits the issue with its run, then sends the chain: a process killed
    in between leaves a dispatched run with no message, which recovery resumes."""
    task_ids = [f"died-{stage}" for stage in Stage]
    with Session(engine) as session, session.begin():
        issue = create_issue_with_run(
            session=session,
            data=IssueCreate(title="sent never"),
            run_id=task_ids[0],
            stages=stage_specs(task_ids),
        )
    time.sleep(0.01)  # idle for longer than stalled_after
    [stalled] = find_stalled_runs(engine, client, stalled_after=0.001)
    assert (stalled.run_id, stalled.issue_id, stalled.start) == (
        task_ids[0],
        issue.id,
        Stage.SUMMARISE,
    )
    resume(engine, [stalled], stalled_after=0.001, max_resumes=3, broker_url=broker_of(client))
    assert sent(client, "summarise") == [{"id": task_ids[0], "args": [], "rest": task_ids[1:]}]


def test_a_stage_done_before_results_were_kept_runs_again(
    engine: Engine, client: redis.Redis
) -> None:
    add_run(engine, 1, "old", age=300, done=1)
    with engine.begin() as connection:
        connection.execute(update(EnrichmentStage).values(result=None))
    [run] = find_stalled_runs(engine, client, stalled_after=60)
    assert (run.start, run.previous) == (Stage.SUMMARISE, None)


def test_two_sweepers_that_found_the_same_run_resume_it_once(
    engine: Engine, client: redis.Redis
) -> None:
    """Two API processes (or ``issueflow recover`` while the API sweeps) found the same
    stalled run: the compare-and-set on ``resumes`` lets one of them send it."""
    add_run(engine, 1, "lost", age=300, done=1)
    seen_by_one = find_stalled_runs(engine, client, stalled_after=60)
    seen_by_other = find_stalled_runs(engine, client, stalled_after=60)
    barrier = threading.Barrier(2)
    outcomes: list[tuple[int, int]] = []

    def sweep(runs: list[StalledRun]) -> None:
        barrier.wait(timeout=10)
        outcomes.append(resume(engine, runs, stalled_after=60, max_resumes=3,
                               broker_url=broker_of(client)))  # fmt: skip

    threads = [
        threading.Thread(target=sweep, args=(runs,)) for runs in (seen_by_one, seen_by_other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [(0, 0), (1, 0)]
    assert len(sent(client, "tag")) == 1
    assert run_row(engine, "lost").resumes == 1


def test_a_run_that_moved_after_it_was_found_is_not_resumed(
    engine: Engine, client: redis.Redis
) -> None:
    add_run(engine, 1, "slow", age=300)
    stalled = find_stalled_runs(engine, client, stalled_after=60)
    with engine.begin() as connection:  # a worker took it up meanwhile
        connection.execute(
            update(EnrichmentStage)
            .where(EnrichmentStage.position == 0)
            .values(state="STARTED", started_at=utcnow())
        )
    assert resume(engine, stalled, stalled_after=60, max_resumes=3,
                  broker_url=broker_of(client)) == (0, 0)  # fmt: skip
    assert client.llen("summarise") == 0


def test_a_run_stalled_more_than_max_resumes_times_fails_with_the_reason(
    engine: Engine, client: redis.Redis
) -> None:
    add_run(engine, 1, "cursed", age=300, done=1, resumes=3)
    stalled = find_stalled_runs(engine, client, stalled_after=60)
    assert resume(engine, stalled, stalled_after=60, max_resumes=3,
                  broker_url=broker_of(client)) == (0, 1)  # fmt: skip
    assert client.llen("tag") == 0
    row = run_row(engine, "cursed")
    assert row.state == "FAILURE"
    assert row.error == ("tag: stalled: its message was lost again after 3 resumes (MAX_RESUMES=3)")
    with engine.connect() as connection:
        issue = connection.execute(select(Issue.enrichment_status, Issue.enrichment_error)).one()
    assert issue.enrichment_status == "failed"
    assert "MAX_RESUMES" in issue.enrichment_error


def test_a_run_given_up_on_records_its_run_failed_webhook(
    engine: Engine, client: redis.Redis
) -> None:
    add_run(engine, 1, "cursed", age=300, done=1, resumes=3)
    stalled = find_stalled_runs(engine, client, stalled_after=60)
    settings = Settings(notify_webhook_url="http://127.0.0.1:9/hook")
    assert resume(engine, stalled, stalled_after=60, max_resumes=3,
                  broker_url=broker_of(client), settings=settings) == (0, 1)  # fmt: skip
    with engine.connect() as connection:
        event, payload = connection.execute(
            select(WebhookDelivery.event, WebhookDelivery.payload)
        ).one()
    assert event == "run.failed"
    assert payload["run"]["task_id"] == "cursed"
    assert payload["run"]["stage"] == "tag"
    assert "MAX_RESUMES" in payload["run"]["reason"]


def test_the_api_sweeper_pass_resumes_stalled_runs_once_across_processes(
    engine: Engine, client: redis.Redis
) -> None:
    """What the API's OutboxSweeper runs every RECOVER_INTERVAL: one pass per lock period,
    whichever API process gets there first; none while a long backlog waits."""
    lost = add_run(engine, 1, "lost", age=300)
    one_pass = {"broker_url": broker_of(client), "stalled_after": 60, "max_resumes": 3,
                "lock_key": "t:lock", "lock_seconds": 30}  # fmt: skip

    assert recover_lost_runs(engine, **one_pass) == 1
    assert [m["id"] for m in sent(client, "summarise")] == [lost[0]]
    # Another API process in the same period: the lock says a pass was made.
    client.delete("summarise")
    assert recover_lost_runs(engine, **one_pass) == 0
    assert client.llen("summarise") == 0

    # A backlog longer than SCAN_LIMIT is not read message by message.
    client.delete("t:lock")
    with engine.begin() as connection:  # the first resume is long ago
        connection.execute(
            update(EnrichmentRun).values(resumed_at=utcnow() - timedelta(seconds=300))
        )
    client.rpush("tag", *[message(f"queued-{n}") for n in range(SCAN_LIMIT + 1)])
    assert recover_lost_runs(engine, **one_pass) == 0
    assert client.llen("summarise") == 0
    # Once it has drained, the lost run goes out again.
    client.delete("t:lock", "tag")
    assert recover_lost_runs(engine, **one_pass) == 1
    assert run_row(engine, "lost").resumes == 2


def test_the_sweeper_looks_for_lost_runs_every_recover_interval(sqlite_url: str) -> None:
    calls: list[float] = []

    def recover() -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise redis.ConnectionError("the broker is away")  # the next pass comes anyway
        return 0

    sweep_engine = make_engine(sqlite_url)
    sweeper = OutboxSweeper(sweep_engine, 0.01, recover=recover, recover_every=0.05)
    sweeper.start()
    try:
        wait_until(lambda: len(calls) >= 3, timeout=10, what="three recovery passes")
    finally:
        sweeper.stop()
        sweep_engine.dispose()
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(calls))
