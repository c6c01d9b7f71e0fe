"""How a stage message reaches a Redis broker (``pipelines.messages.send_stage``)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from kombu import Connection

from pipelines.dispatch import publish_chain
from pipelines.queues import Queue, Stage
from tests.conftest import flush_broker

pytestmark = pytest.mark.redis


def test_a_chain_lands_on_its_queue_list_without_declaring_the_queue(redis_url: str) -> None:
    """The publish skips kombu's declaration on Redis: the message is on the list the
    worker reads, and no exchange binding was written (a declaration would add one)."""
    client = redis.Redis.from_url(redis_url)
    # Keys of this test's own: a worker of other tests reads the tests' database.
    prefix = f"stage-message-{uuid.uuid4().hex[:8]}:"
    task_ids = [str(uuid.uuid4()) for _ in Stage]
    try:
        # A new connection: kombu has declared nothing on it yet.
        with Connection(redis_url, transport_options={"global_keyprefix": prefix}) as connection:
            publish_chain(7, task_ids, connection=connection)
        queue = f"{prefix}{Queue.SUMMARISE.value}"
        assert client.keys(f"{prefix}*") == [queue.encode()]  # the list, no binding
        headers = json.loads(client.lpop(queue) or b"{}")["headers"]
        assert (headers["task"], headers["id"]) == ("enrichment.summarise", task_ids[0])
    finally:
        flush_broker()
