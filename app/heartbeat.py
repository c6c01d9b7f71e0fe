"""A heartbeat file that a worker touches while it consumes, for cheap container probes.

Load it into a worker with ``celery -A app.celery_app worker --include app.heartbeat ...``:
the step below joins the consumer's bootsteps, touches ``WORKER_HEARTBEAT_FILE`` when the
consumer starts consuming and every ``HEARTBEAT_INTERVAL`` seconds after, and removes the
file when the consumer stops (shutdown, or a lost broker connection until it is back).
``python -m app.probes worker`` then checks the file's age without talking to the broker:
no ``celery inspect ping`` round trip through Redis for every probe of every pod.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from celery import bootsteps

from app.celery_app import celery_app

log = logging.getLogger(__name__)

HEARTBEAT_FILE_ENV = "WORKER_HEARTBEAT_FILE"
DEFAULT_HEARTBEAT_FILE = "/tmp/issueflow-worker.heartbeat"
# Seconds between touches; probes allow several missed beats (app.probes.DEFAULT_MAX_AGE).
HEARTBEAT_INTERVAL = 10.0


def heartbeat_path() -> Path:
    return Path(os.environ.get(HEARTBEAT_FILE_ENV) or DEFAULT_HEARTBEAT_FILE)


class Heartbeat(bootsteps.StartStopStep):
    """Touches the heartbeat file while the consumer consumes."""

    # After the consumer has started consuming its queues.
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = heartbeat_path()
        self.timer_entry: Any = None
        # The threads pool's timer runs in a thread of its own: a beat already under way
        # must not re-create the file that stop() has just removed.
        self.lock = threading.Lock()
        self.beating = False

    def beat(self) -> None:
        with self.lock:
            if not self.beating:
                return
            try:
                self.path.touch()
            except OSError as exc:  # a full or read-only disk must not stop the worker
                log.warning("cannot touch the heartbeat file %s: %s", self.path, exc)

    def start(self, parent: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.beating = True
        self.beat()
        self.timer_entry = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL, self.beat)

    def stop(self, parent: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        with self.lock:
            self.beating = False
            self.path.unlink(missing_ok=True)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


celery_app.steps["consumer"].add(Heartbeat)
