"""The vocabulary of issues and runs, defined once: models, schemas, routes and workers use it.

Values are what the API shows and the database stores.
"""

from __future__ import annotations

import enum


class IssueStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EnrichmentStatus(enum.StrEnum):
    """The issue-level view of its current run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TaskState(enum.StrEnum):
    """Celery's own state names, used for runs, stages and whole chains."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"


class RunStateFilter(enum.StrEnum):
    """What ``GET /tasks?state=`` selects: a final state, or ``PENDING`` for runs not ended."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"


FINISHED_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED})
UNFINISHED_STATES = frozenset({TaskState.PENDING, TaskState.STARTED, TaskState.RETRY})


class DeliveryState(enum.StrEnum):
    """Where one webhook delivery is: still being sent (retries included), or done."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEvent(enum.StrEnum):
    """The events a webhook receives (the ``X-Issueflow-Event`` header and ``event`` field)."""

    ISSUE_CREATED = "issue.created"
    ISSUE_ENRICHED = "issue.enriched"
    RUN_FAILED = "run.failed"
