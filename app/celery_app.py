"""The Celery app: configuration only. The stage tasks live in ``pipelines.enrichment``,
the webhook task in ``pipelines.webhooks``.

Everything comes from one ``Settings``: broker, queues, serialisers, and each stage's rate
and time limits (``task_annotations``).

Workers: ``celery -A app.celery_app worker -Q summarise`` (or ``tag``, ``persist``,
``notify``; no ``-Q`` serves all four).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue as KombuQueue

from app.broker import use_channel_client
from app.config import Settings, get_settings
from app.logs import hook_handlers as _hook_log_handlers  # noqa: F401 (connects log signals)
from app.tracing import setup_tracing as _setup_tracing  # noqa: F401 (connects worker tracing)
from pipelines.policies import policies_for, webhook_policy
from pipelines.queues import DELIVER_TASK, TASK_ROUTES, Queue

# Kombu's Redis transport looks for messages held by dead workers every
# interval * throttle seconds (default 10 * 10). Scanning every 10 s keeps redelivery within
# CELERY_VISIBILITY_TIMEOUT + ~10 s, at 3 cheap Redis commands per scan per worker.
UNACKED_RESTORE_INTERVAL = 10
UNACKED_RESTORE_THROTTLE = 1


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.celery_broker_url,
        "result_backend": settings.celery_result_backend,
        "broker_transport_options": {
            "visibility_timeout": settings.celery_visibility_timeout,
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
            "unacked_restore_throttle": UNACKED_RESTORE_THROTTLE,
            # Bodies are JSON text: stored as they are, not base64 (a third smaller; a queued
            # run costs its message's size in Redis memory). Kombu decodes each message by
            # its own body_encoding property, so messages sent before still read.
            "body_encoding": "utf-8",
        },
        "broker_connection_retry_on_startup": True,
        # A POST must not hang on a dead broker: fail fast and leave the run in the outbox.
        "broker_connection_timeout": 2,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "task_queues": [KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        "task_default_queue": Queue.SUMMARISE.value,
        "task_create_missing_queues": False,
        "task_routes": TASK_ROUTES,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # The database tracks every run and stage; a result backend would only add round trips.
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        # A task-sent event per message (Flower shows queued stages) only when asked: it is
        # a PUBLISH per stage whether or not anyone listens. Flower turns worker events on
        # itself while it runs.
        "task_send_sent_event": settings.celery_send_sent_event,
        # After a lost broker connection the unacked messages are redelivered anyway: stop
        # their tasks instead of finishing them twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_annotations": task_annotations(settings),
        "timezone": "UTC",
        "enable_utc": True,
    }


def task_annotations(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each stage's rate and time limits; the webhook task's time limits when webhooks are
    set up (without a URL its ``NOTIFY_*`` settings are never used, nor checked)."""
    annotations: dict[str, dict[str, Any]] = {
        stage.task_name: {
            "rate_limit": policy.rate_limit,
            "time_limit": policy.time_limit,
            "soft_time_limit": policy.soft_time_limit,
        }
        for stage, policy in policies_for(settings).items()
    }
    if settings.notify_webhook_url:
        webhook = webhook_policy(settings)
        annotations[DELIVER_TASK] = {
            "time_limit": webhook.time_limit,
            "soft_time_limit": webhook.soft_time_limit,
        }
    return annotations


def make_celery(settings: Settings | None = None) -> Celery:
    use_channel_client()  # a Redis client per broker channel, not one per publish and ack
    # pipelines.metrics: the task metrics' signal handlers and the worker's metrics port.
    app = Celery(
        "issueflow", include=["pipelines.enrichment", "pipelines.metrics", "pipelines.webhooks"]
    )
    app.conf.update(celery_config(settings or get_settings()))
    return app


celery_app = make_celery()
app = celery_app  # `celery -A app.celery_app` finds either name
