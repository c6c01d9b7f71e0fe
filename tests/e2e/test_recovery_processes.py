"""No run left behind: runs whose messages the broker lost are resumed, with real processes.

Each test has its own redis-server (restartable on the same port, without persistence),
SQLite file, API and ``celery worker`` processes, and the fake OpenAI-compatible server, which
counts each issue's provider calls by stage. The API sweeps for stalled runs every second
(``RECOVER_INTERVAL=1``) and counts a run stalled after ``STALLED_RUN_AFTER`` seconds.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.fake_llm import FakeLLM
from tests.e2e.stack import Stack
from tests.support.processes import BIN, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STALLED_AFTER = 4
SWEEPING = {"RECOVER_INTERVAL": "1", "STALLED_RUN_AFTER": str(STALLED_AFTER)}


def sweeping_stack(make_stack: StackFactory, fake: FakeLLM, **env: str) -> Stack:
    stack = make_stack(llm=fake, env={**SWEEPING, **env})
    stack.api()
    return stack


def assert_one_call_per_stage(fake: FakeLLM, titles: list[str]) -> None:
    for title in titles:
        calls = [call.op for call in fake.calls(title=title)]
        assert sorted(calls) == ["summarise", "tag"], (title, calls)


def resumes_of(status: dict[str, Any]) -> tuple[int, str | None]:
    return status["resumes"], status["resumed_from"]


def metric(stack: Stack, name: str) -> float:
    text = stack.http.get(f"{stack.base}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_ten_runs_lost_in_a_redis_restart_without_persistence_all_succeed(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    """The issue's scenario: ten issues created while no worker runs, Redis restarted
    empty, then workers started: every run is resumed once and succeeds, each issue's
    provider called once per stage."""
    stack = sweeping_stack(make_stack, fake)
    titles = [f"Lost in the restart {n}" for n in range(10)]
    created = [stack.create(title) for title in titles]
    assert stack.queue_length("summarise") == 10
    stack.stop_redis(signal.SIGKILL)
    stack.start_redis()  # same port, empty: the ten messages are gone
    assert stack.queue_length("summarise") == 0
    stack.stage_workers()

    stack.wait_all_succeeded([c["task_id"] for c in created], timeout=90)
    assert_one_call_per_stage(fake, titles)
    for item in created:
        status = stack.task(item["task_id"])
        assert resumes_of(status) == (1, "summarise"), status
        assert datetime.fromisoformat(status["resumed_at"]) >= datetime.fromisoformat(
            status["created_at"]
        )
        issue = stack.issue(item["issue"]["id"])
        assert issue["enrichment"]["status"] == "succeeded", issue
    assert metric(stack, "issueflow_runs_resumed_total") == 10
    assert metric(stack, "issueflow_run_resumes_total") == 10
    log = stack.log("api")
    assert log.count("stalled (no progress for") == 10, log[-3000:]


def test_a_tag_message_lost_mid_chain_is_resumed_from_tag(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    stack = sweeping_stack(make_stack, fake)
    stack.worker("summarise")
    created = stack.create("Lost between summarise and tag")
    wait_until(lambda: stack.queue_length("tag") == 1, timeout=30, what="the tag message")
    with stack.redis() as client:
        assert client.delete("tag") == 1  # the tag message is lost
    stack.worker("tag")
    stack.worker("persist")

    status = stack.wait_task(created["task_id"], "SUCCESS", timeout=60)
    assert resumes_of(status) == (1, "tag"), status
    assert_one_call_per_stage(fake, ["Lost between summarise and tag"])
    summarise_id = status["stages"][0]["task_id"]
    assert stack.received("summarise", summarise_id) == 1  # not run again
    assert stack.issue(created["issue"]["id"])["tags"] == ["bug", "ui"]


def test_a_resumed_run_whose_original_message_then_arrives_completes_once(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    """The original tag message was only late (held aside here), not lost: when it arrives
    after the resumed run finished, it changes nothing and calls no provider."""
    stack = sweeping_stack(make_stack, fake)
    stack.worker("summarise")
    created = stack.create("Late, not lost")
    wait_until(lambda: stack.queue_length("tag") == 1, timeout=30, what="the tag message")
    with stack.redis() as client:
        original = client.lpop("tag")
    stack.worker("tag")
    stack.worker("persist")
    status = stack.wait_task(created["task_id"], "SUCCESS", timeout=60)
    assert resumes_of(status) == (1, "tag"), status
    issue_before = stack.issue(created["issue"]["id"])
    tag_id, persist_id = status["stages"][1]["task_id"], status["stages"][2]["task_id"]

    with stack.redis() as client:
        client.rpush("tag", original)  # the original turns up
    wait_until(lambda: stack.received("tag", tag_id) == 2, timeout=30, what="the late original")
    stack.group.wait_for_log("worker-tag", f"run {created['task_id']} stopped", timeout=30)
    assert_one_call_per_stage(fake, ["Late, not lost"])
    assert stack.received("persist", persist_id) == 1
    after = stack.task(created["task_id"])
    assert (after["state"], resumes_of(after)) == ("SUCCESS", (1, "tag"))
    assert stack.issue(created["issue"]["id"]) == issue_before


def test_a_backlog_longer_than_stalled_run_after_is_not_resumed(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    """Runs waiting their turn behind a backlog make no progress for longer than
    STALLED_RUN_AFTER, but their messages are in the queue: none is resumed."""
    stack = sweeping_stack(make_stack, fake)
    fake.set_mode("ok", delay=0.3)  # one call per 0.3 s per worker: 40 issues take 12 s+
    titles = [f"Waiting its turn {n}" for n in range(40)]
    created = [stack.create(title) for title in titles]
    stack.stage_workers()

    stack.wait_all_succeeded([c["task_id"] for c in created], timeout=180)
    assert_one_call_per_stage(fake, titles)
    statuses = [stack.task(c["task_id"]) for c in created]
    assert [resumes_of(status) for status in statuses] == [(0, None)] * len(created)
    # The backlog did outlast the deadline: the last run waited longer than it for a worker.
    last = statuses[-1]
    waited = datetime.fromisoformat(last["stages"][0]["started_at"]) - datetime.fromisoformat(
        last["created_at"]
    )
    assert waited.total_seconds() > STALLED_AFTER + 2, waited
    assert metric(stack, "issueflow_runs_resumed_total") == 0
    assert "stalled" not in stack.log("api")


def test_two_api_processes_and_issueflow_recover_resume_each_run_once(
    make_stack: StackFactory, fake: FakeLLM
) -> None:
    """Two API processes sweep, and an operator runs ``issueflow recover`` in a loop
    meanwhile: each lost run is resumed exactly once."""
    stack = sweeping_stack(make_stack, fake)
    stack.api("api-2")
    titles = [f"Raced for {n}" for n in range(5)]
    created = [stack.create(title) for title in titles]
    with stack.redis() as client:
        assert client.delete("summarise") == 1  # all five messages are lost

    stop = threading.Event()
    outputs: list[str] = []

    def operator() -> None:
        while not stop.is_set():
            done = subprocess.run(
                [str(BIN / "issueflow"), "recover", "--stalled-after", str(STALLED_AFTER)],
                env=stack.group.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
            time.sleep(0.2)

    loop = threading.Thread(target=operator)
    loop.start()
    try:
        stack.stage_workers()
        stack.wait_all_succeeded([c["task_id"] for c in created], timeout=90)
    finally:
        stop.set()
        loop.join(timeout=90)
    assert outputs, "issueflow recover never ran"
    for item in created:
        assert resumes_of(stack.task(item["task_id"])) == (1, "summarise")
    assert_one_call_per_stage(fake, titles)
    by_api = stack.log("api").count("stalled (no progress") + stack.log("api-2").count(
        "stalled (no progress"
    )
    by_operator = sum(
        int(found.group(1)) for out in outputs if (found := re.search(r"; resumed (\d+),", out))
    )
    assert by_api + by_operator == 5, (by_api, outputs)
