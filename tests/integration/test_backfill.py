"""``issueflow backfill`` on 10,000 issues in PostgreSQL, publishing to the tests' Redis.

No worker runs: what a backfill leaves is runs recorded in the database and one chain
message per run waiting in the ``summarise`` queue.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, insert, select

from app.db import make_engine
from app.models import EnrichmentRun, EnrichmentStage, Issue
from pipelines.backfill import Selection, backfill
from tests.conftest import BROKER_URL, create_migrated_database, drop_database, flush_broker
from tests.support.processes import ROOT, free_port, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ISSUES = 10_000
# The runs that really send: 1,000 issues in the default suite, 10,000 in the slow step.
SIZES = [1_000, pytest.param(ISSUES, marks=pytest.mark.slow)]
OLD = datetime(2026, 1, 1, tzinfo=UTC)
NEW = datetime(2026, 6, 1, tzinfo=UTC)


def kind(issue_id: int) -> str:
    """What the seeded issue is: enriched, failed, running (a live run) or never enriched."""
    if issue_id % 13 == 0:
        return "running"
    if issue_id % 10 == 0:
        return "enriched"
    if issue_id % 7 == 0:
        return "failed"
    return "missing"


def expected(size: int) -> dict[str, int]:
    """How many issues of each kind ``seed(engine, size)`` makes; ``never``: never enriched
    (what --missing selects, which takes in the issues whose only run failed)."""
    counts = dict.fromkeys(("running", "enriched", "failed", "missing"), 0)
    for n in range(1, size + 1):
        counts[kind(n)] += 1
    return {**counts, "never": counts["missing"] + counts["failed"]}


def seed(engine: Engine, size: int) -> None:
    """``size`` issues in one multi-row INSERT per table: ids 1..size, half of them old."""
    issues, runs = [], []
    for n in range(1, size + 1):
        what = kind(n)
        run_id = f"seed-{n}" if what != "missing" else None
        issues.append(
            {
                "id": n,
                "title": f"Seeded issue {n}: the app crashes on save",
                "body": f"Steps to reproduce number {n}.",
                "status": "open",
                "ai_summary": "done" if what == "enriched" else None,
                "enrichment_status": {
                    "enriched": "succeeded",
                    "failed": "failed",
                    "running": "pending",
                    "missing": "pending",
                }[what],
                "enrichment_task_id": run_id,
                "enriched_at": NEW if what == "enriched" else None,
                "created_at": OLD if n <= size // 2 else NEW,
                "updated_at": NEW,
            }
        )
        if run_id:
            state = {"enriched": "SUCCESS", "failed": "FAILURE", "running": "STARTED"}[what]
            runs.append({"id": run_id, "issue_id": n, "state": state, "dispatched": True})
    with engine.begin() as connection:
        connection.execute(insert(Issue), issues)
        connection.execute(insert(EnrichmentRun), runs)
        connection.exec_driver_sql(f"SELECT setval('issues_id_seq', {size})")


@pytest.fixture
def size() -> int:
    """How many issues the test seeds (parametrised by the tests that send for real)."""
    return ISSUES


@pytest.fixture
def engine(size: int) -> Iterator[Engine]:
    name, url = create_migrated_database("issueflow_scale_backfill")
    engine = make_engine(url)
    seed(engine, size)
    flush_broker()
    yield engine
    engine.dispose()
    flush_broker()
    drop_database(name)


def queued_run_ids() -> list[str]:
    """The run id of every chain message waiting in the summarise queue."""
    client = redis.Redis.from_url(BROKER_URL)
    return [json.loads(raw)["headers"]["root_id"] for raw in client.lrange("summarise", 0, -1)]


def backfill_runs(engine: Engine) -> dict[int, list[str]]:
    """The runs the backfill recorded (not the seeded ones), by issue."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(EnrichmentRun.issue_id, EnrichmentRun.id).where(
                EnrichmentRun.id.not_like("seed-%")
            )
        ).all()
    found: dict[int, list[str]] = {}
    for issue_id, run_id in rows:
        found.setdefault(issue_id, []).append(run_id)
    return found


def test_dry_run_counts_what_it_would_send_and_sends_nothing(engine: Engine) -> None:
    counts = expected(ISSUES)
    summary = backfill(engine, Selection("missing"), rate=1e6, dry_run=True)
    assert summary.sent == counts["never"]
    assert summary.already_running == counts["running"]
    assert summary.selected == counts["never"] + counts["running"]
    assert backfill_runs(engine) == {}
    assert queued_run_ids() == []

    failed = backfill(engine, Selection("failed"), rate=1e6, dry_run=True)
    assert (failed.sent, failed.already_running) == (counts["failed"], 0)
    since = backfill(engine, Selection("all", NEW), rate=1e6, dry_run=True)
    live_new = sum(kind(n) == "running" for n in range(ISSUES // 2 + 1, ISSUES + 1))
    assert since.selected == ISSUES // 2
    assert (since.sent, since.already_running) == (ISSUES // 2 - live_new, live_new)


@pytest.mark.parametrize("size", SIZES)
def test_backfill_of_missing_issues_records_runs_and_queues_one_chain_each(
    engine: Engine, size: int, tmp_path: Path
) -> None:
    counts = expected(size)
    checkpoint = tmp_path / "checkpoint.json"
    summary = backfill(engine, Selection("missing"), rate=1e6, checkpoint=checkpoint)
    print(f"backfill of {size} issues: {summary.line()}")

    assert (summary.sent, summary.already_running, summary.skipped) == (
        counts["never"],
        counts["running"],
        0,
    )
    assert not summary.interrupted
    assert not checkpoint.exists()  # finished: the next backfill starts afresh
    runs = backfill_runs(engine)
    assert sorted(runs) == [n for n in range(1, size + 1) if kind(n) in ("missing", "failed")]
    assert all(len(ids) == 1 for ids in runs.values())
    with engine.connect() as connection:
        current = dict(connection.execute(select(Issue.id, Issue.enrichment_task_id)).all())
        live = connection.execute(
            select(EnrichmentRun.state).where(EnrichmentRun.id.like("seed-%"))
        ).scalars()
        assert set(live) == {"SUCCESS", "FAILURE", "STARTED"}  # no seeded run was superseded
        stages = connection.scalar(select(func.count()).select_from(EnrichmentStage))
    assert all(current[n] == ids[0] for n, ids in runs.items())
    assert stages == 3 * len(runs)
    queued = queued_run_ids()
    assert sorted(queued) == sorted(ids[0] for ids in runs.values())

    # Run again: every one of them now has a live run; nothing more is sent.
    again = backfill(engine, Selection("missing"), rate=1e6, checkpoint=checkpoint)
    assert (again.sent, again.already_running) == (0, counts["never"] + counts["running"])
    assert len(queued_run_ids()) == len(runs)


def _cli(*args: str, database_url: str, broker_url: str = BROKER_URL) -> subprocess.Popen[str]:
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "issueflow"), "backfill", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("size", SIZES)
def test_ctrl_c_stops_after_a_batch_and_the_same_command_resumes(
    engine: Engine, size: int, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    checkpoint = tmp_path / "checkpoint.json"
    # About ten seconds of sending, interrupted once a tenth of it is done.
    args = ("--all", "--rate", str(size // 10), "--checkpoint", str(checkpoint))
    first = _cli(*args, database_url=url)
    try:
        wait_until(
            lambda: (
                checkpoint.exists() and json.loads(checkpoint.read_text())["last_id"] > size // 10
            ),
            timeout=120,
            what="the backfill to save a checkpoint",
            process=first,
        )
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, err
    assert "interrupted after issue" in out, out
    saved = json.loads(checkpoint.read_text())
    assert size // 10 < saved["last_id"] < size, saved
    sent_before = backfill_runs(engine)
    assert max(sent_before) <= saved["last_id"]  # nothing sent past the checkpoint
    assert len(sent_before) == saved["sent"]

    second = _cli(*args, database_url=url)
    try:
        out, err = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
    assert second.returncode == 0, err
    assert f"resuming after issue {saved['last_id']}" in err
    assert "interrupted" not in out
    assert "issue/s" in err  # the progress bar shows the rate (and the time left)
    runs = backfill_runs(engine)
    assert sorted(runs) == [n for n in range(1, size + 1) if kind(n) != "running"]
    assert all(len(ids) == 1 for ids in runs.values()), "an issue was sent twice"
    assert sorted(queued_run_ids()) == sorted(ids[0] for ids in runs.values())
    assert not checkpoint.exists()


@pytest.mark.parametrize("size", [1_000])
def test_dry_run_from_the_command_line_prints_a_summary(engine: Engine, size: int) -> None:
    url = engine.url.render_as_string(hide_password=False)
    done = _cli("--failed", "--dry-run", "--no-progress", database_url=url)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert f"would send {expected(size)['failed']}, skipped 0, already running 0" in out
    assert backfill_runs(engine) == {}


@pytest.mark.parametrize("size", [10])
def test_bad_arguments_get_a_clear_error(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    for args, message in [
        ((), "say which issues"),
        (("--since", "yesterday"), "--since wants a date"),
        (("--all", "--rate", "0"), "must be a positive number"),
        (("--all", "--failed"), "not allowed with argument"),
    ]:
        done = _cli(*args, database_url=url)
        out, err = done.communicate(timeout=60)
        assert done.returncode == 2, (args, out, err)
        assert message in err, (args, err)
    assert backfill_runs(engine) == {}


@pytest.mark.parametrize("size", [10])
def test_broker_unreachable_stops_the_backfill_with_nothing_committed(
    engine: Engine, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    checkpoint = tmp_path / "checkpoint.json"
    done = _cli(
        "--missing",
        "--no-progress",
        "--checkpoint",
        str(checkpoint),
        database_url=url,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    out, err = done.communicate(timeout=120)
    assert done.returncode == 1, (out, err)
    assert "sent 0," in out
    assert "the broker is unreachable" in out
    assert backfill_runs(engine) == {}  # the batch was rolled back: no run waits for nothing
    assert not checkpoint.exists()  # nothing was sent: a rerun starts from the top
