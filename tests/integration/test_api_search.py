"""GET /issues?q= (full-text search, ranked) and ?tag=a&tag=b, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.models import IssueTag


def create(client: TestClient, title: str, body: str = "") -> int:
    response = client.post("/issues", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    return int(response.json()["issue"]["id"])


def ids(client: TestClient, **params: object) -> list[int]:
    response = client.get("/issues", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def tag(session_factory: sessionmaker[Session], issue_id: int, *tags: str) -> None:
    with session_factory() as session, session.begin():
        session.add_all(
            IssueTag(issue_id=issue_id, tag=name, position=n) for n, name in enumerate(tags)
        )


def test_search_finds_words_in_title_and_body_with_stemming(client: TestClient) -> None:
    in_title = create(client, "App crashes on save", "Steps below.")
    in_body = create(client, "Saving fails", "The editor crashed twice.")
    typo = create(client, "Docs typo", "A typo in the README.")
    assert set(ids(client, q="crash")) == {in_title, in_body}
    assert ids(client, q="typo readme") == [typo]
    assert ids(client, q="nothing-like-this") == []


def test_a_title_match_ranks_above_a_body_match(client: TestClient) -> None:
    in_title = create(client, "Memory leak in the parser", "Seen on Linux.")
    in_body = create(client, "Parser is slow", "Probably a memory leak somewhere.")
    # The newer issue would come first by id: rank must put the title match first.
    assert in_body > in_title
    assert ids(client, q="memory leak") == [in_title, in_body]


def test_web_search_syntax_phrase_or_and_exclusion(client: TestClient) -> None:
    dark = create(client, "Dark mode flickers", "The dark theme flickers on start.")
    light = create(client, "Light mode colours", "Mode switch keeps the light theme.")
    keyboard = create(client, "Keyboard shortcuts", "Ctrl+S does nothing.")
    assert ids(client, q='"dark mode"') == [dark]
    assert set(ids(client, q="dark or keyboard")) == {dark, keyboard}
    assert ids(client, q="mode -dark") == [light]


@pytest.mark.parametrize("q", ['"', "!!!", '" OR AND NOT (', "*", "-", "or", "NEAR(a b)"])
def test_search_syntax_never_errors(client: TestClient, q: str) -> None:
    create(client, "Something", "with a body")
    response = client.get("/issues", params={"q": q})
    assert response.status_code == 200, response.text


def test_search_follows_edits_and_deletes(client: TestClient) -> None:
    issue_id = create(client, "Crash on start", "Segfault.")
    assert ids(client, q="segfault") == [issue_id]
    client.patch(f"/issues/{issue_id}", json={"body": "An exception is raised."})
    assert ids(client, q="segfault") == []
    assert ids(client, q="exception") == [issue_id]
    client.delete(f"/issues/{issue_id}")
    assert ids(client, q="exception") == []


def test_search_combines_with_the_other_filters(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    open_bug = create(client, "Upload timeout", "Large uploads time out.")
    closed_bug = create(client, "Upload timeout again", "Uploads time out.")
    create(client, "Upload button misaligned", "The upload button is off by 2px.")
    client.patch(f"/issues/{closed_bug}", json={"status": "closed"})
    tag(session_factory, open_bug, "bug", "performance")
    tag(session_factory, closed_bug, "bug")
    assert set(ids(client, q="timeout")) == {open_bug, closed_bug}
    assert ids(client, q="timeout", status="open") == [open_bug]
    assert ids(client, q="upload", tag=["bug", "performance"]) == [open_bug]
    assert ids(client, q="upload", enrichment_status="succeeded") == []


def test_ranked_pages_follow_the_ranked_order_without_gaps_or_repeats(
    client: TestClient,
) -> None:
    # Equal texts tie on rank: the id breaks the tie (newest first), across page borders.
    for n in range(3):
        create(client, f"Login fails {n}", "The login page fails.")
    for n in range(3):
        create(client, f"Misc {n}", "Login is mentioned once.")
    create(client, "Login login login", "Login fails at login.")
    everything = client.get("/issues", params={"q": "login"}).json()
    assert everything["next_cursor"] is None
    order = [item["id"] for item in everything["items"]]
    assert len(order) == 7
    paged: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, object] = {"q": "login", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/issues", params=params).json()
        paged += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == order
    misc = order[-3:]
    assert misc == sorted(misc, reverse=True)  # tied ranks: newest first


def test_a_cursor_of_the_other_order_is_400(client: TestClient) -> None:
    for n in range(3):
        create(client, f"Disk full {n}")
    plain = client.get("/issues", params={"limit": 1}).json()["next_cursor"]
    ranked = client.get("/issues", params={"q": "disk", "limit": 1}).json()["next_cursor"]
    assert client.get("/issues", params={"q": "disk", "cursor": plain}).status_code == 400
    assert client.get("/issues", params={"cursor": ranked}).status_code == 400


@pytest.mark.parametrize("q", ["", "x" * 501])
def test_empty_or_over_long_search_is_422(client: TestClient, q: str) -> None:
    assert client.get("/issues", params={"q": q}).status_code == 422


def test_repeated_tags_mean_all_of_them(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    both = create(client, "both")
    only_bug = create(client, "only bug")
    only_ui = create(client, "only ui")
    tag(session_factory, both, "bug", "ui")
    tag(session_factory, only_bug, "bug")
    tag(session_factory, only_ui, "ui")
    assert ids(client, tag=["bug", "ui"]) == [both]
    assert ids(client, tag=["ui", "bug", "ui"]) == [both]
    assert ids(client, tag=["bug"]) == [only_bug, both]
    assert ids(client, tag=["bug", "security"]) == []


def test_more_than_ten_tags_is_422(client: TestClient) -> None:
    response = client.get("/issues", params={"tag": [f"t{n}" for n in range(11)]})
    assert response.status_code == 422
