"""The slim stage messages (``pipelines.messages``) and the broker's channel client
(``app.broker``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kombu import Connection

from app.broker import Transport, use_channel_client
from pipelines.messages import (
    FINISHED_KEY,
    carried_finishes,
    chain_step,
    is_slim_step,
    send_next_stage,
)

IDS = {"run_id": "run-1", "issue_id": 7}


def test_a_step_written_by_chain_step_is_slim_and_a_canvas_step_is_not() -> None:
    step = chain_step("enrichment.tag", "tag-1", IDS)
    assert is_slim_step(step)
    assert is_slim_step({**step, "subtask_type": None, "immutable": False})
    assert not is_slim_step({**step, "immutable": True})
    assert not is_slim_step({**step, "args": [1]})
    assert not is_slim_step({**step, "options": {"task_id": "tag-1", "countdown": 5}})
    assert not is_slim_step({**step, "task": "somewhere.else"})
    assert not is_slim_step({**step, "subtask_type": "group"})


class FakeAMQP:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def _retry_publish(self, publish: Any, app: Any, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_send_next_stage_sends_the_last_step_and_takes_the_chain_off() -> None:
    app = SimpleNamespace(amqp=FakeAMQP())
    tail = [chain_step("enrichment.persist", "persist-1", IDS)]
    request = SimpleNamespace(
        chain=[*tail, chain_step("enrichment.tag", "tag-1", IDS)], id="run-1", root_id=None
    )
    assert send_next_stage(app, request, {"summary": "s"})  # type: ignore[arg-type]
    assert request.chain is None  # Celery's own continuation finds nothing left to send
    [call] = app.amqp.calls
    assert call == {
        "name": "enrichment.tag",
        "task_id": "tag-1",
        "root_id": "run-1",
        "parent_id": "run-1",
        "args": ({"summary": "s"},),
        "kwargs": IDS,
        "chain": tail,
    }


def test_the_next_stage_carries_the_finishes_written_behind() -> None:
    """summarise's finish travels under FINISHED_KEY of its result; tag reads it back. A
    result that is not a dict cannot carry it: the step is left to Celery (the caller then
    writes the finish itself)."""
    app = SimpleNamespace(amqp=FakeAMQP())
    finish = {"position": 0, "finished_at": "2026-01-01T00:00:00+00:00", "result": {}}
    request = SimpleNamespace(
        chain=[chain_step("enrichment.tag", "tag-1", IDS)], id="run-1", root_id=None
    )
    assert send_next_stage(app, request, {"summary": "s"}, [finish])  # type: ignore[arg-type]
    [call] = app.amqp.calls
    assert call["args"] == ({"summary": "s", FINISHED_KEY: [finish]},)
    assert carried_finishes(call["args"]) == [finish]
    assert carried_finishes(({"summary": "s"},)) is None
    assert carried_finishes(()) is None

    request = SimpleNamespace(
        chain=[chain_step("enrichment.tag", "tag-1", IDS)], id="run-1", root_id=None
    )
    assert not send_next_stage(app, request, "text", [finish])  # type: ignore[arg-type]
    assert request.chain is not None
    assert len(app.amqp.calls) == 1


def test_a_step_it_cannot_send_is_left_to_celery() -> None:
    app = SimpleNamespace(amqp=FakeAMQP())
    step = {**chain_step("enrichment.tag", "tag-1", IDS), "immutable": True}
    request = SimpleNamespace(chain=[step], id="run-1", root_id="run-1")
    assert not send_next_stage(app, request, None)  # type: ignore[arg-type]
    assert request.chain == [step]
    assert app.amqp.calls == []


def test_redis_channels_keep_one_client_until_their_pool_changes(redis_url: str) -> None:
    use_channel_client()
    connection = Connection(redis_url)
    try:
        assert isinstance(connection.transport, Transport)
        channel: Any = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert channel._create_client(asynchronous=True) is not first
        channel._disconnect_pools()  # what kombu does after a lost connection
        renewed = channel._create_client()
        assert renewed is not first
        assert renewed.connection_pool is channel.pool
        assert renewed.ping()
    finally:
        connection.release()


@pytest.mark.parametrize("url", ["amqp://localhost//", "rediss://localhost:6380/0"])
def test_other_brokers_keep_their_own_transport(url: str) -> None:
    use_channel_client()
    assert Connection(url).transport_cls != "app.broker:Transport"
