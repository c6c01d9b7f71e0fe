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


# --- ids, runs of an issue (issue 10, item 1 and 5) ---


def test_ids_are_never_reused_and_runs_stay_with_their_issue(client: TestClient) -> None:
    create(client, title="first")
    newest = create(client, title="second")  # SQLite without AUTOINCREMENT reused this id
    deleted_id = newest["issue"]["id"]
    assert client.delete(f"/issues/{deleted_id}").status_code == 204
    created = create(client, title="third")
    new_id = created["issue"]["id"]
    assert new_id > deleted_id
    runs = client.get(f"/issues/{new_id}/runs")
    assert runs.status_code == 200
    assert [run["task_id"] for run in runs.json()["items"]] == [created["task_id"]]
    assert runs.json()["items"][0]["issue_id"] == new_id


def test_runs_of_an_issue_newest_first_paginated(client: TestClient) -> None:
    created = create(client)
    issue_id = created["issue"]["id"]
    other = create(client, title="another issue")
    task_ids = [created["task_id"]]
    for _ in range(2):
        task_ids.append(client.post(f"/issues/{issue_id}/enrich").json()["task_id"])
    first = client.get(f"/issues/{issue_id}/runs", params={"limit": 2}).json()
    assert [run["task_id"] for run in first["items"]] == task_ids[::-1][:2]
    assert first["items"][0]["state"] == "PENDING"
    assert first["items"][1]["state"] == "REVOKED"  # superseded by the newest
    second = client.get(
        f"/issues/{issue_id}/runs", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [run["task_id"] for run in second["items"]] == task_ids[:1]
    assert second["next_cursor"] is None
    assert other["task_id"] not in {run["task_id"] for run in first["items"] + second["items"]}


def test_runs_of_an_unknown_issue_is_404(client: TestClient) -> None:
    response = client.get("/issues/424242/runs")
    assert response.status_code == 404
    assert response.json() == {"detail": "issue 424242 not found"}


def test_runs_of_an_issue_with_an_invalid_cursor_is_400(client: TestClient) -> None:
    issue_id = create(client)["issue"]["id"]
    response = client.get(f"/issues/{issue_id}/runs", params={"cursor": "garbage"})
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid cursor"}


# --- error responses (item 3) ---


def test_a_huge_invalid_body_gives_a_small_error(client: TestClient) -> None:
    for payload in ({"body": "x" * 60_000}, {"title": "ok", "body": "x" * 60_001}):
        response = client.post("/issues", json=payload)
        assert response.status_code == 422
        assert len(response.content) < 1000, response.content[:300]
    detail = client.post("/issues", json={"title": "ok", "body": "x" * 60_001}).json()["detail"]
    assert detail[0]["loc"] == ["body", "body"]
    assert detail[0]["ctx"] == {"max_length": 50_000}
    assert "input" not in detail[0]


def test_a_small_invalid_input_is_echoed(client: TestClient) -> None:
    detail = client.post("/issues", json={"title": 42}).json()["detail"]
    assert detail == [
        {
            "type": "string_type",
            "loc": ["body", "title"],
            "msg": "Input should be a valid string",
            "input": 42,
        }
    ]


@pytest.mark.parametrize(
    ("payload", "loc", "msg"),
    [
        ({"title": ""}, ["body", "title"], "String should have at least 1 character"),
        ({"title": "  "}, ["body", "title"], "must not be empty or only whitespace"),
        ({"title": None}, ["body", "title"], "title may be left out, but not null"),
        ({"body": None}, ["body", "body"], "body may be left out, but not null"),
        ({"body": 5}, ["body", "body"], "Input should be a valid string"),
        ({"status": "archived"}, ["body", "status"], "Input should be 'open' or 'closed'"),
    ],
)
def test_patch_errors_say_what_is_wrong_in_words(
    client: TestClient, payload: dict, loc: list, msg: str
) -> None:
    issue_id = create(client)["issue"]["id"]
    response = client.patch(f"/issues/{issue_id}", json=payload)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(error["loc"], error["msg"]) for error in detail] == [(loc, msg)]
    assert "function-" not in response.text
    assert "Input should be None" not in response.text


@pytest.mark.parametrize(
    ("headers", "content", "says"),
    [
        ({"content-type": "application/x-www-form-urlencoded"}, b"title=x", "application/x-www"),
        ({"content-type": "text/plain"}, b'{"title": "x"}', "'text/plain'"),
        ({}, b"", "Content-Type: application/json"),
    ],
)
def test_a_body_that_is_not_declared_json_says_json_is_expected(
    client: TestClient, headers: dict, content: bytes, says: str
) -> None:
    response = client.post("/issues", content=content, headers=headers)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert "JSON" in error["msg"]
    assert says in error["msg"]
    assert "valid dictionary" not in error["msg"]


def test_a_json_body_that_is_not_an_object_says_so(client: TestClient) -> None:
    response = client.post(
        "/issues", content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert response.json()["detail"][0]["msg"] == "the body must be a JSON object"


# --- body is optional (item 4) ---


def test_the_schema_says_body_is_optional_with_an_empty_default(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["IssueCreate"]
    assert schema["required"] == ["title"]
    assert schema["properties"]["body"]["default"] == ""


# --- unknown query parameters (item 5) ---


@pytest.mark.parametrize(
    ("path", "params", "takes"),
    [
        ("/issues", {"sort": "id"}, "takes: cursor, enrichment_status, limit, q, status, tag"),
        ("/tasks", {"issue_id": "1"}, "takes: cursor, limit, state"),
        ("/healthz", {"verbose": "1"}, "takes no query parameters"),
    ],
)
def test_unknown_query_parameters_are_422_naming_the_allowed_ones(
    client: TestClient, path: str, params: dict, takes: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    name = next(iter(params))
    assert error["loc"] == ["query", name]
    assert error["msg"] == f"unknown query parameter {name!r}; this route {takes}"


def test_unknown_query_parameters_are_refused_on_writes_too(client: TestClient) -> None:
    response = client.post("/issues", params={"notify": "no"}, json={"title": "x"})
    assert response.status_code == 422
    assert client.get("/issues").json()["items"] == []


def test_every_route_declares_the_422_of_an_unknown_query_parameter(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "422" in operation["responses"], (method, path)
