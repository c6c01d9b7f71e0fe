"""Start marks written behind (``pipelines.marks``), a stage's one-read begin and persist's
PostgreSQL statements (in a transaction, and alone), on a real PostgreSQL database of the
test's own (no worker).

What they prove: a waiting mark is written by one flush and tells the run's watchers; a
mark written late never undoes a later state; a finish takes a waiting start with it; a
failed flush keeps its marks; only a first delivery of a stage nobody started leaves its
mark behind; persist replaces tags and stays idempotent.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from app.db import make_autocommit_engine, make_engine
from app.models import EnrichmentRun, EnrichmentStage, Issue, IssueTag, utcnow
from pipelines import prepared
from pipelines.bookkeeping import (
    StaleRun,
    begin_stage_behind,
    finish_stage,
    persist_result,
    retry_stage,
)
from pipelines.context import FLUSH_SETTINGS
from pipelines.deliveries import StageDone, StageHeld
from pipelines.marks import FLUSH_SQL, Finish, MarkBuffer, finish_rows, flush_params
from pipelines.queues import Stage
from tests.conftest import create_migrated_database, drop_database

pytestmark = [pytest.mark.postgres]

LEASE = timedelta(seconds=60)


@pytest.fixture
def engine() -> Iterator[Engine]:
    name, url = create_migrated_database("issueflow_marks")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_database(name)


@pytest.fixture
def single(engine: Engine) -> Iterator[Engine]:
    """The workers' engine for marks: autocommit, as ``WorkerContext`` builds it."""
    single = make_autocommit_engine(str(engine.url.render_as_string(hide_password=False)), engine)
    yield single
    single.dispose()


@pytest.fixture
def written() -> list[set[str]]:
    return []


@pytest.fixture
def marks(single: Engine, written: list[set[str]]) -> Iterator[MarkBuffer]:
    # An interval longer than any test: only the test's own flushes write.
    buffer = MarkBuffer(single, on_written=written.append, interval=3600)
    yield buffer
    buffer.close()


def add_run(engine: Engine, issue_id: int, run: str, *, states: tuple[str, ...] = ("PENDING",) * 3,
            started_at: Any = None) -> None:  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            insert(Issue),
            {"id": issue_id, "title": f"issue {issue_id}", "body": "text", "status": "open",
             "enrichment_status": "pending", "enrichment_task_id": run},
        )  # fmt: skip
        connection.execute(insert(EnrichmentRun), {"id": run, "issue_id": issue_id})
        connection.execute(
            insert(EnrichmentStage),
            [
                {"run_id": run, "position": n, "name": stage.value, "queue": stage.value,
                 "task_id": f"{run}-{n}", "state": states[n],
                 "started_at": started_at if states[n] == "STARTED" else None}
                for n, stage in enumerate(Stage)
            ],
        )  # fmt: skip


def stage_rows(engine: Engine, run: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(
                    EnrichmentStage.state,
                    EnrichmentStage.started_at,
                    EnrichmentStage.finished_at,
                    EnrichmentStage.result,
                )
                .where(EnrichmentStage.run_id == run)
                .order_by(EnrichmentStage.position)
            )
        )


def issue_status(engine: Engine, issue_id: int) -> str:
    with engine.connect() as connection:
        return str(connection.scalar(select(Issue.enrichment_status).where(Issue.id == issue_id)))


def begin(engine: Engine, marks: MarkBuffer, run: str, stage: Stage, **kwargs: Any) -> Any:
    with engine.begin() as connection:
        return begin_stage_behind(
            connection, run_id=run, stage=stage, marks=marks, **{"lease": LEASE, **kwargs}
        )


def test_a_first_delivery_begins_with_one_read_and_one_flush_writes_its_marks(
    engine: Engine, marks: MarkBuffer, written: list[set[str]]
) -> None:
    add_run(engine, 1, "run-1")
    add_run(engine, 2, "run-2")
    issue, behind = begin(engine, marks, "run-1", Stage.SUMMARISE)
    assert (issue.issue_id, issue.title, behind) == (1, "issue 1", True)
    begin(engine, marks, "run-2", Stage.SUMMARISE)
    # Nothing written yet: the marks wait.
    assert [row.state for row in stage_rows(engine, "run-1")] == ["PENDING"] * 3
    assert issue_status(engine, 1) == "pending"
    assert marks.waiting() == 4  # two stages, two issues

    assert marks.flush() == 2
    for run, issue_id in (("run-1", 1), ("run-2", 2)):
        first = stage_rows(engine, run)[0]
        assert first.state == "STARTED"
        assert first.started_at is not None
        assert issue_status(engine, issue_id) == "running"
    assert written == [{"run-1", "run-2"}]
    assert marks.flush() == 0  # nothing left


def test_a_late_start_mark_never_undoes_a_later_state(
    engine: Engine, marks: MarkBuffer, written: list[set[str]]
) -> None:
    add_run(engine, 1, "run-1")
    begin(engine, marks, "run-1", Stage.SUMMARISE)
    # Meanwhile the run was cancelled: its stages ended, its issue says so.
    with engine.begin() as connection:
        connection.execute(
            update(EnrichmentStage).where(EnrichmentStage.run_id == "run-1").values(state="REVOKED")
        )
        connection.execute(update(Issue).where(Issue.id == 1).values(enrichment_status="failed"))
    assert marks.flush() == 0
    assert [row.state for row in stage_rows(engine, "run-1")] == ["REVOKED"] * 3
    assert issue_status(engine, 1) == "failed"
    assert written == []


def test_a_finish_takes_its_waiting_marks_along(
    engine: Engine, marks: MarkBuffer, written: list[set[str]]
) -> None:
    add_run(engine, 1, "run-1")
    begin(engine, marks, "run-1", Stage.SUMMARISE)
    started, issue_id = marks.take_start("run-1", Stage.SUMMARISE.position)
    assert started is not None
    assert issue_id == 1
    assert marks.waiting() == 0
    with engine.begin() as connection:
        assert finish_stage(
            connection,
            run_id="run-1",
            stage=Stage.SUMMARISE,
            result={"summary": "s"},
            started_at=started,
            issue_id=issue_id,
        )
    first = stage_rows(engine, "run-1")[0]
    assert (first.state, first.started_at, first.result) == ("SUCCESS", started, {"summary": "s"})
    assert first.finished_at >= started
    assert issue_status(engine, 1) == "running"
    assert marks.flush() == 0
    assert written == []


def test_a_finish_carrying_the_issue_mark_never_undoes_persist(engine: Engine) -> None:
    add_run(engine, 1, "run-1")
    with engine.begin() as connection:
        connection.execute(update(Issue).where(Issue.id == 1).values(enrichment_status="succeeded"))
        finish_stage(connection, run_id="run-1", stage=Stage.TAG, result={}, issue_id=1)
    assert issue_status(engine, 1) == "succeeded"
    assert stage_rows(engine, "run-1")[1].state == "SUCCESS"


def test_a_finish_carrying_the_issue_mark_locks_the_issue_first(
    engine: Engine, single: Engine
) -> None:
    """A cancel locks the issue, then the run, then its stages: a summarise finish that
    marks the issue too must wait for the issue before it touches its stage, or the two
    would deadlock."""
    add_run(engine, 1, "run-1")
    finished: list[bool] = []

    def finish() -> None:
        with single.begin() as connection:
            finished.append(
                finish_stage(
                    connection, run_id="run-1", stage=Stage.SUMMARISE, result={}, issue_id=1
                )
            )

    with engine.begin() as cancel:
        cancel.execute(select(Issue.id).where(Issue.id == 1).with_for_update())
        finisher = threading.Thread(target=finish)
        finisher.start()
        finisher.join(0.5)  # let it reach the issue's lock (the test holds either way)
        cancel.execute(
            update(EnrichmentStage).where(EnrichmentStage.run_id == "run-1").values(state="REVOKED")
        )
    finisher.join(10)
    assert finished == [False]  # the run was cancelled first: nothing finished
    assert [row.state for row in stage_rows(engine, "run-1")] == ["REVOKED"] * 3


def test_a_retry_takes_the_start_mark_and_leaves_the_issue_mark(
    engine: Engine, marks: MarkBuffer
) -> None:
    add_run(engine, 1, "run-1")
    begin(engine, marks, "run-1", Stage.SUMMARISE)
    started, issue_id = marks.take_start("run-1", 0, with_issue=False)
    assert (started is not None, issue_id) == (True, None)
    with engine.begin() as connection:
        retry_stage(
            connection, run_id="run-1", stage=Stage.SUMMARISE, retries=1, error="503",
            started_at=started,
        )  # fmt: skip
    marks.flush()  # the issue's mark; the stage's start no longer waits
    first = stage_rows(engine, "run-1")[0]
    assert (first.state, first.started_at) == ("RETRY", started)
    assert issue_status(engine, 1) == "running"


def test_a_flush_finds_its_rows_by_key_in_a_plan_made_while_the_tables_were_empty(
    engine: Engine,
) -> None:
    # The flush's pool as WorkerContext builds it; its plan made generic at once, on tables
    # as empty as a new deployment's, and kept as they grow (no ANALYZE replans it).
    url = engine.url.render_as_string(hide_password=False)
    flushing = make_autocommit_engine(
        url, engine, durable=False, settings=(*FLUSH_SETTINGS, "plan_cache_mode=force_generic_plan")
    )
    buffer = MarkBuffer(flushing, interval=3600)
    add_run(engine, 1, "run-1")
    buffer.started("run-1", 0, utcnow(), issue_id=1)
    buffer.finished("run-1", 1, Finish(finished_at=utcnow(), result={"summary": "s"}))
    assert buffer.flush() == 1
    for issue_id in range(2, 302):
        add_run(engine, issue_id, f"run-{issue_id}")
    params = flush_params(
        {("run-300", 0): utcnow()},
        {"run-300": 300},
        {("run-300", 1): Finish(finished_at=utcnow(), result={"summary": "s"})},
    )
    with flushing.connect() as connection:
        assert connection.info.get("issueflow_prepared")  # the connection that planned it
        plan = "\n".join(
            row[0]
            for row in connection.exec_driver_sql(
                "EXPLAIN " + prepared.statement_forms(FLUSH_SQL)[1], params
            )
        )
    buffer.close()
    flushing.dispose()
    assert "Seq Scan" not in plan
    assert "Index Scan using pk_issues" in plan
    assert plan.count("Index Scan using pk_enrichment_stages") == 2


def test_a_failed_flush_keeps_its_marks_for_the_next(engine: Engine) -> None:
    add_run(engine, 1, "run-1")
    away = make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    buffer = MarkBuffer(away, interval=3600)
    buffer.started("run-1", 0, utcnow(), issue_id=1)
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        buffer.flush()
    assert buffer.waiting() == 2
    buffer._engine = engine  # the database is back
    assert buffer.flush() == 1
    assert stage_rows(engine, "run-1")[0].state == "STARTED"
    buffer.close()
    away.dispose()


def test_notices_of_finished_stages_go_out_with_the_next_flush_once_per_run(
    engine: Engine, marks: MarkBuffer, written: list[set[str]]
) -> None:
    """summarise's and tag's finishes tell the run's watchers with the next flush (one
    pipelined PUBLISH per run), with no statement of their own; close sends what waits."""
    add_run(engine, 1, "run-1")
    marks.notify("run-1")
    marks.notify("run-2")
    marks.notify("run-1")
    assert written == []
    assert marks.flush() == 0  # nothing to write: no statement
    assert written == [{"run-1", "run-2"}]
    marks.started("run-1", 0, utcnow(), issue_id=1)
    marks.notify("run-3")
    assert marks.flush() == 1
    assert written[-1] == {"run-1", "run-3"}
    marks.notify("run-4")
    marks.close()
    assert written[-1] == {"run-4"}
    marks.notify("run-5")  # after close: at once
    assert written[-1] == {"run-5"}


def stage_tokens(engine: Engine, run: str, position: int) -> tuple[Any, ...]:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                EnrichmentStage.prompt_tokens,
                EnrichmentStage.completion_tokens,
                EnrichmentStage.cached,
            ).where(EnrichmentStage.run_id == run, EnrichmentStage.position == position)
        ).one()
    return tuple(row)


def test_a_finish_written_behind_takes_its_start_and_is_written_once(
    engine: Engine, marks: MarkBuffer, written: list[set[str]]
) -> None:
    add_run(engine, 1, "run-1")
    begin(engine, marks, "run-1", Stage.SUMMARISE)
    finish = marks.finished(
        "run-1",
        0,
        Finish(finished_at=utcnow(), result={"summary": "s"}, prompt_tokens=3, completion_tokens=4),
    )
    assert finish.started_at is not None  # the waiting start mark went with it
    assert marks.waiting() == 2  # the finish and the issue's running mark
    assert stage_rows(engine, "run-1")[0].state == "PENDING"  # nothing written yet
    assert marks.flush() == 1
    first = stage_rows(engine, "run-1")[0]
    assert (first.state, first.started_at, first.finished_at, first.result) == (
        "SUCCESS",
        finish.started_at,
        finish.finished_at,
        {"summary": "s"},
    )
    assert stage_tokens(engine, "run-1", 0) == (3, 4, False)
    assert issue_status(engine, 1) == "running"
    assert written == [{"run-1"}]
    # Written again (tag's read wrote it first, or a flush is retried): nothing changes,
    # the tokens are not added twice.
    marks.finished("run-1", 0, finish)
    assert marks.flush() == 0
    assert stage_tokens(engine, "run-1", 0) == (3, 4, False)


def test_a_late_finish_never_undoes_a_later_state(engine: Engine, marks: MarkBuffer) -> None:
    add_run(engine, 1, "run-1")
    marks.finished("run-1", 0, Finish(finished_at=utcnow(), result={"summary": "s"}))
    with engine.begin() as connection:  # cancelled (or superseded) meanwhile
        connection.execute(
            update(EnrichmentStage).where(EnrichmentStage.run_id == "run-1").values(state="REVOKED")
        )
    assert marks.flush() == 0
    assert [(row.state, row.result) for row in stage_rows(engine, "run-1")] == [
        ("REVOKED", None)
    ] * 3


def test_the_next_stages_read_writes_the_finish_its_message_carries(
    engine: Engine, marks: MarkBuffer
) -> None:
    add_run(engine, 1, "run-1")
    started = utcnow()
    finish = Finish(
        finished_at=started + timedelta(milliseconds=5),
        result={"summary": "s"},
        started_at=started,
        cached=True,
    )
    issue, behind = begin(engine, marks, "run-1", Stage.TAG, finished=finish_rows([finish.row(0)]))
    assert (issue.title, behind) == ("issue 1", True)
    rows = stage_rows(engine, "run-1")
    assert (rows[0].state, rows[0].started_at, rows[0].finished_at, rows[0].result) == (
        "SUCCESS",
        started,
        finish.finished_at,
        {"summary": "s"},
    )
    assert rows[1].state == "PENDING"  # tag's own start waits in the buffer
    assert stage_tokens(engine, "run-1", 0) == (None, None, True)
    # summarise's process writes the same finish late: nothing changes.
    marks.finished("run-1", 0, dataclasses.replace(finish, finished_at=utcnow()))
    marks.flush()
    assert stage_rows(engine, "run-1")[0].finished_at == finish.finished_at
    assert stage_rows(engine, "run-1")[1].state == "STARTED"


def test_a_duplicate_of_a_stage_whose_finish_waits_in_its_process_is_done(
    engine: Engine, marks: MarkBuffer
) -> None:
    add_run(engine, 1, "run-1")
    begin(engine, marks, "run-1", Stage.SUMMARISE)
    marks.finished("run-1", 0, Finish(finished_at=utcnow(), result={"summary": "s"}))
    with pytest.raises(StageDone) as done:
        begin(engine, marks, "run-1", Stage.SUMMARISE)
    assert done.value.result == {"summary": "s"}
    marks.started("run-1", 0, utcnow(), issue_id=None)  # a start after its finish is dropped
    assert marks.waiting() == 2  # the finish and the issue's running mark


def test_only_a_first_delivery_of_a_stage_nobody_started_waits(
    engine: Engine, marks: MarkBuffer
) -> None:
    add_run(engine, 1, "run-1")
    # A redelivered message (no lease: its earlier attempt is dead) claims at once.
    _, behind = begin(engine, marks, "run-1", Stage.SUMMARISE, lease=None)
    assert not behind
    assert marks.waiting() == 0
    assert stage_rows(engine, "run-1")[0].state == "STARTED"
    assert issue_status(engine, 1) == "running"
    # A duplicate in the same process while the first attempt's mark still waits is held.
    add_run(engine, 2, "run-2")
    _, behind = begin(engine, marks, "run-2", Stage.TAG)
    assert behind
    with pytest.raises(StageHeld):
        begin(engine, marks, "run-2", Stage.TAG)
    assert stage_rows(engine, "run-2")[1].state == "STARTED"  # written by then
    # A first delivery of a stage another attempt started a moment ago waits for its lease.
    with pytest.raises(StageHeld):
        begin(engine, marks, "run-1", Stage.SUMMARISE)
    # A stage done: its result goes on, nothing is marked.
    with engine.begin() as connection:
        finish_stage(connection, run_id="run-1", stage=Stage.SUMMARISE, result={"summary": "s"})
    with pytest.raises(StageDone) as done:
        begin(engine, marks, "run-1", Stage.SUMMARISE)
    assert done.value.result == {"summary": "s"}
    assert marks.waiting() == 0


def test_a_stage_of_an_ended_run_does_not_begin(engine: Engine, marks: MarkBuffer) -> None:
    add_run(engine, 1, "run-1")
    with engine.begin() as connection:
        connection.execute(update(Issue).where(Issue.id == 1).values(enrichment_task_id="newer"))
    with pytest.raises(StaleRun, match="superseded by newer"):
        begin(engine, marks, "run-1", Stage.TAG)
    assert marks.waiting() == 0


def tags_of(engine: Engine, issue_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(IssueTag.tag)
                .where(IssueTag.issue_id == issue_id)
                .order_by(IssueTag.position)
            )
        )


def persist_with(engine: Engine, **kwargs: Any) -> bool:
    """persist_result in a transaction of its own."""
    with engine.begin() as connection:
        return persist_result(connection, **kwargs)


def test_persist_replaces_the_tags_once_and_ends_the_run(engine: Engine) -> None:
    add_run(engine, 1, "run-1")
    with engine.begin() as connection:
        connection.execute(
            insert(IssueTag),
            [
                {"issue_id": 1, "tag": "bug", "position": 0},
                {"issue_id": 1, "tag": "ui", "position": 1},
            ],
        )

    def persist(tags: list[str]) -> bool:
        return persist_with(
            engine, run_id="run-1", issue_id=1, summary="sum", tags=tags, fingerprint="f"
        )

    assert persist(["docs", "bug", "docs"])
    assert tags_of(engine, 1) == ["docs", "bug"]
    with engine.connect() as connection:
        run = connection.execute(select(EnrichmentRun).where(EnrichmentRun.id == "run-1")).one()
        issue = connection.execute(select(Issue).where(Issue.id == 1)).one()
    assert (run.state, run.result, run.fingerprint) == (
        "SUCCESS",
        {"ai_summary": "sum", "tags": ["docs", "bug"]},
        "f",
    )
    assert (issue.ai_summary, issue.enrichment_status) == ("sum", "succeeded")
    assert [row.state for row in stage_rows(engine, "run-1")] == ["PENDING", "PENDING", "SUCCESS"]
    assert not persist(["other"])  # a redelivered persist changes nothing
    assert tags_of(engine, 1) == ["docs", "bug"]


def test_persist_of_a_superseded_ended_or_deleted_run_writes_nothing(engine: Engine) -> None:
    add_run(engine, 1, "run-1")
    add_run(engine, 2, "run-2")
    add_run(engine, 3, "run-3")
    with engine.begin() as connection:
        connection.execute(update(Issue).where(Issue.id == 1).values(enrichment_task_id="newer"))
        connection.execute(Issue.__table__.delete().where(Issue.id == 2))
        connection.execute(
            update(EnrichmentRun).where(EnrichmentRun.id == "run-3").values(state="REVOKED")
        )
    cases = [
        ("run-1", 1, "superseded by newer"),
        ("run-2", 2, "issue 2 was deleted"),
        ("run-3", 3, "already ended REVOKED"),
    ]
    for run, issue_id, reason in cases:
        with pytest.raises(StaleRun, match=reason):
            persist_with(engine, run_id=run, issue_id=issue_id, summary="s", tags=["bug"])
        assert tags_of(engine, issue_id) == []
    with engine.connect() as connection:
        states = connection.execute(
            select(EnrichmentRun.state).where(EnrichmentRun.id.in_(["run-1", "run-2"]))
        ).scalars()
        assert set(states) == {"PENDING"}
        assert connection.scalar(select(Issue.enrichment_status).where(Issue.id == 1)) == "pending"
    assert [row.state for row in stage_rows(engine, "run-1")] == ["PENDING"] * 3
