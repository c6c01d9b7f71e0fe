"""Webhooks on a real receiver (a threaded ``http.server``), the embedded worker, real Redis
and PostgreSQL; the outbox rows on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import WebhookDelivery, utcnow
from app.schemas import IssueCreate
from app.services.issues import create_issue
from app.services.runs import record_run
from app.services.webhooks import RunEvents, list_deliveries, record_delivery
from app.states import DeliveryState, WebhookEvent
from pipelines import enrichment
from pipelines.bookkeeping import fail_run, persist_result, stop_run
from pipelines.context import WorkerContext
from pipelines.dispatch import stage_specs
from pipelines.providers.base import PermanentError
from pipelines.queues import Stage
from pipelines.webhooks import send_undispatched
from tests.integration.test_pipeline import (
    ScriptedProvider,
    create,
    scripted_context,
    wait_for_state,
)
from tests.support.processes import ROOT, wait_until
from tests.support.receiver import Answer, Receiver

SECRET = "a webhook secret"


def readme_verify() -> Callable[[bytes, str | None, str], bool]:
    """The receiver's check exactly as README.md shows it (section "Webhooks")."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Verifying the signature.**") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, "README.md shows no verification code"
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    verify: Callable[[bytes, str | None, str], bool] = namespace["verify"]
    return verify


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def webhook_settings(database_url: str, url: str, **changes: Any) -> Settings:
    return Settings(
        database_url=database_url,
        notify_webhook_url=url,
        notify_webhook_secret=SECRET,
        notify_retry_backoff=0.1,
        notify_retry_backoff_max=0.2,
        notify_timeout=5,
        **changes,
    )


@pytest.fixture
def worker_context(worker_database_url: str, receiver: Receiver) -> Iterator[WorkerContext]:
    """The embedded worker with the webhook set up, a scripted provider, short backoffs."""
    settings = webhook_settings(worker_database_url, receiver.url, notify_max_retries=2)
    with scripted_context(settings) as context:
        yield context


@pytest.fixture
def provider(worker_context: WorkerContext) -> ScriptedProvider:
    assert isinstance(worker_context.provider, ScriptedProvider)
    return worker_context.provider


@pytest.fixture
def hooked_api(
    worker_engine: Engine, worker_database_url: str, receiver: Receiver
) -> Iterator[TestClient]:
    """The API with the same webhook set up (it sends issue.created)."""
    app = create_app(webhook_settings(worker_database_url, receiver.url), sweep_outbox=False)
    with TestClient(app) as client:
        yield client


def deliveries(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/webhooks/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_for_delivery(api: TestClient, delivery_id: str, *states: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        delivery: dict[str, Any] = api.get(f"/webhooks/deliveries/{delivery_id}").json()
        return delivery if delivery["state"] in states else None

    return wait_until(check, timeout=20, what=f"delivery {delivery_id} to be {states}")  # type: ignore[return-value]


def test_events_are_signed_and_verify_as_the_readme_shows(
    hooked_api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    verify = readme_verify()
    created = create(hooked_api)
    wait_for_state(hooked_api, created["task_id"], "SUCCESS")
    [made] = receiver.wait_for("issue.created")
    [enriched] = receiver.wait_for("issue.enriched")
    for request in (made, enriched):
        assert verify(request.body, request.headers["X-Issueflow-Signature-256"], SECRET)
        assert not verify(request.body, request.headers["X-Issueflow-Signature-256"], "wrong")
        assert not verify(request.body + b" ", request.headers["X-Issueflow-Signature-256"], SECRET)
        assert not verify(request.body, None, SECRET)
        assert request.headers["Content-Type"] == "application/json"
    assert made.json == {"event": "issue.created", "issue": created["issue"]}
    assert enriched.json["issue"] == {
        "id": created["issue"]["id"],
        "title": "Crash on save",
        "ai_summary": "Summary of Crash on save",
        "tags": ["bug", "crash"],
    }
    assert enriched.json["run"]["task_id"] == created["task_id"]
    assert enriched.json["run"]["state"] == "SUCCESS"
    [row] = deliveries(hooked_api)
    assert row["id"] == enriched.delivery
    assert row["event"] == "issue.enriched"
    assert row["payload"] == enriched.json
    wait_for_delivery(hooked_api, row["id"], "delivered")


def test_the_delivery_id_stays_the_same_across_a_retry_after_a_503(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    receiver.script = [Answer(503, {"Retry-After": "0"}, b"try later")]
    created = create(api)
    first, second = receiver.wait_for("issue.enriched", 2)
    assert first.delivery == second.delivery
    assert first.body == second.body
    assert first.headers["X-Issueflow-Signature-256"] == second.headers["X-Issueflow-Signature-256"]
    delivery = wait_for_delivery(api, first.delivery, "delivered")
    assert delivery["attempts"] == 2
    assert delivery["last_status"] == 204
    assert delivery["last_error"] is None
    assert delivery["run_id"] == created["task_id"]


def test_one_issue_enriched_per_run_under_a_redelivered_persist(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver, worker_engine: Engine
) -> None:
    created = create(api)
    status = wait_for_state(api, created["task_id"], "SUCCESS")
    [event] = receiver.wait_for("issue.enriched")
    wait_for_delivery(api, event.delivery, "delivered")
    # The same persist message again, as Redis would redeliver it.
    again = enrichment.persist.apply_async(
        ({"summary": "Summary of Crash on save", "tags": ["bug", "crash"]},),
        {"issue_id": created["issue"]["id"], "run_id": created["task_id"]},
        task_id=status["stages"][2]["task_id"],
        ignore_result=False,
    )
    assert again.get(timeout=10) is False
    time.sleep(1)  # what the redelivery could have published has been sent by now
    assert len(receiver.events("issue.enriched")) == 1
    with Session(worker_engine) as session:
        count = session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert count == 1


def test_a_superseded_run_sends_nothing(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    provider.tag_gate = threading.Event()
    created = create(api, title="Crash on save")
    assert provider.tag_entered.wait(10), "the old run never reached its tag stage"
    patched = api.patch(f"/issues/{created['issue']['id']}", json={"title": "New feature: export"})
    new_task = patched.json()["enrichment"]["task_id"]
    provider.tag_gate.set()
    wait_for_state(api, new_task, "SUCCESS")
    assert wait_for_state(api, created["task_id"], "REVOKED")["state"] == "REVOKED"
    [event] = receiver.wait_for("issue.enriched")
    time.sleep(1)  # the old run's stages have stopped; nothing more comes
    assert [r.json["run"]["task_id"] for r in receiver.received] == [new_task]
    assert event.json["issue"]["title"] == "New feature: export"
    assert [d["run_id"] for d in deliveries(api)] == [new_task]


def test_run_failed_names_the_stage_and_the_reason(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    provider.tag_failures = [PermanentError("400 from provider: context too long")]
    created = create(api)
    wait_for_state(api, created["task_id"], "FAILURE")
    [event] = receiver.wait_for("run.failed")
    assert event.json["issue"] == {"id": created["issue"]["id"]}
    run = event.json["run"]
    assert run["task_id"] == created["task_id"]
    assert run["state"] == "FAILURE"
    assert run["stage"] == "tag"
    assert run["reason"] == "PermanentError: 400 from provider: context too long"
    assert receiver.events("issue.enriched") == []


def test_a_redirect_to_another_host_is_not_followed(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    elsewhere = Receiver()
    try:
        receiver.default = Answer(
            307, {"Location": elsewhere.url.replace("127.0.0.1", "localhost")}
        )
        create(api)
        [event] = receiver.wait_for("issue.enriched")
        delivery = wait_for_delivery(api, event.delivery, "failed")
        time.sleep(0.5)
        assert elsewhere.received == []
        assert len(receiver.events("issue.enriched")) == 1, "a redirect is not retried either"
        assert delivery["last_status"] == 307
        assert "redirect: not followed" in delivery["last_error"]
    finally:
        elsewhere.close()


def test_failed_deliveries_are_listed_and_can_be_sent_again(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver
) -> None:
    receiver.default = Answer(500, body=b"receiver broken")
    created = create(api)
    failed = receiver.wait_for("issue.enriched", 3)  # the first attempt and 2 retries
    delivery_id = failed[0].delivery
    delivery = wait_for_delivery(api, delivery_id, "failed")
    assert {r.delivery for r in failed} == {delivery_id}
    assert delivery["attempts"] == 3
    assert delivery["last_status"] == 500
    assert "answered 500: receiver broken (gave up after 2 retries)" in delivery["last_error"]
    assert [d["id"] for d in deliveries(api, state="failed")] == [delivery_id]
    assert deliveries(api, state="delivered") == []

    receiver.default = Answer(204)
    response = api.post(f"/webhooks/deliveries/{delivery_id}/redeliver")
    assert response.status_code == 202, response.text
    assert response.json()["id"] == delivery_id
    wait_for_delivery(api, delivery_id, "delivered")
    resent = receiver.events("issue.enriched")[-1]
    assert resent.delivery == delivery_id
    assert resent.body == failed[0].body
    assert deliveries(api, state="failed") == []
    assert deliveries(api, state="delivered")[0]["run_id"] == created["task_id"]
    assert api.post("/webhooks/deliveries/nope/redeliver").status_code == 404


def test_a_delivery_still_being_sent_is_not_sent_again(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver, worker_engine: Engine
) -> None:
    created = create(api)
    [event] = receiver.wait_for("issue.enriched")
    wait_for_delivery(api, event.delivery, "delivered")
    with worker_engine.begin() as connection:
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == event.delivery)
            .values(state=DeliveryState.PENDING)
        )
    response = api.post(f"/webhooks/deliveries/{event.delivery}/redeliver")
    assert response.status_code == 409
    assert "still being sent" in response.json()["detail"]
    assert created["task_id"] == api.get(f"/webhooks/deliveries/{event.delivery}").json()["run_id"]


def test_the_outbox_sweep_sends_a_delivery_no_message_carries(
    api: TestClient, provider: ScriptedProvider, receiver: Receiver, worker_engine: Engine
) -> None:
    created = create(api)
    wait_for_state(api, created["task_id"], "SUCCESS")
    [enriched] = receiver.wait_for("issue.enriched")
    wait_for_delivery(api, enriched.delivery, "delivered")
    # A run.failed recorded while the broker was down: no message carries it.
    with worker_engine.begin() as connection:
        delivery_id = record_delivery(
            connection,
            run_id=created["task_id"],
            event=WebhookEvent.RUN_FAILED,
            payload={"event": "run.failed", "run": {"task_id": created["task_id"]}},
        )
    assert delivery_id is not None

    def sweep() -> int:
        return send_undispatched(worker_engine, lost_after=600)

    assert sweep() == 0, "a fresh one is left to its publisher"
    age(worker_engine, delivery_id, minutes=1)
    assert sweep() == 1
    [event] = receiver.wait_for("run.failed")
    assert event.delivery == delivery_id
    wait_for_delivery(api, delivery_id, "delivered")
    assert sweep() == 0

    # A pending delivery whose message was lost: dispatched, but idle for too long.
    with worker_engine.begin() as connection:
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(state=DeliveryState.PENDING, dispatched=True)
        )
    age(worker_engine, delivery_id, minutes=5)
    assert sweep() == 0, "a message may still carry it"
    age(worker_engine, delivery_id, minutes=11)
    assert sweep() == 1
    assert [r.delivery for r in receiver.wait_for("run.failed", 2)] == [delivery_id] * 2
    wait_for_delivery(api, delivery_id, "delivered")


def age(engine: Engine, delivery_id: str, *, minutes: float) -> None:
    """Make the delivery look untouched for ``minutes``."""
    with engine.begin() as connection:
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(updated_at=utcnow() - timedelta(minutes=minutes))
        )


# --- the outbox rows, on both databases ------------------------------------------------------


def _issue_with_run(session: Session) -> tuple[int, str]:
    issue = create_issue(session=session, data=IssueCreate(title="Crash on save"))
    run_id = f"run-{time.monotonic_ns()}"
    ids = [run_id, f"{run_id}-tag", f"{run_id}-persist"]
    record_run(session=session, issue=issue, run_id=run_id, stages=stage_specs(ids))
    session.flush()
    return issue.id, run_id


def test_persist_records_issue_enriched_once(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, session.begin():
        issue_id, run_id = _issue_with_run(session)
        connection = session.connection()
        events = RunEvents()
        args = {"run_id": run_id, "issue_id": issue_id, "summary": "S", "tags": ["crash"]}
        assert persist_result(connection, **args, events=events) is True
        assert persist_result(connection, **args, events=events) is False
        assert len(events.recorded) == 1
        # Even a second insert of the same run and event records nothing.
        assert (
            record_delivery(
                connection, run_id=run_id, event=WebhookEvent.ISSUE_ENRICHED, payload={}
            )
            is None
        )
        rows = session.scalars(select(WebhookDelivery)).all()
        assert [(r.id, r.event, r.state, r.dispatched) for r in rows] == [
            (events.recorded[0], "issue.enriched", DeliveryState.PENDING, False)
        ]
        assert rows[0].payload["issue"] == {
            "id": issue_id,
            "title": "Crash on save",
            "ai_summary": "S",
            "tags": ["crash"],
        }


def test_fail_run_records_run_failed_and_a_revoked_run_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        issue_id, run_id = _issue_with_run(session)
        connection = session.connection()
        events = RunEvents()
        assert fail_run(connection, run_id=run_id, stage=Stage.TAG, error="boom", events=events)
        assert not fail_run(connection, run_id=run_id, stage=Stage.TAG, error="x", events=events)
        [row] = session.scalars(select(WebhookDelivery)).all()
        assert row.event == "run.failed"
        assert row.payload["run"]["stage"] == "tag"
        assert row.payload["run"]["reason"] == "boom"
        assert row.payload["issue"] == {"id": issue_id}

        _, revoked = _issue_with_run(session)
        stop_run(connection, run_id=revoked, reason="cancelled")
        # A stage that meets a revoked run fails nothing, and so records nothing.
        assert not fail_run(connection, run_id=revoked, stage=Stage.TAG, error="x", events=events)
        assert events.recorded == [row.id]


def test_deliveries_are_listed_newest_first_page_by_page(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        recorded = []
        for _ in range(3):
            _, run_id = _issue_with_run(session)
            payload = {"event": "run.failed"}
            connection = session.connection()
            recorded.append(
                record_delivery(
                    connection, run_id=run_id, event=WebhookEvent.RUN_FAILED, payload=payload
                )
            )
            time.sleep(0.002)  # distinct created_at, so "newest first" is one order
        first, cursor = list_deliveries(session=session, limit=2)
        assert cursor is not None
        second, last = list_deliveries(session=session, limit=2, cursor=cursor)
        assert last is None
        assert [d.id for d in [*first, *second]] == recorded[::-1]
        assert list_deliveries(session=session, limit=5, state=DeliveryState.FAILED) == ([], None)


def test_without_a_webhook_nothing_is_recorded(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, session.begin():
        issue_id, run_id = _issue_with_run(session)
        connection = session.connection()
        persist_result(connection, run_id=run_id, issue_id=issue_id, summary="S", tags=[])
        assert session.scalars(select(WebhookDelivery)).all() == []


def test_redeliver_needs_the_api_key(session_factory: sessionmaker[Session]) -> None:
    app = create_app(Settings(database_url="sqlite://", api_keys="k1"), sweep_outbox=False)  # type: ignore[arg-type]
    app.state.session_factory = session_factory
    with TestClient(app) as client:
        assert client.post("/webhooks/deliveries/x/redeliver").status_code == 401
        response = client.post(
            "/webhooks/deliveries/x/redeliver", headers={"Authorization": "Bearer k1"}
        )
        assert response.status_code == 404
        assert client.get("/webhooks/deliveries?state=failed").json() == {
            "items": [],
            "next_cursor": None,
        }
        assert client.get("/webhooks/deliveries?state=lost").status_code == 422
        assert client.get("/webhooks/deliveries?cursor=garbage").status_code == 400
