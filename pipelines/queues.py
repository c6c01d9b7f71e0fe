"""The queues, the three stages and the task names: declared here and nowhere else."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    SUMMARISE = "summarise"
    TAG = "tag"
    PERSIST = "persist"
    # Webhook events (issue.enriched, run.failed): a slow receiver never holds up a stage.
    NOTIFY = "notify"


class Stage(enum.StrEnum):
    """A pipeline stage; its value is its name, its queue has the same name."""

    SUMMARISE = "summarise"
    TAG = "tag"
    PERSIST = "persist"

    @property
    def queue(self) -> Queue:
        return Queue(self.value)

    @property
    def task_name(self) -> str:
        return f"enrichment.{self.value}"

    @property
    def position(self) -> int:
        return _POSITIONS[self]


# Every stage asks for its position a few times per task: looked up, not searched for.
_POSITIONS = {stage: position for position, stage in enumerate(Stage)}

# The task that POSTs one recorded webhook delivery (``pipelines.webhooks``).
DELIVER_TASK = "webhooks.deliver"

TASK_ROUTES = {
    **{stage.task_name: {"queue": stage.queue.value} for stage in Stage},
    DELIVER_TASK: {"queue": Queue.NOTIFY.value},
}
