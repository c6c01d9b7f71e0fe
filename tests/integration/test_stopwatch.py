"""``StopWatch`` on a real Redis: provider calls that end when their run is stopped."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.progress import ProgressPublisher
from pipelines.bookkeeping import StaleRun
from pipelines.providers.base import TransientError
from pipelines.stopwatch import StopWatch


@pytest.fixture
def prefix() -> str:
    return f"stopwatch-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def watch(redis_url: str, prefix: str) -> Iterator[StopWatch]:
    stopwatch = StopWatch(redis_url, prefix, poll=60)
    assert stopwatch.wait_subscribed(10)
    yield stopwatch
    stopwatch.close()


def never_ended(run_id: str) -> bool:
    return False


def test_a_call_returns_its_result_and_its_errors(watch: StopWatch) -> None:
    assert watch.call("run-1", never_ended, lambda a, b: a + b, 2, 3) == 5

    def fails() -> str:
        raise TransientError("503 from provider")

    with pytest.raises(TransientError, match="503"):
        watch.call("run-1", never_ended, fails)


def test_a_stop_notification_ends_the_wait(watch: StopWatch, redis_url: str, prefix: str) -> None:
    entered, gate = threading.Event(), threading.Event()

    def slow() -> str:
        entered.set()
        gate.wait(30)
        return "too late"

    publisher = ProgressPublisher(redis_url, prefix)
    errors: list[BaseException] = []

    def stage() -> None:
        try:
            watch.call("run-2", never_ended, slow)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=stage)
    thread.start()
    assert entered.wait(10)
    publisher.stopped(["some-other-run"])  # not ours: still waiting
    publisher.stopped(["run-2"])
    thread.join(10)
    assert not thread.is_alive(), "the stop did not end the wait"
    assert not gate.is_set()
    assert len(errors) == 1
    assert isinstance(errors[0], StaleRun)
    gate.set()
    publisher.close()


def test_without_notifications_the_database_poll_ends_the_wait(redis_url: str) -> None:
    # A channel nobody publishes on: only the poll can tell.
    watch = StopWatch(redis_url, f"silent-{uuid.uuid4().hex[:8]}:", poll=0.05)
    gate = threading.Event()
    checks: list[str] = []

    def ended(run_id: str) -> bool:
        checks.append(run_id)
        return len(checks) >= 2

    try:
        with pytest.raises(StaleRun):
            watch.call("run-3", ended, gate.wait, 30)
        assert checks == ["run-3", "run-3"]
    finally:
        gate.set()
        watch.close()


def test_an_unreachable_redis_leaves_the_poll() -> None:
    dead = StopWatch("redis://127.0.0.1:1/0", "p:", poll=0.05)
    try:
        assert not dead.wait_subscribed(0.5)
        assert dead.call("run-4", never_ended, str.upper, "ok") == "OK"
    finally:
        dead.close()


def test_the_listener_really_subscribed(watch: StopWatch, redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.pubsub_numsub(f"{prefix}stop")[0][1] >= 1
    finally:
        client.close()
