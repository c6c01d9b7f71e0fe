"""The pipeline seed, verified with real processes: the API, one ``celery worker`` per queue,
a redis-server of the test's own (or a RabbitMQ vhost of its own) and a SQLite file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.fake_llm import FakeLLM
from tests.e2e.stack import FINISHED, QUEUES
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

BROKERS = ["redis", pytest.param("amqp", id="rabbitmq")]


@pytest.mark.parametrize("broker", BROKERS)
def test_each_stage_runs_on_the_worker_of_its_queue(make_stack: StackFactory, broker: str) -> None:
    stack = make_stack(broker=broker)
    stack.api()
    stack.stage_workers()

    created = stack.create(
        "App crashes when saving a file", "Clicking save crashes the app with a stack trace."
    )
    task_id = created["task_id"]
    assert created["status_url"] == f"/tasks/{task_id}"
    status = stack.wait_task(task_id, "SUCCESS", timeout=60)

    assert status["progress"] == {"completed": 3, "total": 3}
    assert [s["name"] for s in status["stages"]] == list(QUEUES)
    assert all(s["state"] == "SUCCESS" for s in status["stages"])
    assert status["stages"][0]["task_id"] == task_id  # the root id is summarise's
    issue = stack.issue(created["issue"]["id"])
    assert issue["ai_summary"], issue
    assert issue["tags"], issue
    assert issue["tags"][0] in ("bug", "feature", "question"), issue
    assert issue["enrichment"]["status"] == "succeeded"
    assert issue["enrichment"]["task_id"] == task_id
    assert status["result"] == {"ai_summary": issue["ai_summary"], "tags": issue["tags"]}

    # A worker logs "succeeded" after the task returned, a moment after its commit.
    persist = status["stages"][2]
    stack.group.wait_for_log(
        "worker-persist", f"Task enrichment.persist[{persist['task_id']}] succeeded", timeout=10
    )
    logs = stack.worker_logs()
    assert set(logs) == {f"worker-{q}" for q in QUEUES}
    for stage in status["stages"]:
        mark = f"enrichment.{stage['name']}[{stage['task_id']}]"
        own = f"worker-{stage['queue']}"
        assert f"Task {mark} received" in logs[own], f"{mark} not received by {own}"
        assert f"Task {mark} succeeded" in logs[own], f"{mark} did not succeed on {own}"
        for other, text in logs.items():
            if other != own:
                assert mark not in text, f"{mark} ran on {other}, not only on {own}"


def _tag_stage(status: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in status["stages"] if s["name"] == "tag")


def test_transient_tag_failure_is_retried_with_a_growing_count_then_succeeds(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = make_stack(
        llm=fake,
        env={
            "TAG_MAX_RETRIES": "5",
            "TAG_RETRY_BACKOFF": "0.5",
            "TAG_RETRY_BACKOFF_MAX": "2",
        },
    )
    stack.api()
    stack.stage_workers()
    fake.set_mode("503", op="tag", title="flaky")  # until the test says the server recovered
    fake.set_mode("429", op="tag", title="rate limited", times=1, retry_after=2)

    flaky = stack.create("flaky")["task_id"]
    limited = stack.create("rate limited")["task_id"]

    # While the provider fails, GET /tasks says RETRY with a retry count that grows.
    seen: list[int] = []

    def two_retry_counts() -> bool:
        status = stack.task(flaky)
        assert status["state"] not in FINISHED, status
        tag = _tag_stage(status)
        if status["state"] == "RETRY":
            assert tag["state"] == "RETRY"
            assert "503" in (tag["error"] or ""), tag
            if not seen or tag["retries"] != seen[-1]:
                seen.append(tag["retries"])
        return len(seen) >= 2

    wait_until(
        two_retry_counts, timeout=30, interval=0.02, what="two different retry counts in RETRY"
    )
    assert seen[0] >= 1, seen
    assert seen == sorted(set(seen)), seen  # strictly growing

    fake.set_mode("ok", op="tag", title="flaky")  # the server recovers
    status = stack.wait_task(flaky, "SUCCESS", timeout=30)
    tag = _tag_stage(status)
    calls = fake.calls(op="tag", title="flaky")
    assert tag["state"] == "SUCCESS"
    assert tag["error"] is None
    assert tag["retries"] >= seen[-1]
    assert len(calls) == tag["retries"] + 1, (len(calls), tag)
    assert [c.status for c in calls] == [503] * tag["retries"] + [200]
    assert stack.issue(status["issue_id"])["tags"] == ["bug", "ui"]

    # 429 with Retry-After: 2 s; the stage's own backoff would wait 0.25-0.5 s.
    status = stack.wait_task(limited, "SUCCESS", timeout=30)
    first, second = fake.calls(op="tag", title="rate limited")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 2.0 - 0.05, "Retry-After was not honoured"
    assert _tag_stage(status)["retries"] == 1


def test_a_stage_that_keeps_failing_ends_in_failure_with_its_reason(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = make_stack(llm=fake, env={"TAG_MAX_RETRIES": "2"})
    stack.api()
    stack.stage_workers()
    fake.set_mode("503", op="tag", title="always down")
    fake.set_mode("401", op="tag", title="bad key")

    down = stack.create("always down")
    bad_key = stack.create("bad key")

    status = stack.wait_task(down["task_id"], "FAILURE", timeout=60)
    tag = _tag_stage(status)
    assert tag["state"] == "FAILURE", tag
    assert tag["retries"] == 2, tag
    assert status["error"].startswith("tag: "), status["error"]
    assert "503" in status["error"]
    assert "gave up after 2 retries" in status["error"]
    assert status["stages"][2]["state"] == "REVOKED"  # persist never ran
    # TAG_MAX_RETRIES=2 means at most 3 calls: the stage policy is the only retry layer.
    assert [c.status for c in fake.calls(op="tag", title="always down")] == [503, 503, 503]
    issue = stack.issue(down["issue"]["id"])
    assert issue["enrichment"]["status"] == "failed"
    assert issue["enrichment"]["error"] == status["error"]
    assert issue["ai_summary"] is None
    assert issue["tags"] == []

    # A permanent error fails the run at once, with one call.
    status = stack.wait_task(bad_key["task_id"], "FAILURE", timeout=60)
    assert "401" in status["error"]
    assert _tag_stage(status)["retries"] == 0
    assert [c.status for c in fake.calls(op="tag", title="bad key")] == [401]
    failed = {
        item["task_id"]
        for item in stack.http.get(f"{stack.base}/tasks", params={"state": "FAILURE"}).json()[
            "items"
        ]
    }
    assert failed == {down["task_id"], bad_key["task_id"]}


@pytest.mark.parametrize("broker", BROKERS)
def test_messages_wait_in_the_queue_while_no_worker_runs(
    make_stack: StackFactory, broker: str
) -> None:
    stack = make_stack(broker=broker)
    stack.api()  # no worker has ever run on this broker (a fresh vhost on RabbitMQ)

    task_ids = [stack.create(f"Issue {n} while no worker runs")["task_id"] for n in range(20)]

    assert stack.queue_length("summarise") == 20
    assert all(stack.task(t)["state"] == "PENDING" for t in task_ids)
    stack.stage_workers()
    stack.wait_all_succeeded(task_ids, timeout=90)
    assert stack.queue_length("summarise") == 0
