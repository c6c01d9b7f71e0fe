"""Migrations 0002 and 0003 upgrade existing databases in place, keeping what they hold.

A database at 0001 with issues, tags and the run of a deleted issue is upgraded to head:
nothing is lost, the next issue gets an id no issue or run ever had, and the existing
issues are found by full-text search.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import make_engine
from app.main import create_app
from tests.conftest import create_database, drop_database, flush_broker, migrate
from tests.support.services import require_postgres

NOW = "2026-11-01 10:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to 0001 only."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        migrate(url, "0001")
        yield url
        return
    require_postgres()
    name = f"issueflow_api_upgrade_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        migrate(url, "0001")
        yield url
    finally:
        drop_database(name)


def _fill(url: str) -> None:
    """Issues 1 and 2 (tagged), and a run of issue 7, which was deleted."""
    engine = make_engine(url)
    with engine.begin() as connection:
        for issue_id, title, body in [
            (1, "Crash on save", "The editor crashes."),
            (2, "Slow search", "Search takes seconds."),
        ]:
            connection.execute(
                sa.text(
                    "INSERT INTO issues (id, title, body, status, enrichment_status,"
                    " created_at, updated_at) VALUES (:id, :title, :body, 'open',"
                    " 'succeeded', :now, :now)"
                ),
                {"id": issue_id, "title": title, "body": body, "now": NOW},
            )
        connection.execute(
            sa.text(
                "INSERT INTO issue_tags (issue_id, tag, position) VALUES"
                " (1, 'bug', 0), (1, 'crash', 1), (2, 'performance', 0)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO enrichment_runs (id, issue_id, state, error, dispatched,"
                " created_at) VALUES ('run-of-7', 7, 'REVOKED', 'issue 7 was deleted', true, :now)"
            ),
            {"now": NOW},
        )
    engine.dispose()


def test_upgrade_keeps_data_starts_ids_above_every_run_and_indexes_text(
    old_database: str,
) -> None:
    _fill(old_database)
    migrate(old_database)
    app = create_app(Settings(database_url=old_database), sweep_outbox=False)
    with TestClient(app) as client:
        issues = {item["id"]: item for item in client.get("/issues").json()["items"]}
        assert {key: value["tags"] for key, value in issues.items()} == {
            1: ["bug", "crash"],
            2: ["performance"],
        }
        assert [
            item["id"] for item in client.get("/issues", params={"q": "crash"}).json()["items"]
        ] == [1]
        assert [
            item["id"] for item in client.get("/issues", params={"q": "search"}).json()["items"]
        ] == [2]
        created = client.post("/issues", json={"title": "New"})
        assert created.status_code == 201, created.text
        new_id = created.json()["issue"]["id"]
        assert new_id == 8  # above issue 7, whose run is still on record
        runs = client.get(f"/issues/{new_id}/runs").json()["items"]
        assert [run["task_id"] for run in runs] == [created.json()["task_id"]]
    flush_broker()  # the new issue's chain went to the tests' Redis DB; no worker runs


def test_sqlite_downgrade_to_0001_keeps_issues_and_tags(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    migrate(url, "0001")
    _fill(url)
    migrate(url)
    from alembic import command

    from tests.conftest import ROOT

    config = _alembic_config(ROOT, url)
    command.downgrade(config, "0001")
    engine = make_engine(url)
    with engine.connect() as connection:
        tags = connection.execute(sa.text("SELECT issue_id, tag FROM issue_tags")).all()
        table = connection.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'issues'")
        ).scalar_one()
    engine.dispose()
    assert sorted(tags) == [(1, "bug"), (1, "crash"), (2, "performance")]
    assert "AUTOINCREMENT" not in table


def _alembic_config(root: Path, url: str) -> object:
    from alembic.config import Config

    config = Config(str(root / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    return config
