"""GET /metrics on SQLite (the default database): the same figures as on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.db import make_engine
from app.main import create_app
from tests.conftest import flush_broker

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_api(sqlite_url: str) -> Iterator[tuple[TestClient, sa.Engine]]:
    settings = Settings(database_url=sqlite_url, metrics_cache_seconds=0)
    engine = make_engine(sqlite_url)
    with TestClient(create_app(settings, sweep_outbox=False)) as client:
        yield client, engine
    engine.dispose()
    flush_broker()  # the chain the POST sent: no worker runs here


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_durations_and_waits_come_from_the_timestamps(
    sqlite_api: tuple[TestClient, sa.Engine],
) -> None:
    client, engine = sqlite_api
    runs = sa.table(
        "enrichment_runs", *(sa.column(c) for c in ("id", "state", "created_at", "finished_at"))
    )
    stages = sa.table(
        "enrichment_stages",
        *(sa.column(c) for c in ("run_id", "position", "state", "started_at", "finished_at")),
    )
    created = client.post("/issues", json={"title": "Timed"}).json()
    run_id = created["task_id"]
    # summarise waits 0.5 s and runs 1 s, tag waits 0.25 s and runs 2 s, persist 0.25 + 0.
    marks = [(0.5, 1.5), (1.75, 3.75), (4.0, 4.0)]
    with engine.begin() as connection:
        for position, (started, finished) in enumerate(marks):
            connection.execute(
                stages.update()
                .where(stages.c.run_id == run_id, stages.c.position == position)
                .values(
                    state="SUCCESS",
                    started_at=T0 + timedelta(seconds=started),
                    finished_at=T0 + timedelta(seconds=finished),
                )
            )
        connection.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(state="SUCCESS", created_at=T0, finished_at=T0 + timedelta(seconds=4))
        )
    found = samples(client)

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("issueflow_database_up") == 1
    assert value("issueflow_runs_total", state="SUCCESS") == 1
    assert value("issueflow_runs_in_progress") == 0
    assert value("issueflow_run_duration_seconds_sum", state="SUCCESS") == pytest.approx(
        4, abs=1e-3
    )
    assert value("issueflow_run_duration_seconds_bucket", state="SUCCESS", le="2.5") == 0
    assert value("issueflow_run_duration_seconds_bucket", state="SUCCESS", le="5.0") == 1
    for stage, wait, ran in (("summarise", 0.5, 1.0), ("tag", 0.25, 2.0), ("persist", 0.25, 0.0)):
        assert value("issueflow_stage_queue_wait_seconds_sum", stage=stage) == pytest.approx(
            wait, abs=1e-3
        )
        assert value("issueflow_stage_duration_seconds_sum", stage=stage) == pytest.approx(
            ran, abs=1e-3
        )
    # The outbox: a run the broker did not take.
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE enrichment_runs SET state = 'PENDING', dispatched = 0"))
    found = samples(client)
    assert value("issueflow_outbox_runs") == 1
    assert value("issueflow_runs_in_progress") == 1


def test_rows_are_counted_once_as_the_horizon_moves(
    sqlite_api: tuple[TestClient, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old rows are read once and remembered, younger ones at every scrape: a row is never
    missed nor counted twice as it ages past the horizon."""
    import app.api.metrics

    client, engine = sqlite_api
    now = datetime.now(UTC)

    def ended_run(run_id: str, ago: timedelta) -> None:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO enrichment_runs (id, issue_id, state, dispatched, force,"
                    " created_at, finished_at) VALUES (:id, 1, 'SUCCESS', 1, 0, :c, :f)"
                ),
                {"id": run_id, "c": now - ago - timedelta(seconds=1), "f": now - ago},
            )

    def ended() -> float:
        return samples(client)[
            ("issueflow_run_duration_seconds_count", frozenset({("state", "SUCCESS")}))
        ]

    ended_run("old", timedelta(hours=2))
    ended_run("recent", timedelta(minutes=5))
    monkeypatch.setattr(app.api.metrics, "SEAL_AFTER", timedelta(minutes=10))
    assert ended() == 2  # "old" sealed, "recent" live
    monkeypatch.setattr(app.api.metrics, "SEAL_AFTER", timedelta(minutes=1))
    assert ended() == 2  # "recent" moved into the sealed totals, once
    ended_run("just now", timedelta(0))
    assert ended() == 3
    assert ended() == 3
    monkeypatch.setattr(app.api.metrics, "SEAL_AFTER", timedelta(minutes=30))
    assert ended() == 3  # a horizon that would go back stays where it was
