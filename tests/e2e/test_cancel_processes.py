"""Cancel with real processes: a chain waiting in a queue that no worker serves yet."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StackFactory
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("queue", ["tag", "persist"])
def test_a_stage_queued_when_its_run_is_cancelled_never_runs(
    make_stack: StackFactory, queue: str
) -> None:
    """The run is cancelled while its next stage's message waits in a queue with no worker;
    when a worker for that queue starts, the stage finds its run ended and does nothing."""
    stack = make_stack()
    stack.api()
    served = ["summarise", "tag", "persist"]
    served = served[: served.index(queue)]
    for name in served:
        stack.worker(name)
    created = stack.create("Crash when saving", "The app crashes when I press save.")
    task_id, issue_id = created["task_id"], created["issue"]["id"]
    position = ["summarise", "tag", "persist"].index(queue)
    wait_until(
        lambda: (
            stack.task(task_id)["progress"]["completed"] == position
            and stack.queue_length(queue) == 1
        ),
        timeout=60,
        what=f"the run's {queue} message to wait in its queue",
    )

    response = stack.http.post(f"{stack.base}/tasks/{task_id}/cancel")
    assert response.status_code == 202, response.text
    cancelled = response.json()
    assert cancelled["state"] == "REVOKED"
    assert [s["state"] for s in cancelled["stages"]][position:] == ["REVOKED"] * (3 - position)

    late = stack.worker(queue)
    stage_id = cancelled["stages"][position]["task_id"]
    stack.group.wait_for_log(f"worker-{queue}", f"run {task_id} stopped", timeout=60, process=late)
    assert stack.queue_length(queue) == 0
    assert stack.task(task_id) == cancelled  # nothing changed, nothing written
    issue = stack.issue(issue_id)
    assert issue["ai_summary"] is None
    assert issue["tags"] == []
    assert issue["enrichment"]["status"] == "failed"
    assert issue["enrichment"]["error"].startswith("cancelled")
    log = stack.log(f"worker-{queue}")
    assert f"Task enrichment.{queue}[{stage_id}] received" in log
    assert f"enrichment.{queue}[{stage_id}] succeeded" not in log
