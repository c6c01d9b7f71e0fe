"""POST /tasks/<id>/cancel on a real worker: wherever the chain is, it stops, and the issue
keeps the enrichment it had."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import task_postrun, task_prerun
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from pipelines import enrichment
from pipelines.context import WorkerContext
from pipelines.providers.base import TransientError
from pipelines.queues import Stage
from pipelines.stopwatch import StopWatch
from tests.conftest import BROKER_URL
from tests.integration import test_pipeline
from tests.integration.test_pipeline import ScriptedProvider, create, set_policy, wait_for_state
from tests.sse import Event, parse
from tests.support.processes import wait_until

worker_context = test_pipeline.worker_context
provider = test_pipeline.provider


class TaskLog:
    """What the embedded worker ran: (task id, final state of the attempt), in order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on_prerun(self, task_id: str, **_: Any) -> None:
        with self._lock:
            self.started.append(task_id)

    def on_postrun(self, task_id: str, state: str | None = None, **_: Any) -> None:
        with self._lock:
            self.ended.append((task_id, str(state)))

    def wait_ended(self, task_id: str, *, not_state: str = "RETRY", timeout: float = 15) -> str:
        """The state of the first attempt of ``task_id`` that ended other than ``not_state``."""

        def check() -> str | None:
            with self._lock:
                return next((s for t, s in self.ended if t == task_id and s != not_state), None)

        return wait_until(check, timeout=timeout, what=f"task {task_id} to end")  # type: ignore[return-value]


@pytest.fixture
def tasks() -> Iterator[TaskLog]:
    log = TaskLog()
    task_prerun.connect(log.on_prerun, weak=False)
    task_postrun.connect(log.on_postrun, weak=False)
    yield log
    task_prerun.disconnect(log.on_prerun)
    task_postrun.disconnect(log.on_postrun)


def cancel(api: TestClient, task_id: str, expected: int = 202) -> dict[str, Any]:
    response = api.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == expected, response.text
    return response.json()  # type: ignore[no-any-return]


def test_cancel_while_a_stage_runs_drops_its_result_and_never_runs_the_rest(
    api: TestClient, provider: ScriptedProvider, tasks: TaskLog
) -> None:
    provider.tag_gate = threading.Event()
    created = create(api)
    task_id, issue_id = created["task_id"], created["issue"]["id"]
    assert provider.tag_entered.wait(10), "the tag stage never started"

    status = cancel(api, task_id)
    assert status["state"] == "REVOKED"
    assert status["error"] == "cancelled"
    assert [s["state"] for s in status["stages"]] == ["SUCCESS", "REVOKED", "REVOKED"]
    issue = api.get(f"/issues/{issue_id}").json()
    assert issue["enrichment"]["status"] == "failed"
    assert issue["enrichment"]["error"].startswith("cancelled")

    provider.tag_gate.set()  # the provider answers after all: the answer is dropped
    tag_id, persist_id = status["stages"][1]["task_id"], status["stages"][2]["task_id"]
    assert tasks.wait_ended(tag_id) == "IGNORED"
    assert persist_id not in tasks.started
    assert api.get(f"/tasks/{task_id}").json() == status
    issue = api.get(f"/issues/{issue_id}").json()
    assert issue["ai_summary"] is None
    assert issue["tags"] == []

    # Idempotent: 200 with the same status; a late client's event stream ends REVOKED.
    assert cancel(api, task_id, expected=200) == status
    with api.stream("GET", f"/tasks/{task_id}/events") as response:
        events = list(parse(response.iter_lines(), deadline=time.monotonic() + 30))
    assert [e.data for e in events if isinstance(e, Event)] == [status]


def test_a_stage_not_started_yet_never_runs(
    api: TestClient, provider: ScriptedProvider, worker_context: WorkerContext, tasks: TaskLog
) -> None:
    # summarise fails once and waits 0.5-1 s for its retry: it is queued when cancelled.
    set_policy(worker_context, Stage.SUMMARISE, backoff=1.0, backoff_max=1.0)
    provider.summarise_failures = [TransientError("503 from provider")]
    created = create(api)
    wait_for_state(api, created["task_id"], "RETRY")
    status = cancel(api, created["task_id"])
    assert [s["state"] for s in status["stages"]] == ["REVOKED", "REVOKED", "REVOKED"]
    # The retry is delivered, finds its run ended, and stops before calling anyone.
    assert tasks.wait_ended(created["task_id"]) == "IGNORED"
    assert provider.calls == ["summarise"]
    assert api.get(f"/tasks/{created['task_id']}").json() == status


def test_a_stage_waiting_on_its_provider_is_stopped(
    api: TestClient, provider: ScriptedProvider, worker_context: WorkerContext, tasks: TaskLog
) -> None:
    # The stopwatch polls the database only every minute: the stop comes through Redis.
    watch = StopWatch(BROKER_URL, worker_context.settings.redis_key_prefix, poll=60)
    worker_context.stopwatch = watch
    assert watch.wait_subscribed(10)
    provider.tag_gate = threading.Event()
    try:
        created = create(api)
        assert provider.tag_entered.wait(10), "the tag stage never started"
        status = cancel(api, created["task_id"])
        # The stage gives up its slot while the provider still has not answered.
        assert tasks.wait_ended(status["stages"][1]["task_id"]) == "IGNORED"
        assert not provider.tag_gate.is_set()
        assert status["stages"][2]["task_id"] not in tasks.started
    finally:
        provider.tag_gate.set()


def test_a_cancelled_rerun_leaves_the_issue_with_its_previous_enrichment(
    api: TestClient, provider: ScriptedProvider, tasks: TaskLog
) -> None:
    created = create(api, title="Crash on save")
    first = wait_for_state(api, created["task_id"], "SUCCESS", "FAILURE")
    issue_id = created["issue"]["id"]
    before = api.get(f"/issues/{issue_id}").json()
    assert before["enrichment"]["status"] == "succeeded"

    provider.tag_entered.clear()
    provider.tag_gate = threading.Event()
    # force: the text is unchanged, and an unforced re-run would reuse the first result.
    rerun = api.post(f"/issues/{issue_id}/enrich", params={"force": "true"}).json()
    assert provider.tag_entered.wait(10)
    status = cancel(api, rerun["task_id"])
    provider.tag_gate.set()
    assert tasks.wait_ended(status["stages"][1]["task_id"]) == "IGNORED"

    after = api.get(f"/issues/{issue_id}").json()
    assert after["enrichment"] == before["enrichment"]  # succeeded, first run's id, no error
    assert after["enrichment"]["task_id"] == first["task_id"]
    assert (after["ai_summary"], after["tags"]) == (before["ai_summary"], before["tags"])
    runs = api.get("/tasks", params={"state": "REVOKED"}).json()["items"]
    assert [(r["task_id"], r["error"]) for r in runs] == [(rerun["task_id"], "cancelled")]


def test_persist_of_a_cancelled_run_never_writes(
    api: TestClient, provider: ScriptedProvider
) -> None:
    provider.tag_gate = threading.Event()
    created = create(api)
    assert provider.tag_entered.wait(10)
    cancel(api, created["task_id"])
    provider.tag_gate.set()
    # Even a persist message that got through (sent before the cancel) changes nothing.
    result = enrichment.persist.apply(
        args=[{"summary": "Written after all", "tags": ["bug"]}],
        kwargs={"run_id": created["task_id"], "issue_id": created["issue"]["id"]},
    )
    assert result.state == "IGNORED"
    issue = api.get(f"/issues/{created['issue']['id']}").json()
    assert issue["ai_summary"] is None
    assert issue["tags"] == []


def test_cancel_refuses_an_ended_run_and_an_unknown_one(
    api: TestClient, provider: ScriptedProvider
) -> None:
    created = create(api)
    wait_for_state(api, created["task_id"], "SUCCESS")
    response = api.post(f"/tasks/{created['task_id']}/cancel")
    assert response.status_code == 409
    assert response.json() == {"detail": f"run {created['task_id']} already ended SUCCESS"}
    assert api.get(f"/tasks/{created['task_id']}").json()["state"] == "SUCCESS"
    missing = api.post("/tasks/no-such-task/cancel")
    assert missing.status_code == 404


def test_cancel_is_a_write_and_needs_the_key(
    worker_database_url: str, worker_engine: object, provider: ScriptedProvider
) -> None:
    settings = Settings(database_url=worker_database_url, api_keys="secret-key")  # type: ignore[arg-type]
    with TestClient(create_app(settings, sweep_outbox=False)) as locked:
        provider.tag_gate = threading.Event()
        try:
            created = locked.post(
                "/issues", json={"title": "Crash"}, headers={"Authorization": "Bearer secret-key"}
            ).json()
            assert locked.post(f"/tasks/{created['task_id']}/cancel").status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (
                locked.post(f"/tasks/{created['task_id']}/cancel", headers=wrong).status_code == 403
            )
            right = {"Authorization": "Bearer secret-key"}
            ok = locked.post(f"/tasks/{created['task_id']}/cancel", headers=right)
            assert ok.status_code == 202
            assert ok.json()["state"] == "REVOKED"
        finally:
            provider.tag_gate.set()
