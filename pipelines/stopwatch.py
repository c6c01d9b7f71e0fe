"""Stop a stage that waits on its provider when its run is cancelled (or superseded).

A provider call of a network-bound provider (``ENRICH_PROVIDER=openai``) may wait for
many seconds. When the API ends the run meanwhile, the stage should not hold its worker
slot until the server answers. Python cannot interrupt a thread blocked in a socket read,
and Celery's ``revoke(terminate=True)`` kills a whole prefork process (racing with the
next task it may already run; the threads pool cannot terminate at all). So the call runs
in a helper thread while the stage waits for whichever comes first:

- the call's result (the normal case: one thread hop, a few tens of microseconds);
- the run's id on ``<prefix>stop`` (``app.progress``), which the API publishes after it
  ended a run: one Redis subscription per worker process, shared by all its stages;
- a slow poll of the database (``poll`` seconds), in case a notification was missed.

Then the stage raises ``StaleRun``: its run is already ended in the database, the chain
stops, and the abandoned call's result is dropped when it returns (bounded by the
provider's own timeout, ``OPENAI_TIMEOUT``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from app.progress import stop_channel
from pipelines.bookkeeping import StaleRun
from pipelines.providers import Provider

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_POLL = 5.0
# Abandoned calls keep their thread until the server answers or the provider times out.
MAX_CALL_THREADS = 64
RECONNECT_PAUSE = 1.0


class StopWatch:
    """Provider calls that end early when their run is stopped; one per worker process."""

    def __init__(self, url: str, prefix: str, *, poll: float = DEFAULT_POLL) -> None:
        self.url = url
        self.channel = stop_channel(prefix)
        self.poll = poll
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}
        self._stopped: set[str] = set()
        self._pid = 0
        self._pool: ThreadPoolExecutor | None = None
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._closing = threading.Event()

    def call(
        self, run_id: str, is_ended: Callable[[str], bool], fn: Callable[..., T], *args: Any
    ) -> T:
        """``fn(*args)``, unless ``run_id`` is stopped first: then ``StaleRun``."""
        pool = self._start()
        wake = threading.Event()
        with self._lock:
            self._waiting.setdefault(run_id, []).append(wake)
        try:
            future: Future[T] = pool.submit(fn, *args)
            future.add_done_callback(lambda _: wake.set())
            while True:
                woken = wake.wait(self.poll)
                wake.clear()  # before looking: a wake-up from now on is not lost
                if future.done():
                    return future.result()
                with self._lock:
                    stopped = run_id in self._stopped
                if stopped or (not woken and is_ended(run_id)):
                    future.cancel()
                    raise StaleRun(f"run {run_id} was stopped while its provider call was waiting")
        finally:
            with self._lock:
                events = self._waiting.get(run_id, [])
                if wake in events:
                    events.remove(wake)
                if not events:
                    self._waiting.pop(run_id, None)
                    self._stopped.discard(run_id)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the listener listens (tests use it before they cancel a run)."""
        self._start()
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None and self._pid == os.getpid():
            self._listener.join(timeout=5)
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._listener = None

    # -- the listener ------------------------------------------------------------------

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # A forked process starts its own threads: its parent's do not exist here.
                self._pid = os.getpid()
                self._subscribed.clear()
                self._closing.clear()
                self._pool = ThreadPoolExecutor(MAX_CALL_THREADS, thread_name_prefix="provider")
                self._listener = threading.Thread(
                    target=self._listen, name="stopwatch", daemon=True
                )
                self._listener.start()
            return self._pool

    def _listen(self) -> None:
        while not self._closing.is_set():
            client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.channel)
                self._subscribed.set()
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        self._stop(message["data"].decode())
                pubsub.close()
            except redis.RedisError as exc:
                self._subscribed.clear()
                log.warning("stop notifications unavailable (%s); polling the database", exc)
                self._closing.wait(RECONNECT_PAUSE)
            finally:
                client.close()

    def _stop(self, run_id: str) -> None:
        with self._lock:
            events = self._waiting.get(run_id)
            if not events:
                return
            self._stopped.add(run_id)
            for wake in events:
                wake.set()


class WatchedProvider:
    """A provider whose calls for one run end early when that run is stopped."""

    def __init__(
        self, provider: Provider, watch: StopWatch, run_id: str, is_ended: Callable[[str], bool]
    ) -> None:
        self.name = provider.name
        self._provider = provider
        self._watch = watch
        self._run_id = run_id
        self._is_ended = is_ended

    def summarise(self, title: str, body: str) -> str:
        return self._watch.call(self._run_id, self._is_ended, self._provider.summarise, title, body)

    def tag(self, title: str, body: str, summary: str) -> list[str]:
        return self._watch.call(
            self._run_id, self._is_ended, self._provider.tag, title, body, summary
        )
