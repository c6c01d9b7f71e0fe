"""A stock Celery chain of three no-op tasks on the issueflow queues: the yardstick.

Configured as Celery users usually have it and as ``app/celery_app.py`` is (JSON,
``acks_late``, prefetch 1, reject on worker lost, the same three queues), with a Redis
result backend ON unless ``BENCH_BARE_RESULTS=off``. No database.

The last task reports ``"<publish time> <finish time>"`` to a probe Redis of its own
(``BENCH_PROBE_URL``, not the broker) so the broker's command counts stay pure.

Workers: ``celery -A bare_tasks worker -Q summarise,tag,persist`` with this directory on
PYTHONPATH (scripts/bench/pipeline.py does that).
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

import redis
from celery import Celery, chain
from kombu import Queue

QUEUES = ("summarise", "tag", "persist")
DONE_KEY = "bench:done"

RESULTS = os.environ.get("BENCH_BARE_RESULTS", "on") != "off"
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


@app.task(name="bare.summarise")
def summarise(published: float) -> float:
    return published


@app.task(name="bare.tag")
def tag(published: float) -> float:
    return published


@app.task(name="bare.persist")
def persist(published: float) -> float:
    probe().rpush(DONE_KEY, f"{published} {time.time()}")
    return published


def send(published: float) -> Any:
    return chain(summarise.s(published), tag.s(), persist.s()).apply_async()
