"""Per-process task metrics, named as celery-exporter names them, wired through Celery's signals.

Every process that publishes or runs tasks counts here: the API counts the summarise tasks it
sends, a worker what it receives, starts, finishes, retries and revokes (and the tag and
persist tasks it sends as the chain moves on). A worker serves its counts on
``WORKER_METRICS_PORT``; with the prefork pool, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory of its own so the pool processes' counts add up (prometheus_client's multiprocess
mode). The cluster-wide ``issueflow_*`` figures come from the database instead
(``app.api.metrics``), so they do not depend on which process is scraped.

Nothing here is inside a task's logic: the stage tasks know nothing about metrics.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from pipelines.queues import TASK_ROUTES

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # prometheus_client writes each process's values there, and fails if it is missing.
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
TASK_LABELS = ("name", "queue_name", "hostname")
# celery-exporter's buckets, so its dashboards' heatmaps look the same.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

TASK_SENT = Counter("celery_task_sent", "Tasks published to the broker.", TASK_LABELS)
TASK_RECEIVED = Counter("celery_task_received", "Tasks a worker received.", TASK_LABELS)
TASK_STARTED = Counter("celery_task_started", "Tasks a worker started.", TASK_LABELS)
TASK_SUCCEEDED = Counter("celery_task_succeeded", "Tasks that succeeded.", TASK_LABELS)
TASK_FAILED = Counter(
    "celery_task_failed", "Tasks that failed for good.", (*TASK_LABELS, "exception")
)
TASK_RETRIED = Counter("celery_task_retried", "Task attempts sent back to retry.", TASK_LABELS)
TASK_REVOKED = Counter(
    "celery_task_revoked", "Tasks revoked, or stopped because their run was.", TASK_LABELS
)
TASK_RUNTIME = Histogram(
    "celery_task_runtime", "Seconds one task attempt ran.", TASK_LABELS, buckets=RUNTIME_BUCKETS
)
WORKER_UP = Gauge(
    "celery_worker_up", "1 while the worker runs.", ("hostname",), multiprocess_mode="livemax"
)

_hostname = socket.gethostname()
_started: dict[str, float] = {}
_server_lock = threading.Lock()


# Each metric's child per label values, kept: ``labels()`` validates, formats and locks on
# every call, and a worker asks four times per task.
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _queue(task_name: str, delivery_info: Any = None) -> str:
    if isinstance(delivery_info, dict) and delivery_info.get("routing_key"):
        return str(delivery_info["routing_key"])
    route = TASK_ROUTES.get(task_name)
    return route["queue"] if route else "celery"


def _labels(task_name: str, request: Any) -> tuple[str, str, str]:
    delivery_info = getattr(request, "delivery_info", None)
    hostname = getattr(request, "hostname", None) or _hostname
    return task_name, _queue(task_name, delivery_info), str(hostname)


@signals.after_task_publish.connect
def _sent(sender: str | None = None, headers: Any = None, routing_key: str = "", **_: Any) -> None:
    name = (headers or {}).get("task") or sender or "unknown"
    _child(TASK_SENT, name, routing_key or _queue(name), _hostname).inc()


@signals.task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    if request is not None:
        _child(TASK_RECEIVED, *_labels(request.name, request)).inc()


@signals.task_prerun.connect
def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None:
        return
    _started[task_id] = time.perf_counter()
    _child(TASK_STARTED, *_labels(task.name, task.request)).inc()


@signals.task_postrun.connect
def _postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    began = _started.pop(task_id, None)
    if task is None:
        return
    labels = _labels(task.name, task.request)
    if began is not None:
        _child(TASK_RUNTIME, *labels).observe(time.perf_counter() - began)
    if state == "SUCCESS":
        _child(TASK_SUCCEEDED, *labels).inc()
    elif state == "IGNORED" and task.request.get("issueflow_stopped"):
        TASK_REVOKED.labels(*labels).inc()


@signals.task_failure.connect
def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    if sender is not None:
        exception_name = type(exception).__name__ if exception is not None else "unknown"
        TASK_FAILED.labels(*_labels(sender.name, sender.request), exception_name).inc()


@signals.task_retry.connect
def _retried(sender: Any = None, request: Any = None, **_: Any) -> None:
    if sender is not None:
        TASK_RETRIED.labels(*_labels(sender.name, request or sender.request)).inc()


@signals.task_revoked.connect
def _revoked(request: Any = None, **_: Any) -> None:
    if request is not None:
        TASK_REVOKED.labels(*_labels(request.task_name, request)).inc()


# -- a worker's own port -----------------------------------------------------------------


def metrics_registry() -> CollectorRegistry:
    """What this process serves: the sum over the pool's processes in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def serve_worker_metrics(port: int, *, addr: str = "0.0.0.0") -> int:
    """Serve this process's metrics on ``port`` (0: any free port); the port it got."""
    with _server_lock:
        server, _thread = start_http_server(port, addr=addr, registry=metrics_registry())
    bound: int = server.server_port
    return bound


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:
    """Before the pool starts: empty the multiprocess directory (counts of an earlier run
    would add up with this one's) and open the metrics port."""
    from app.config import get_settings

    global _hostname
    _hostname = getattr(sender, "hostname", None) or _hostname
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        path = Path(directory)
        if path.is_dir():
            for child in path.iterdir():
                if child.is_file() and child.suffix == ".db":
                    child.unlink()
                elif child.is_dir():
                    shutil.rmtree(child)
        else:
            path.mkdir(parents=True)
    settings = get_settings()
    port = settings.worker_metrics_port
    if port is None:
        return
    pool = getattr(sender, "pool_cls", None)  # a name such as "prefork", or the class
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    prefork = "prefork" in str(pool_name)
    if prefork and not directory:
        log.warning(
            "WORKER_METRICS_PORT with the prefork pool: set %s to an empty directory, or the "
            "pool processes' task counts are not served",
            MULTIPROC_ENV,
        )
    bound = serve_worker_metrics(port, addr=settings.worker_metrics_host)
    log.info("task metrics on http://%s:%d/metrics", settings.worker_metrics_host, bound)


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    WORKER_UP.labels(getattr(sender, "hostname", None) or _hostname).set(1)


@signals.worker_shutdown.connect
def _worker_shutdown(sender: Any = None, **_: Any) -> None:
    WORKER_UP.labels(getattr(sender, "hostname", None) or _hostname).set(0)


@signals.worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):
        prometheus_multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
