"""The enrichment chain on a real worker, real Redis and real PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import EnrichmentRun, EnrichmentStage, Issue
from app.schemas import IssueCreate
from app.services.issues import create_issue
from pipelines import enrichment
from pipelines.context import WorkerContext, use_context
from pipelines.dispatch import publish_chain, start_enrichment
from pipelines.policies import policies_for
from pipelines.providers.base import PermanentError, TransientError
from pipelines.queues import Stage
from pipelines.stage_task import RUN_VISIBILITY_WAIT
from tests.conftest import BROKER_URL
from tests.support.processes import wait_until


def wait_for_state(api: TestClient, task_id: str, *states: str, timeout: float = 20) -> dict:
    def check() -> dict | None:
        status = api.get(f"/tasks/{task_id}").json()
        return status if status["state"] in states else None

    return wait_until(check, timeout=timeout, what=f"task {task_id} to reach {states}")  # type: ignore[return-value]


class ScriptedProvider:
    """A real provider interface whose behaviour each test scripts."""

    name = "scripted"

    def __init__(self) -> None:
        self.summarise_failures: list[Exception] = []
        self.tag_failures: list[Exception] = []
        self.tag_gate: threading.Event | None = None
        self.tag_entered = threading.Event()
        self.calls: list[str] = []
        self.call_times: dict[str, list[float]] = {"summarise": [], "tag": []}

    def summarise(self, title: str, body: str) -> str:
        self.calls.append("summarise")
        self.call_times["summarise"].append(time.monotonic())
        if self.summarise_failures:
            raise self.summarise_failures.pop(0)
        return f"Summary of {title}"

    def tag(self, title: str, body: str, summary: str) -> list[str]:
        self.calls.append("tag")
        self.call_times["tag"].append(time.monotonic())
        self.tag_entered.set()
        if self.tag_gate is not None:
            assert self.tag_gate.wait(20), "the test never opened the gate"
        if self.tag_failures:
            raise self.tag_failures.pop(0)
        return ["bug", "crash"] if "crash" in title.lower() else ["feature"]


@contextlib.contextmanager
def scripted_context(settings: Settings) -> Iterator[WorkerContext]:
    """The embedded worker's context while the block runs: a scripted provider and small
    backoffs (retries take a fraction of a second)."""
    policies = {
        stage: dataclasses.replace(policy, backoff=0.2, backoff_max=0.4)
        for stage, policy in policies_for(settings).items()
    }
    context = WorkerContext.build(settings, provider=ScriptedProvider(), policies=policies)
    previous = use_context(context)
    try:
        yield context
    finally:
        use_context(previous)
        context.close()


@pytest.fixture
def worker_context(worker_database_url: str) -> Iterator[WorkerContext]:
    with scripted_context(Settings(database_url=worker_database_url)) as context:
        yield context


@pytest.fixture
def provider(worker_context: WorkerContext) -> ScriptedProvider:
    assert isinstance(worker_context.provider, ScriptedProvider)
    return worker_context.provider


def set_policy(context: WorkerContext, stage: Stage, **changes: Any) -> None:
    policies = dict(context.policies)
    policies[stage] = dataclasses.replace(policies[stage], **changes)
    context.policies = policies


def create(api: TestClient, title: str = "Crash on save") -> dict[str, Any]:
    response = api.post("/issues", json={"title": title, "body": "It crashes when saving."})
    assert response.status_code == 201, response.text
    return response.json()


def test_each_next_stage_is_sent_as_a_slim_message_naming_its_parent(
    api: TestClient, provider: ScriptedProvider
) -> None:
    """A stage that succeeds sends the next one itself (``send_next_stage``): the headers a
    worker, Flower and tracing read, the parent and root ids Celery's chain would set, the
    rest of the chain in the body; none of ``apply_async``'s empty headers."""
    from celery.signals import before_task_publish

    sent: list[tuple[dict[str, Any], Any]] = []

    def record(headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
        if headers and headers.get("task", "").startswith("enrichment."):
            sent.append((dict(headers), body))

    before_task_publish.connect(record, weak=False)
    try:
        created = create(api)
        status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    finally:
        before_task_publish.disconnect(record)
    assert status["state"] == "SUCCESS", status
    run_id, issue_id = created["task_id"], created["issue"]["id"]
    ids = [stage["task_id"] for stage in status["stages"]]
    by_id = {headers["id"]: (headers, body) for headers, body in sent}
    for position in (1, 2):
        headers, body = by_id[ids[position]]
        assert set(headers) == {
            "lang", "task", "id", "root_id", "parent_id", "argsrepr", "kwargsrepr"
        }  # fmt: skip
        assert headers["task"] == f"enrichment.{status['stages'][position]['name']}"
        assert (headers["root_id"], headers["parent_id"]) == (run_id, ids[position - 1])
        args, kwargs, embed = body
        assert kwargs == {"run_id": run_id, "issue_id": issue_id}
        [previous] = args
        assert previous["summary"] == "Summary of Crash on save"
        rest = embed.get("chain") or []
        assert [step["options"]["task_id"] for step in reversed(rest)] == ids[position + 1 :]


def test_chain_runs_end_to_end_and_persists(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    assert status["progress"] == {"completed": 3, "total": 3}
    assert [(s["name"], s["queue"], s["state"]) for s in status["stages"]] == [
        ("summarise", "summarise", "SUCCESS"),
        ("tag", "tag", "SUCCESS"),
        ("persist", "persist", "SUCCESS"),
    ]
    assert status["stages"][0]["task_id"] == created["task_id"]
    starts = [s["started_at"] for s in status["stages"]]
    assert starts == sorted(starts), "stages ran out of order"
    assert status["result"] == {"ai_summary": "Summary of Crash on save", "tags": ["bug", "crash"]}
    with Session(worker_engine) as session:
        issue = session.get(Issue, created["issue"]["id"])
        assert issue is not None
        assert issue.ai_summary == "Summary of Crash on save"
        assert issue.tags == ["bug", "crash"]
        assert issue.enrichment_status == "succeeded"
    issue_json = api.get(f"/issues/{created['issue']['id']}").json()
    assert issue_json["enrichment"]["status"] == "succeeded"
    assert issue_json["enrichment"]["enriched_at"] is not None
    # A stage's own task id finds the same run.
    by_stage_id = api.get(f"/tasks/{status['stages'][2]['task_id']}").json()
    assert by_stage_id["task_id"] == created["task_id"]


def test_transient_error_is_retried_and_the_chain_continues(
    api: TestClient, provider: ScriptedProvider
) -> None:
    provider.tag_failures = [TransientError("503 from provider"), TransientError("timeout")]
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    tag_stage = status["stages"][1]
    assert tag_stage["retries"] == 2
    assert tag_stage["state"] == "SUCCESS"
    assert tag_stage["error"] is None
    assert provider.calls.count("tag") == 3
    assert status["stages"][2]["state"] == "SUCCESS"


def test_retries_exhausted_fail_the_run_with_the_reason(
    api: TestClient, provider: ScriptedProvider, worker_context: WorkerContext
) -> None:
    set_policy(worker_context, Stage.SUMMARISE, max_retries=2)
    provider.summarise_failures = [TransientError(f"503 number {n}") for n in range(5)]
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    assert status["state"] == "FAILURE"
    assert provider.calls.count("summarise") == 3
    assert status["stages"][0]["retries"] == 2
    assert status["error"] == ("summarise: TransientError: 503 number 2 (gave up after 2 retries)")
    assert "tag" not in provider.calls


def test_permanent_error_fails_run_and_issue_at_once_and_stops_the_chain(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    provider.tag_failures = [PermanentError("401 Unauthorized: check OPENAI_API_KEY")]
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    assert status["state"] == "FAILURE"
    assert status["error"] == "tag: PermanentError: 401 Unauthorized: check OPENAI_API_KEY"
    assert [s["state"] for s in status["stages"]] == ["SUCCESS", "FAILURE", "REVOKED"]
    assert status["stages"][1]["retries"] == 0
    assert provider.calls.count("tag") == 1
    issue = api.get(f"/issues/{created['issue']['id']}").json()
    assert issue["enrichment"]["status"] == "failed"
    assert issue["enrichment"]["error"] == status["error"]
    assert issue["ai_summary"] is None
    failed = api.get("/tasks", params={"state": "FAILURE"}).json()["items"]
    assert [item["task_id"] for item in failed] == [created["task_id"]]
    # Once the provider is healthy, re-running is one call.
    rerun = api.post(f"/issues/{created['issue']['id']}/enrich").json()
    assert wait_for_state(api, rerun["task_id"], "SUCCESS", "FAILURE")["state"] == "SUCCESS"


def test_edit_mid_run_supersedes_the_old_run(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    provider.tag_gate = threading.Event()
    created = create(api, title="Crash on save")
    assert provider.tag_entered.wait(10), "the old run never reached its tag stage"
    patched = api.patch(f"/issues/{created['issue']['id']}", json={"title": "New feature: export"})
    new_task = patched.json()["enrichment"]["task_id"]
    provider.tag_gate.set()
    new_status = wait_for_state(api, new_task, "SUCCESS", "FAILURE")
    old_status = wait_for_state(api, created["task_id"], "REVOKED", "SUCCESS", "FAILURE")
    assert new_status["state"] == "SUCCESS"
    assert old_status["state"] == "REVOKED"
    assert old_status["error"] == f"superseded by {new_task}"
    issue = api.get(f"/issues/{created['issue']['id']}").json()
    assert issue["ai_summary"] == "Summary of New feature: export"
    assert issue["tags"] == ["feature"]
    assert issue["enrichment"]["task_id"] == new_task


def test_redelivered_persist_changes_nothing(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS")
    with Session(worker_engine) as session:
        before = session.get(Issue, created["issue"]["id"])
        assert before is not None
        snapshot = (before.ai_summary, before.tags, before.updated_at, before.enriched_at)
    # The same persist message again, as Redis would redeliver it.
    persist_id = status["stages"][2]["task_id"]
    result = enrichment.persist.apply_async(
        ({"summary": "other summary", "tags": ["question"]},),
        {"issue_id": created["issue"]["id"], "run_id": created["task_id"]},
        task_id=persist_id,
        ignore_result=False,
    )
    assert result.get(timeout=10) is False
    with Session(worker_engine) as session:
        after = session.get(Issue, created["issue"]["id"])
        assert after is not None
        assert (after.ai_summary, after.tags, after.updated_at, after.enriched_at) == snapshot
        runs = session.scalars(select(EnrichmentRun)).all()
        assert len(runs) == 1


def test_worker_waits_for_a_run_whose_request_is_still_committing(
    api: TestClient,
    provider: ScriptedProvider,
    worker_engine: Engine,
    worker_context: WorkerContext,
) -> None:
    # One retry allowed, and needed: the wait for the commit must not have spent it.
    set_policy(worker_context, Stage.SUMMARISE, max_retries=1)
    provider.summarise_failures = [TransientError("503 once")]
    with Session(worker_engine) as session, session.begin():
        issue = create_issue(session=session, data=IssueCreate(title="Crash on start"))
        run_id = start_enrichment(session=session, issue=issue)
        # The chain is on the broker, the run not committed: the worker must wait for it.
        threading.Event().wait(0.5)
    status = wait_for_state(api, run_id, "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    assert [stage["retries"] for stage in status["stages"]] == [1, 0, 0]


def test_message_of_a_rolled_back_request_is_dropped(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    with Session(worker_engine) as session:
        session.begin()
        issue = create_issue(session=session, data=IssueCreate(title="Never committed"))
        run_id = start_enrichment(session=session, issue=issue)
        session.rollback()
    # The summarise message is consumed and dropped: the queue empties, nothing runs.
    client = redis.Redis.from_url(BROKER_URL)
    wait_until(lambda: client.llen("summarise") == 0, timeout=10, what="the queue to drain")
    threading.Event().wait(RUN_VISIBILITY_WAIT + 1)
    assert provider.calls == []
    assert api.get(f"/tasks/{run_id}").status_code == 404


def test_a_long_retry_after_is_honoured_in_full_across_several_hops(
    api: TestClient, provider: ScriptedProvider, worker_context: WorkerContext
) -> None:
    # One countdown may last at most 1 s here (visibility timeout 7 s, time limit 1 s):
    # a server asking for 2.5 s must be waited for in hops, not cut to 1 s, and the hops
    # must not count as retries.
    set_policy(worker_context, Stage.SUMMARISE, visibility_timeout=7, time_limit=1, backoff_max=0.4)
    assert worker_context.policies[Stage.SUMMARISE].longest_wait == 1
    provider.summarise_failures = [TransientError("429 Too Many Requests", retry_after=2.5)]
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    assert status["stages"][0]["retries"] == 1
    assert provider.calls.count("summarise") == 2
    first, second = provider.call_times["summarise"]
    assert second - first >= 2.5


def test_a_stage_of_a_stale_run_ends_revoked_for_monitors(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    """Flower follows task events: the stage of a superseded run must not stay STARTED.

    The tag stage was running when the run was superseded: it drops its result, says it is
    revoked, and the chain's persist is never sent."""
    from app.celery_app import celery_app

    revoked: list[str] = []
    with celery_app.connection_for_read() as connection:
        receiver = celery_app.events.Receiver(
            connection, handlers={"task-revoked": lambda event: revoked.append(event["uuid"])}
        )
        listener = threading.Thread(target=receiver.capture, kwargs={"wakeup": False})
        listener.start()
        try:
            provider.tag_gate = threading.Event()
            created = create(api, title="Crash on save")
            assert provider.tag_entered.wait(10), "the old run never reached its tag stage"
            api.patch(f"/issues/{created['issue']['id']}", json={"title": "Export to CSV"})
            provider.tag_gate.set()
            old = wait_for_state(api, created["task_id"], "REVOKED", "SUCCESS", "FAILURE")
            assert old["state"] == "REVOKED"
            old_tag = old["stages"][1]["task_id"]
            wait_until(lambda: old_tag in revoked, timeout=10, what="a task-revoked event")
            assert [stage["state"] for stage in old["stages"]] == ["SUCCESS", "REVOKED", "REVOKED"]
        finally:
            receiver.should_stop = True
            listener.join(timeout=10)


@pytest.fixture
def finished_tasks() -> Iterator[list[tuple[str, str, Any]]]:
    """(task id, end state, return value) of every stage task the worker ran to its end
    (``SUCCESS``, or ``IGNORED``: dropped); one sent back to wait (``RETRY``) is not in it."""
    from celery.signals import task_postrun

    finished: list[tuple[str, str, Any]] = []

    def record(task_id: str, retval: Any, state: str, **_: Any) -> None:
        if state != "RETRY":
            finished.append((task_id, state, retval))

    task_postrun.connect(record, weak=False)
    yield finished
    task_postrun.disconnect(record)


def stored_results(engine: Engine, run_id: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(EnrichmentStage.result)
                .where(EnrichmentStage.run_id == run_id)
                .order_by(EnrichmentStage.position)
            ).scalars()
        )


def test_each_stage_keeps_its_result_for_a_resume(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    created = create(api)
    wait_for_state(api, created["task_id"], "SUCCESS")
    summarise_result, tag_result, persist_result = stored_results(worker_engine, created["task_id"])
    assert summarise_result["summary"] == "Summary of Crash on save"
    assert tag_result["tags"] == ["bug", "crash"]
    assert persist_result is None  # the run's own result is the persisted one


def test_a_late_duplicate_runs_no_stage_twice_and_calls_the_provider_once_per_stage(
    api: TestClient,
    provider: ScriptedProvider,
    worker_engine: Engine,
    worker_context: WorkerContext,
    monkeypatch: pytest.MonkeyPatch,
    finished_tasks: list[tuple[str, str, Any]],
) -> None:
    """The chain's first message arrives again (a Redis back from an old snapshot) while the
    original is at tag: the duplicate summarise passes the stored result on, the duplicate
    tag waits while the original's attempt may be alive, then finds it done; persist
    writes once."""
    from pipelines import deliveries

    # An attempt's lease: its time limit and LEASE_MARGIN, 4 s here: longer than the
    # duplicate summarise takes to arrive and finish while the original tag is held, even
    # on a loaded machine (with 2 s the original's lease ran out first in one CI run, and
    # the duplicate tag rightly took the stage over).
    set_policy(worker_context, Stage.TAG, time_limit=3)
    monkeypatch.setattr(deliveries, "LEASE_MARGIN", 1.0)
    provider.tag_gate = threading.Event()
    created = create(api)
    assert provider.tag_entered.wait(10), "the run never reached its tag stage"
    run_id, issue_id = created["task_id"], created["issue"]["id"]
    task_ids = [stage["task_id"] for stage in api.get(f"/tasks/{run_id}").json()["stages"]]
    publish_chain(issue_id, task_ids)

    def ends(task_id: str) -> list[tuple[str, Any]]:
        return [
            (state, None if state == "IGNORED" else retval)
            for done, state, retval in finished_tasks
            if done == task_id
        ]

    wait_until(lambda: len(ends(task_ids[0])) == 2, timeout=10, what="the duplicate summarise")
    provider.tag_gate.set()
    status = wait_for_state(api, run_id, "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    wait_until(lambda: len(ends(task_ids[1])) == 2, timeout=30, what="the duplicate tag")
    assert provider.calls == ["summarise", "tag"]
    summarise_result, tag_result, _ = stored_results(worker_engine, run_id)
    # The duplicate summarise passed the stored result on; the duplicate tag waited for the
    # original's lease, then found the run done and dropped itself: persist ran once.
    assert ends(task_ids[0]) == [("SUCCESS", summarise_result)] * 2
    assert ends(task_ids[1]) == [("SUCCESS", tag_result), ("IGNORED", None)]
    assert ends(task_ids[2]) == [("SUCCESS", True)]
    issue = api.get(f"/issues/{issue_id}").json()
    assert issue["tags"] == ["bug", "crash"]


def test_a_message_the_broker_gave_back_takes_over_the_stage_at_once(
    api: TestClient, provider: ScriptedProvider, worker_engine: Engine
) -> None:
    """A redelivered message's earlier holder died (acks_late + reject_on_worker_lost): it
    must run the stage, however recently that holder started it."""
    provider.tag_gate = threading.Event()
    created = create(api)
    assert provider.tag_entered.wait(10), "the run never reached its tag stage"
    provider.tag_entered.clear()
    run_id, issue_id = created["task_id"], created["issue"]["id"]
    tag_id = api.get(f"/tasks/{run_id}").json()["stages"][1]["task_id"]
    summarise_result = stored_results(worker_engine, run_id)[0]
    enrichment.tag.apply_async(
        (summarise_result,),
        {"run_id": run_id, "issue_id": issue_id},
        task_id=tag_id,
        headers={"redelivered": True},
    )
    assert provider.tag_entered.wait(10), "the redelivered tag did not take the stage over"
    provider.tag_gate.set()
    status = wait_for_state(api, run_id, "SUCCESS", "FAILURE")
    assert status["state"] == "SUCCESS", status
    assert provider.calls.count("tag") == 2


def test_a_stage_back_from_a_rate_limit_wait_is_not_held_by_its_own_attempt(
    api: TestClient, provider: ScriptedProvider, worker_database_url: str
) -> None:
    """A stage that waited for PROVIDER_RATE_LIMIT in its queue left its row STARTED: when
    it comes back, that attempt is its own, not a live duplicate's."""
    settings = Settings(database_url=worker_database_url, provider_rate_limit="1/s")
    context = WorkerContext.build(settings, provider=provider)
    previous = use_context(context)
    try:
        created = [create(api, title=f"Crash {n}") for n in range(3)]
        for item in created:
            # Without the mark it would wait out a lease of SUMMARISE_TIME_LIMIT + 10 s.
            status = wait_for_state(api, item["task_id"], "SUCCESS", "FAILURE", timeout=20)
            assert status["state"] == "SUCCESS", (status["error"], status["stages"])
    finally:
        use_context(previous)
        context.close()
    assert provider.calls.count("summarise") == 3
