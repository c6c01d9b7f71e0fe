"""The /issues API on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.models import EnrichmentRun
from app.states import TaskState


def create(client: TestClient, title: str = "Crash on save", body: str = "It crashes.") -> dict:
    response = client.post("/issues", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_issue_task_id_and_location(client: TestClient) -> None:
    response = client.post("/issues", json={"title": "Crash on save", "body": "Steps..."})
    assert response.status_code == 201
    created = response.json()
    issue = created["issue"]
    assert response.headers["location"] == f"/issues/{issue['id']}"
    assert created["status_url"] == f"/tasks/{created['task_id']}"
    assert issue["title"] == "Crash on save"
    assert issue["body"] == "Steps..."
    assert issue["status"] == "open"
    assert issue["tags"] == []
    assert issue["ai_summary"] is None
    assert issue["enrichment"]["status"] == "pending"
    assert issue["enrichment"]["task_id"] == created["task_id"]
    assert issue["created_at"].endswith("Z") or "+00:00" in issue["created_at"]


def test_create_records_run_with_three_stages(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    created = create(client)
    with session_factory() as session:
        run = session.get(EnrichmentRun, created["task_id"])
        assert run is not None
        assert run.issue_id == created["issue"]["id"]
        assert [(s.name, s.queue, s.state) for s in run.stages] == [
            ("summarise", "summarise", "PENDING"),
            ("tag", "tag", "PENDING"),
            ("persist", "persist", "PENDING"),
        ]
        assert run.stages[0].task_id == run.id
        assert len({s.task_id for s in run.stages}) == 3


def test_body_is_optional(client: TestClient) -> None:
    response = client.post("/issues", json={"title": "No body"})
    assert response.status_code == 201
    assert response.json()["issue"]["body"] == ""


@pytest.mark.parametrize(
    "text",
    [
        "Ünïcödé — 日本語 — emoji 🐛🔥",
        "quotes ' \" ` and backslash \\ and newline\nand tab\t",
        "'; DROP TABLE issues; --",
        "<script>alert(1)</script>",
    ],
)
def test_text_is_stored_exactly_as_sent(client: TestClient, text: str) -> None:
    issue = create(client, title=text[:300], body=text)["issue"]
    fetched = client.get(f"/issues/{issue['id']}").json()
    assert fetched["title"] == text[:300]
    assert fetched["body"] == text


def test_nul_and_lone_surrogates_become_replacement_characters(client: TestClient) -> None:
    raw = '{"title": "nul \\u0000 here", "body": "lone \\ud800 surrogate"}'
    response = client.post("/issues", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    issue = client.get(f"/issues/{response.json()['issue']['id']}").json()
    assert issue["title"] == "nul \ufffd here"
    assert issue["body"] == "lone \ufffd surrogate"


def test_get_unknown_issue_is_404(client: TestClient) -> None:
    response = client.get("/issues/999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "issue 999999 not found"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "ok", "body": "x" * 50_001}, "body"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"title": ["a"]}, "title"),
        ({"title": "ok", "body": 1}, "body"),
        ({"title": "ok", "priority": "high"}, "priority"),
    ],
)
def test_bad_create_input_is_422_naming_the_field(
    client: TestClient, payload: dict, field: str
) -> None:
    response = client.post("/issues", json=payload)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(field in error["loc"] for error in errors), errors


def test_limits_are_inclusive(client: TestClient) -> None:
    assert create(client, title="t" * 300, body="b" * 50_000)["issue"]["title"] == "t" * 300


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'"just a string"', b"\xff\xfe\x00garbage"],
)
def test_body_that_is_not_a_json_object_is_4xx_json(client: TestClient, content: bytes) -> None:
    response = client.post("/issues", content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_oversized_request_is_413(client: TestClient) -> None:
    body = json.dumps({"title": "big", "body": "x" * (1024 * 1024)})
    response = client.post("/issues", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_oversized_chunked_request_is_413(client: TestClient) -> None:
    def chunks():  # no Content-Length: the server must count what arrives
        yield b'{"title": "big", "body": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/issues", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_list_newest_first_with_cursor_pagination(client: TestClient) -> None:
    ids = [create(client, title=f"issue {n}")["issue"]["id"] for n in range(5)]
    first = client.get("/issues", params={"limit": 2}).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = client.get("/issues", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [item["id"] for item in second["items"]] == ids[::-1][2:4]
    third = client.get("/issues", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [item["id"] for item in third["items"]] == ids[:1]
    assert third["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage", "eyJpZCI6ICJ4In0", "e30", "bnVsbA"])
def test_invalid_cursor_is_400(client: TestClient, cursor: str) -> None:
    response = client.get("/issues", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid cursor"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "x"},
        {"enrichment_status": "done"},
        {"status": "archived"},
    ],
)
def test_bad_list_parameters_are_422(client: TestClient, params: dict) -> None:
    assert client.get("/issues", params=params).status_code == 422


def test_list_filters_by_status_and_enrichment_status(client: TestClient) -> None:
    open_issue = create(client, title="open one")["issue"]
    closed = create(client, title="closed one")["issue"]
    client.patch(f"/issues/{closed['id']}", json={"status": "closed"})
    by_status = client.get("/issues", params={"status": "closed"}).json()["items"]
    assert [item["id"] for item in by_status] == [closed["id"]]
    pending = client.get("/issues", params={"enrichment_status": "pending"}).json()["items"]
    assert {item["id"] for item in pending} == {open_issue["id"], closed["id"]}
    assert client.get("/issues", params={"enrichment_status": "failed"}).json()["items"] == []


def test_list_filters_by_tag(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    from app.models import IssueTag

    bug = create(client, title="bug one")["issue"]
    create(client, title="feature one")
    with session_factory() as session, session.begin():
        session.add_all(
            [
                IssueTag(issue_id=bug["id"], tag="bug", position=0),
                IssueTag(issue_id=bug["id"], tag="crash", position=1),
            ]
        )
    items = client.get("/issues", params={"tag": "crash"}).json()["items"]
    assert [(item["id"], item["tags"]) for item in items] == [(bug["id"], ["bug", "crash"])]
    assert client.get("/issues", params={"tag": "ui"}).json()["items"] == []


def test_patch_status_only_does_not_start_a_run(client: TestClient) -> None:
    created = create(client)
    response = client.patch(f"/issues/{created['issue']['id']}", json={"status": "closed"})
    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    assert response.json()["enrichment"]["task_id"] == created["task_id"]


def test_patch_title_starts_a_run_that_supersedes_the_old_one(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    created = create(client)
    issue_id = created["issue"]["id"]
    patched = client.patch(f"/issues/{issue_id}", json={"title": "Crash on save (Windows)"})
    assert patched.status_code == 200
    body = patched.json()
    assert body["title"] == "Crash on save (Windows)"
    new_task = body["enrichment"]["task_id"]
    assert new_task != created["task_id"]
    old = client.get(f"/tasks/{created['task_id']}").json()
    assert old["state"] == "REVOKED"
    assert old["error"] == f"superseded by {new_task}"
    assert client.get(f"/tasks/{new_task}").json()["state"] == "PENDING"


def test_patch_same_text_does_not_start_a_run(client: TestClient) -> None:
    created = create(client, title="Same", body="Same body")
    body = client.patch(
        f"/issues/{created['issue']['id']}", json={"title": "Same", "body": "Same body"}
    ).json()
    assert body["enrichment"]["task_id"] == created["task_id"]


@pytest.mark.parametrize(
    "payload",
    [
        {"title": ""},
        {"title": None},
        {"body": None},
        {"status": "archived"},
        {"owner": "me"},
        {"title": "x" * 301},
    ],
)
def test_bad_patch_is_422(client: TestClient, payload: dict) -> None:
    issue_id = create(client)["issue"]["id"]
    assert client.patch(f"/issues/{issue_id}", json=payload).status_code == 422


def test_patch_unknown_issue_is_404(client: TestClient) -> None:
    assert client.patch("/issues/424242", json={"status": "closed"}).status_code == 404


def test_delete_removes_the_issue_and_revokes_its_run(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    created = create(client)
    issue_id = created["issue"]["id"]
    response = client.delete(f"/issues/{issue_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/issues/{issue_id}").status_code == 404
    assert client.delete(f"/issues/{issue_id}").status_code == 404
    status = client.get(f"/tasks/{created['task_id']}").json()
    assert status["state"] == "REVOKED"
    assert status["error"] == f"issue {issue_id} was deleted"
    with session_factory() as session:
        assert session.scalars(
            select(EnrichmentRun.state).where(EnrichmentRun.issue_id == issue_id)
        ).all() == [TaskState.REVOKED]


def test_enrich_starts_a_new_run(client: TestClient) -> None:
    created = create(client)
    response = client.post(f"/issues/{created['issue']['id']}/enrich")
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert task_id != created["task_id"]
    assert response.json()["status_url"] == f"/tasks/{task_id}"
    assert client.get(f"/issues/{created['issue']['id']}").json()["enrichment"]["task_id"] == (
        task_id
    )
    assert client.post("/issues/999999/enrich").status_code == 404


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.status_code in (200, 503)
