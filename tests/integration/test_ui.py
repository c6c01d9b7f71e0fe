"""The /ui/ pages as HTML: what they show, escaping, filters, auth, static files."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import EnrichmentRun, utcnow
from tests.conftest import flush_broker

XSS = "<script>alert(1)</script>"


def create(client: TestClient, title: str, body: str = "Steps: open, save.") -> dict:
    response = client.post("/issues", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return response.json()


def test_issue_text_is_escaped_everywhere(client: TestClient) -> None:
    created = create(client, XSS, body=f'<img src=x onerror="alert(2)"> {XSS}')
    pages = [
        client.get("/ui/"),
        client.get(f"/ui/issues/{created['issue']['id']}"),
        client.get(f"/ui/runs/{created['task_id']}"),
        client.get("/ui/runs"),
    ]
    for page in pages:
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        # Scripts come from the app only, never inline.
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/ui/static/run.js" defer>']


def test_issues_page_lists_and_filters(client: TestClient) -> None:
    first = create(client, "Crash on save")
    second = create(client, "Add dark mode")
    client.patch(f"/issues/{second['issue']['id']}", json={"status": "closed"})
    page = client.get("/ui/").text
    assert page.index("Add dark mode") < page.index("Crash on save")  # newest first
    assert f'href="/ui/runs/{first["task_id"]}"' in page
    assert '<label for="tag">Tag</label>' in page
    closed = client.get("/ui/", params={"status": "closed"}).text
    assert "Add dark mode" in closed
    assert "Crash on save" not in closed
    pending = client.get("/ui/", params={"enrichment_status": "pending"}).text
    assert "Crash on save" in pending
    assert "Crash on save" not in client.get("/ui/", params={"tag": "nope"}).text
    assert client.get("/ui", follow_redirects=False).headers["location"].endswith("/ui/")
    assert client.get("/ui/", params={"status": "sideways"}).status_code == 422
    assert client.get("/ui/", params={"cursor": "garbage"}).status_code == 400


def test_issue_page_shows_text_and_runs(client: TestClient) -> None:
    created = create(client, "Crash on save", body="Line one\nLine two")
    issue_id = created["issue"]["id"]
    rerun = client.post(f"/issues/{issue_id}/enrich").json()
    page = client.get(f"/ui/issues/{issue_id}").text
    assert "Line one\nLine two" in page
    # Both runs, newest first; the first ended REVOKED, superseded.
    assert page.index(rerun["task_id"][:8]) < page.index(created["task_id"][:8])
    assert f"superseded by {rerun['task_id']}" in page
    assert f'data-action="rerun" data-issue-id="{issue_id}"' in page
    assert client.get("/ui/issues/999999").status_code == 404
    assert client.get("/ui/issues/0").status_code == 422


def test_run_page_shows_the_timeline_and_buttons(client: TestClient) -> None:
    created = create(client, "Crash on save")
    page = client.get(f"/ui/runs/{created['task_id']}").text
    for stage in ("summarise", "tag", "persist"):
        assert f'<tr data-stage="{stage}">' in page
    assert f'data-action="cancel" data-task-id="{created["task_id"]}"' in page
    assert '<meta name="viewport"' in page
    # A cancelled run: the page says so and the cancel button is off.
    client.post(f"/tasks/{created['task_id']}/cancel")
    cancelled = client.get(f"/ui/runs/{created['task_id']}").text
    assert '<span class="badge badge-revoked">REVOKED</span>' in cancelled
    assert re.search(r'data-action="cancel"[^>]*disabled', cancelled)
    assert client.get("/ui/runs/no-such-run").status_code == 404


def test_run_page_says_when_a_run_was_resumed(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    created = create(client, "Crash on save")
    page = client.get(f"/ui/runs/{created['task_id']}").text
    assert "run-resumes" not in page  # never resumed: nothing to say
    with session_factory() as session:
        run = session.get(EnrichmentRun, created["task_id"])
        assert run is not None
        run.resumes, run.resumed_at, run.resumed_from = 2, utcnow(), "tag"
        session.commit()
    page = client.get(f"/ui/runs/{created['task_id']}").text
    assert re.search(
        r'id="run-resumes">2 times after its message was lost; last at .+, from tag<', page
    )


def test_failed_runs_page_filters_by_state(client: TestClient) -> None:
    created = create(client, "Crash on save")
    client.post(f"/tasks/{created['task_id']}/cancel")
    failed = client.get("/ui/runs", params={"state": "FAILURE"}).text
    assert "<h1>Failed runs</h1>" in failed
    assert created["task_id"][:8] not in failed
    revoked = client.get("/ui/runs", params={"state": "REVOKED"}).text
    assert created["task_id"][:8] in revoked
    assert "Re-run enrichment of issue" in revoked


def test_static_files_are_served_and_nothing_else(client: TestClient) -> None:
    script = client.get("/ui/static/run.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    assert client.get("/ui/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/..%2Froutes.py").status_code == 404
    assert client.get("/ui/static/routes.py").status_code == 404


@pytest.fixture
def locked(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    settings = Settings(database_url="sqlite://", api_keys="secret-key")  # type: ignore[arg-type]
    app = create_app(settings, sweep_outbox=False)
    app.state.session_factory = session_factory
    app.state.autocommit_session_factory = session_factory  # the test's transaction
    with TestClient(app) as client:
        yield client
    flush_broker()


def test_with_api_keys_the_pages_ask_for_the_key_and_writes_need_it(locked: TestClient) -> None:
    page = locked.get("/ui/")
    assert page.status_code == 200  # reads stay open
    assert '<label for="api-key">API key' in page.text
    assert locked.post("/issues/1/enrich").status_code == 401


def test_when_reads_need_a_key_the_pages_take_it_once_as_a_cookie(
    session_factory: sessionmaker[Session],
) -> None:
    settings = Settings(
        database_url="sqlite://",
        api_keys="secret-key",  # type: ignore[arg-type]
        api_read_requires_key=True,
    )
    app = create_app(settings, sweep_outbox=False)
    app.state.session_factory = session_factory
    app.state.autocommit_session_factory = session_factory  # the test's transaction
    bearer = {"Authorization": "Bearer secret-key"}
    with TestClient(app) as client:
        created = client.post("/issues", json={"title": "Crash"}, headers=bearer).json()
        client.post(f"/tasks/{created['task_id']}/cancel", headers=bearer)
        run_page = f"/ui/runs/{created['task_id']}"

        asked = client.get(run_page)
        assert asked.status_code == 401
        assert '<label for="login-key">API key</label>' in asked.text
        assert f'name="next" value="{run_page}"' in asked.text
        assert "Crash" not in asked.text
        assert client.get(f"{run_page}/events").status_code == 401

        wrong = client.post("/ui/key", data={"key": "nope", "next": run_page})
        assert wrong.status_code == 403
        assert "not accepted" in wrong.text
        assert "issueflow_key" not in client.cookies

        # Never a redirect to another site.
        away = client.post(
            "/ui/key",
            data={"key": "secret-key", "next": "//evil.example/"},
            follow_redirects=False,
        )
        assert away.headers["location"] == "/ui/"
        right = client.post(
            "/ui/key", data={"key": "secret-key", "next": run_page}, follow_redirects=False
        )
        assert right.status_code == 303
        assert right.headers["location"] == run_page
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/ui/" in cookie

        page = client.get(run_page)
        assert page.status_code == 200
        assert f'data-events-url="{run_page}/events"' in page.text
        with client.stream("GET", f"{run_page}/events") as stream:
            assert stream.status_code == 200
            body = "".join(stream.iter_text())
        assert '"state":"REVOKED"' in body
        # The API itself still wants the Bearer header, cookie or not.
        assert client.get(f"/tasks/{created['task_id']}").status_code == 401
    flush_broker()
