"""Webhooks with real processes: the API, one worker per stage and the ``notify`` worker,
a redis-server and a SQLite file of the test's own, and a real receiver in the test."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StackFactory
from tests.integration.test_webhooks import readme_verify
from tests.support.processes import wait_until
from tests.support.receiver import Answer, Receiver

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret"
TOKEN = "t0ken-in-the-path"


def test_events_reach_the_receiver_signed_through_the_notify_worker(
    make_stack: StackFactory,
) -> None:
    receiver = Receiver()
    try:
        url = f"http://hook:pa55word@127.0.0.1:{receiver.port}/hooks/{TOKEN}?key={TOKEN}"
        stack = make_stack(
            env={
                "NOTIFY_WEBHOOK_URL": url,
                "NOTIFY_WEBHOOK_SECRET": SECRET,
                "NOTIFY_RETRY_BACKOFF": "0.2",
                "NOTIFY_RETRY_BACKOFF_MAX": "0.5",
                "NOTIFY_TIME_LIMIT": "20",
            }
        )
        stack.api()
        stack.stage_workers()
        stack.worker("notify", "worker-notify")
        # The receiver is down for the first attempt: the notify worker retries.
        receiver.scripts["issue.enriched"] = [Answer(503, {"Retry-After": "0"})]

        created = stack.create("App crashes when saving a file", "Stack trace attached.")
        stack.wait_task(created["task_id"], "SUCCESS", timeout=60)
        first, second = receiver.wait_for("issue.enriched", 2, timeout=30)
        [made] = receiver.wait_for("issue.created")

        verify = readme_verify()
        for request in (made, first, second):
            assert verify(request.body, request.headers["X-Issueflow-Signature-256"], SECRET)
            assert request.path == f"/hooks/{TOKEN}?key={TOKEN}"
        assert first.delivery == second.delivery
        assert second.json["run"]["task_id"] == created["task_id"]
        assert second.json["issue"]["id"] == created["issue"]["id"]
        assert made.json["issue"] == created["issue"]

        def delivered() -> bool:
            response = stack.http.get(f"{stack.base}/webhooks/deliveries/{first.delivery}")
            return response.json()["state"] == "delivered"

        wait_until(delivered, timeout=20, what="the delivery to be recorded delivered")
        # Sent by the notify worker only, and no log shows the URL's secrets.
        mark = "Task webhooks.deliver["
        logs = {**stack.worker_logs(), "api": stack.log("api")}
        assert logs["worker-notify"].count(mark) >= 2, logs["worker-notify"][-2000:]
        assert [name for name, text in logs.items() if mark in text] == ["worker-notify"]
        leaked = [name for name, text in logs.items() if TOKEN in text or "pa55word" in text]
        assert not leaked, f"the webhook URL's secrets are in {leaked}"
    finally:
        receiver.close()
