"""GET /tasks/<id>/events on a real worker: live statuses through Redis, resume, late connect.

The API here re-reads a run only when a notification arrives (its slow poll is set to a
minute), so every event a test sees travelled worker → Redis PUBLISH → the API's stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from pipelines.context import WorkerContext
from pipelines.providers.base import TransientError
from pipelines.queues import Stage
from tests.integration import test_pipeline
from tests.integration.test_pipeline import ScriptedProvider, create, set_policy, wait_for_state
from tests.sse import Comment, Event, parse

# The embedded worker's scripted provider and context, as test_pipeline.py sets them up.
worker_context = test_pipeline.worker_context
provider = test_pipeline.provider

CANONICAL = [
    "summarise:PENDING:0",
    "summarise:STARTED:0",
    "tag:PENDING:0",
    "tag:STARTED:0",
    "tag:RETRY:1",
    "tag:STARTED:1",
    "persist:PENDING:0",
    "persist:STARTED:0",
    "SUCCESS",
]


def label(status: dict[str, Any]) -> str:
    """Where the chain is: its first unfinished stage, that stage's state and retries."""
    if status["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
        return str(status["state"])
    stage = next(s for s in status["stages"] if s["state"] != "SUCCESS")
    return f"{stage['name']}:{stage['state']}:{stage['retries']}"


@pytest.fixture
def live_api(worker_engine: Engine, worker_database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=worker_database_url,
        events_heartbeat_interval=0.2,
        events_poll_interval=60,
    )
    with TestClient(create_app(settings, sweep_outbox=False)) as client:
        yield client


def read_stream(
    api: TestClient, task_id: str, *, last_event_id: int | None = None, on_event: Any = None
) -> tuple[list[Event], list[Comment]]:
    """Every event and comment until the server ends the stream (at most 30 s)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[Event] = []
    comments: list[Comment] = []
    with api.stream("GET", f"/tasks/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in parse(response.iter_lines(), deadline=time.monotonic() + 30):
            if isinstance(item, Comment):
                comments.append(item)
                continue
            events.append(item)
            if on_event is not None:
                on_event(item)
    return events, comments


def test_events_follow_a_run_with_a_retry_to_its_end(
    live_api: TestClient, provider: ScriptedProvider, worker_context: WorkerContext
) -> None:
    # The retry waits 0.5-1 s: long enough for the stream to show the RETRY on its own.
    set_policy(worker_context, Stage.TAG, backoff=1.0, backoff_max=1.0)
    provider.tag_gate = threading.Event()
    provider.tag_failures = [TransientError("503 from provider")]
    created = create(live_api)

    def open_gate_once_tag_started(event: Event) -> None:
        if label(event.data) == "tag:STARTED:0":
            assert provider.tag_gate is not None
            provider.tag_gate.set()

    events, comments = read_stream(
        live_api, created["task_id"], on_event=open_gate_once_tag_started
    )

    ids = [event.id for event in events]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids), ids
    assert len(set(ids)) == len(ids), ids
    labels = [label(event.data) for event in events]
    positions = [CANONICAL.index(item) for item in labels]
    assert positions == sorted(positions), labels
    assert {"tag:STARTED:0", "tag:RETRY:1", "SUCCESS"} <= set(labels), labels
    retry = next(event.data for event in events if label(event.data) == "tag:RETRY:1")
    assert retry["state"] == "RETRY"
    assert retry["stages"][1]["error"] == "TransientError: 503 from provider"
    assert retry["stages"][1]["retry_at"] is not None
    # The last event is the final status, field for field what GET /tasks/<id> says.
    final = live_api.get(f"/tasks/{created['task_id']}").json()
    assert events[-1].data == final
    assert final["state"] == "SUCCESS"
    assert any(comment.text.startswith("ping") for comment in comments), comments


def test_a_client_that_reconnects_with_last_event_id_misses_nothing_and_sees_nothing_twice(
    live_api: TestClient, provider: ScriptedProvider
) -> None:
    provider.tag_gate = threading.Event()
    created = create(live_api)
    task_id = created["task_id"]
    first: list[Event] = []
    with live_api.stream("GET", f"/tasks/{task_id}/events") as response:
        for item in parse(response.iter_lines(), deadline=time.monotonic() + 30):
            if isinstance(item, Event):
                first.append(item)
                if label(item.data) == "tag:STARTED:0":
                    break  # the client goes away mid-run
    provider.tag_gate.set()
    wait_for_state(live_api, task_id, "SUCCESS")
    resumed, _ = read_stream(live_api, task_id, last_event_id=first[-1].id)
    assert len(resumed) == 1, [label(event.data) for event in resumed]
    assert (resumed[0].id or 0) > (first[-1].id or 0)
    assert resumed[0].data == live_api.get(f"/tasks/{task_id}").json()
    # Resuming after the final event: nothing more, and the stream ends at once.
    again, _ = read_stream(live_api, task_id, last_event_id=resumed[0].id)
    assert again == []


def test_a_client_connecting_after_the_end_gets_the_final_state_at_once(
    live_api: TestClient, provider: ScriptedProvider
) -> None:
    created = create(live_api)
    final = wait_for_state(live_api, created["task_id"], "SUCCESS", "FAILURE")
    events, _ = read_stream(live_api, created["task_id"])
    assert [event.data for event in events] == [final]
    # A stage's own task id names the same run.
    by_stage, _ = read_stream(live_api, final["stages"][2]["task_id"])
    assert [event.data for event in by_stage] == [final]


def test_unknown_run_is_a_404_before_any_stream(live_api: TestClient) -> None:
    response = live_api.get("/tasks/no-such-task/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "no enrichment run knows task no-such-task"}
    bad = live_api.get("/tasks/no-such-task/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422
