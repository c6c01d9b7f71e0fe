"""A stock Celery chain of three no-op tasks on the issueflow queues: the yardstick.

Configured as Celery users usually have it and as ``app/celery_app.py`` is (JSON,
``acks_late``, prefetch 1, reject on worker lost, the same three queues), with a Redis
result backend ON unless ``BENCH_BARE_RESULTS=off``. No database.

The last task reports ``"<publish time> <finish time>"`` to a probe Redis of its own
(``BENCH_PROBE_URL``, not the broker) so the broker's command counts stay pure.

With ``BENCH_FLOOR_DSN`` (a PostgreSQL DSN) the chain is the *floor* of any chain whose
runs are recorded in a database: the least such a chain could write. The producer INSERTs
one row per run (its text, ``RUNNING``) before it publishes, the last task UPDATEs it to
``SUCCESS`` with a result; each one prepared statement, autocommit, raw psycopg2 (no ORM,
no pool), durable (the server's ``synchronous_commit``). Nothing in between: no stage rows,
no progress, no check that the run is still wanted. Run it with the result backend off:
the row is the result.

Workers: ``celery -A bare_tasks worker -Q summarise,tag,persist`` with this directory on
PYTHONPATH (scripts/bench/pipeline.py does that).
"""

from __future__ import annotations

import os
import threading
import time
from functools import lru_cache
from typing import Any

import psycopg2
import redis
from celery import Celery, chain
from kombu import Queue

QUEUES = ("summarise", "tag", "persist")
DONE_KEY = "bench:done"

RESULTS = os.environ.get("BENCH_BARE_RESULTS", "on") != "off"
FLOOR_DSN = os.environ.get("BENCH_FLOOR_DSN")
FLOOR_TABLE = """
CREATE TABLE IF NOT EXISTS bench_floor_runs (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL,
    state text NOT NULL,
    summary text,
    tags jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
)"""
FLOOR_STATEMENTS = (
    "PREPARE floor_start(text, text) AS "
    "INSERT INTO bench_floor_runs (title, body, state) VALUES ($1, $2, 'RUNNING') RETURNING id",
    "PREPARE floor_finish(bigint, text, jsonb) AS "
    "UPDATE bench_floor_runs SET state = 'SUCCESS', summary = $2, tags = $3, "
    "finished_at = now() WHERE id = $1",
)
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
BACKEND = os.environ.get("BENCH_RESULT_BACKEND", BROKER.rsplit("/", 1)[0] + "/1")

app = Celery("bare")
app.conf.update(
    broker_url=BROKER,
    result_backend=BACKEND if RESULTS else None,
    task_ignore_result=not RESULTS,
    task_queues=[Queue(name, routing_key=name) for name in QUEUES],
    task_default_queue="summarise",
    task_create_missing_queues=False,
    task_routes={f"bare.{name}": {"queue": name} for name in QUEUES},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_send_sent_event=os.environ.get("BENCH_BARE_SENT_EVENT", "0") == "1",
    timezone="UTC",
    enable_utc=True,
)


@lru_cache(maxsize=1)
def probe() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_PROBE_URL"])


_floor = threading.local()


def floor_cursor() -> Any:
    """This thread's connection to the floor's table, its statements prepared (a worker of
    the threads pool runs tasks in several threads; a psycopg2 cursor is not to be shared)."""
    cursor = getattr(_floor, "cursor", None)
    if cursor is None:
        assert FLOOR_DSN is not None
        connection = psycopg2.connect(FLOOR_DSN)
        connection.autocommit = True
        cursor = _floor.cursor = connection.cursor()
        cursor.execute(FLOOR_TABLE)
        for statement in FLOOR_STATEMENTS:
            cursor.execute(statement)
    return cursor


def reset_floor() -> None:
    """The floor's table emptied (the producer, before it publishes)."""
    floor_cursor().execute("TRUNCATE bench_floor_runs RESTART IDENTITY")


# The tasks pass on what they were given: the publish time, or with the floor
# [publish time, run id].


@app.task(name="bare.summarise")
def summarise(published: Any) -> Any:
    return published


@app.task(name="bare.tag")
def tag(published: Any) -> Any:
    return published


@app.task(name="bare.persist")
def persist(published: Any) -> Any:
    if FLOOR_DSN is not None:
        published, run_id = published
        floor_cursor().execute("EXECUTE floor_finish(%s, %s, %s)", (run_id, "summary", '["bug"]'))
    probe().rpush(DONE_KEY, f"{published} {time.time()}")
    return published


def send(published: float, title: str = "", body: str = "") -> Any:
    payload: Any = published
    if FLOOR_DSN is not None:
        cursor = floor_cursor()
        cursor.execute("EXECUTE floor_start(%s, %s)", (title, body))
        payload = [published, cursor.fetchone()[0]]
    return chain(summarise.s(payload), tag.s(), persist.s()).apply_async()
