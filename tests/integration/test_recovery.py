"""``issueflow recover``: which runs count as lost, and what is sent again (PostgreSQL and
the tests' Redis; no worker)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, insert

from app.db import make_engine
from app.models import EnrichmentRun, EnrichmentStage, Issue, utcnow
from pipelines.dispatch import OutboxSweeper
from pipelines.recovery import SCAN_LIMIT, find_lost_runs, recover_lost_runs, redeliver
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
            done: int = 0, dispatched: bool = True) -> list[str]:  # fmt: skip
    """An issue with one run ``age`` seconds old whose first ``done`` stages succeeded."""
    then = utcnow() - timedelta(seconds=age)
    task_ids = [run, f"{run}-tag", f"{run}-persist"]  # the run id is its root task's id
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
             "created_at": then},
        )  # fmt: skip
        connection.execute(
            insert(EnrichmentStage),
            [
                {"run_id": run, "position": n, "name": name, "queue": name, "task_id": task_id,
                 "state": "SUCCESS" if n < done else "PENDING",
                 "started_at": then if n < done else None,
                 "finished_at": then if n < done else None}
                for n, (name, task_id) in enumerate(zip(("summarise", "tag", "persist"),
                                                        task_ids, strict=True))
            ],
        )  # fmt: skip
    return task_ids


def message(task_id: str) -> bytes:
    return json.dumps({"headers": {"id": task_id}, "body": ""}).encode()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server of the test's own: the tests' broker database has a worker on it."""
    with processes({}, tmp_path) as group:
        port = free_port()
        RedisServer(group, port=port, workdir=tmp_path).start()
        with redis.Redis(port=port) as client:
            yield client


def test_only_idle_runs_with_no_message_anywhere_are_lost_and_they_go_out_again(
    engine: Engine, client: redis.Redis
) -> None:
    lost_first = add_run(engine, 1, "lost-first", age=300)
    lost_later = add_run(engine, 2, "lost-later", age=300, done=1)
    queued = add_run(engine, 3, "queued", age=300, done=1)
    held = add_run(engine, 4, "held", age=300, done=2)
    add_run(engine, 5, "recent", age=5)
    add_run(engine, 6, "finished", age=300, state="SUCCESS", done=3)
    add_run(engine, 7, "in-the-outbox", age=300, dispatched=False)
    client.lpush("tag", message(queued[1]))  # waiting behind a backlog
    client.hset("unacked", "tag-1", json.dumps([json.loads(message(held[2])), "", "persist"]))

    lost = find_lost_runs(engine, client, grace=60)
    assert sorted(run.run_id for run in lost) == ["lost-first", "lost-later"]
    assert {run.run_id: run.task_ids for run in lost} == {
        "lost-first": lost_first,
        "lost-later": lost_later,
    }

    port = client.connection_pool.connection_kwargs["port"]
    assert redeliver(lost, broker_url=f"redis://127.0.0.1:{port}/0") == 2
    sent = [json.loads(raw) for raw in client.lrange("summarise", 0, -1)]
    assert sorted(m["headers"]["id"] for m in sent) == [lost_first[0], lost_later[0]]
    for body in sent:
        # The same task ids all along the chain: one run, carried on.
        run_id = body["headers"]["root_id"]
        chain = json.loads(body["body"])[2]["chain"]  # body_encoding utf-8: JSON as it is
        assert [s["options"]["task_id"] for s in reversed(chain)] == [
            f"{run_id}-tag",
            f"{run_id}-persist",
        ]
    # Once sent, they have a message again: a second pass finds nothing.
    assert find_lost_runs(engine, client, grace=60) == []


def test_the_api_sweeper_pass_sends_lost_runs_once_across_processes(
    engine: Engine, client: redis.Redis
) -> None:
    """What the API's OutboxSweeper runs every RECOVER_INTERVAL: one pass per lock period,
    whichever API process gets there first; none while a long backlog waits."""
    port = client.connection_pool.connection_kwargs["port"]
    broker = f"redis://127.0.0.1:{port}/0"
    lost = add_run(engine, 1, "lost", age=300)
    one_pass = {"broker_url": broker, "grace": 60, "lock_key": "t:lock", "lock_seconds": 30}

    assert recover_lost_runs(engine, **one_pass) == 1
    assert [json.loads(raw)["headers"]["id"] for raw in client.lrange("summarise", 0, -1)] == [
        lost[0]
    ]
    # Another API process in the same period: the lock says a pass was made.
    client.delete("summarise")
    assert recover_lost_runs(engine, **one_pass) == 0
    assert client.llen("summarise") == 0

    # A backlog longer than SCAN_LIMIT is not read message by message.
    client.delete("t:lock")
    client.rpush("tag", *[message(f"queued-{n}") for n in range(SCAN_LIMIT + 1)])
    assert recover_lost_runs(engine, **one_pass) == 0
    assert client.llen("summarise") == 0
    # Once it has drained, the lost run goes out again.
    client.delete("t:lock", "tag")
    assert recover_lost_runs(engine, **one_pass) == 1


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
