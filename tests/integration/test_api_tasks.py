"""/tasks on SQLite and PostgreSQL: one run's status, and the list of runs."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from pipelines.bookkeeping import fail_run
from pipelines.queues import Stage


def create(client: TestClient, title: str = "Issue") -> dict:
    response = client.post("/issues", json={"title": title})
    assert response.status_code == 201
    return response.json()


def test_unknown_task_is_404(client: TestClient) -> None:
    response = client.get("/tasks/no-such-task")
    assert response.status_code == 404
    assert response.json() == {"detail": "no enrichment run knows task no-such-task"}


def test_new_run_reads_pending_with_three_pending_stages(client: TestClient) -> None:
    created = create(client)
    status = client.get(created["status_url"]).json()
    assert status["task_id"] == created["task_id"]
    assert status["issue_id"] == created["issue"]["id"]
    assert status["state"] == "PENDING"
    assert status["progress"] == {"completed": 0, "total": 3}
    assert [stage["state"] for stage in status["stages"]] == ["PENDING"] * 3
    assert status["result"] is None
    assert status["error"] is None


def test_status_is_one_database_round_trip(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    created = create(client)
    statements: list[str] = []
    with session_factory() as session:
        bind = session.get_bind()
    engine = bind.engine

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(f"/tasks/{created['task_id']}").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, statements


def test_failed_runs_are_listed_newest_first_with_stage_and_reason(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    runs = [create(client, title=f"issue {n}")["task_id"] for n in range(3)]
    with session_factory() as session, session.begin():
        connection = session.connection()
        fail_run(connection, run_id=runs[0], stage=Stage.TAG, error="PermanentError: 401")
        fail_run(connection, run_id=runs[2], stage=Stage.SUMMARISE, error="TransientError: 503")
    page = client.get("/tasks", params={"state": "FAILURE", "limit": 1}).json()
    assert [item["task_id"] for item in page["items"]] == [runs[2]]
    assert page["items"][0]["error"] == "summarise: TransientError: 503"
    rest = client.get(
        "/tasks", params={"state": "FAILURE", "limit": 1, "cursor": page["next_cursor"]}
    ).json()
    assert [item["task_id"] for item in rest["items"]] == [runs[0]]
    assert rest["items"][0]["error"] == "tag: PermanentError: 401"
    assert [s["state"] for s in rest["items"][0]["stages"]] == ["PENDING", "FAILURE", "REVOKED"]
    assert rest["next_cursor"] is None
    issue = client.get(f"/issues/{rest['items'][0]['issue_id']}").json()
    assert issue["enrichment"] == {
        **issue["enrichment"],
        "status": "failed",
        "error": "tag: PermanentError: 401",
    }
    everything = client.get("/tasks").json()["items"]
    assert [item["task_id"] for item in everything] == runs[::-1]


@pytest.mark.parametrize("params", [{"state": "DONE"}, {"limit": 0}, {"cursor": "x" * 301}])
def test_bad_task_list_parameters_are_4xx(client: TestClient, params: dict) -> None:
    assert client.get("/tasks", params=params).status_code == 422


def test_invalid_task_cursor_is_400(client: TestClient) -> None:
    assert client.get("/tasks", params={"cursor": "bogus"}).status_code == 400


def test_every_stage_message_names_its_run_and_issue_for_flower(
    client: TestClient, redis_url: str
) -> None:
    """Flower shows (and searches) a task's keyword arguments: each stage carries both ids."""
    created = create(client, title="Crash on save")
    run_id, issue_id = created["task_id"], created["issue"]["id"]
    status = client.get(f"/tasks/{run_id}").json()
    broker = redis.Redis.from_url(redis_url)
    [raw] = broker.lrange("summarise", 0, -1)
    message = json.loads(raw)
    # The JSON body is stored as it is, not base64: a queued run costs less Redis memory.
    assert message["properties"]["body_encoding"] == "utf-8"
    args, kwargs, embed = json.loads(message["body"])
    assert (args, kwargs) == ([], {"run_id": run_id, "issue_id": issue_id})
    assert message["headers"]["task"] == "enrichment.summarise"
    assert f"'issue_id': {issue_id}" in message["headers"]["kwargsrepr"]
    # The rest of the chain travels with the message, with the same keyword arguments.
    rest = embed["chain"]
    assert [(s["task"], s["options"]["task_id"], s["kwargs"]) for s in reversed(rest)] == [
        (f"enrichment.{stage['name']}", stage["task_id"], {"run_id": run_id, "issue_id": issue_id})
        for stage in status["stages"][1:]
    ]


def test_the_first_stage_message_carries_only_what_a_worker_or_flower_reads(
    client: TestClient, redis_url: str
) -> None:
    """A queued run costs its message's size in Redis memory: no empty Celery headers, no
    RPC reply fields, no empty canvas keys (issue 11: at most 1.5 KB per queued run)."""
    created = create(client, title="Crash on save")
    [raw] = redis.Redis.from_url(redis_url).lrange("summarise", 0, -1)
    message = json.loads(raw)
    assert set(message["headers"]) == {"lang", "task", "id", "root_id", "argsrepr", "kwargsrepr"}
    assert message["headers"]["root_id"] == message["headers"]["id"] == created["task_id"]
    assert not {"reply_to", "correlation_id"} & set(message["properties"])
    _args, _kwargs, embed = json.loads(message["body"])
    assert set(embed) == {"chain"}
    assert len(raw) < 1100, len(raw)
