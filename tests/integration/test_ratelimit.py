"""TokenBucket on a real Redis: one bucket shared by threads and by separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipelines.ratelimit import TokenBucket
from tests.support.services import require_redis, unique_prefix

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url() -> str:
    return require_redis() + "/15"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = unique_prefix()
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=value + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_ten_per_second_gives_ten_then_a_short_wait(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "10/s")
    assert bucket.burst == 10
    assert [bucket.acquire() for _ in range(10)] == [0.0] * 10
    wait = bucket.acquire()
    assert 0.05 < wait <= 0.1 + 1e-6


def test_a_refusal_takes_nothing(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "10/s")
    while bucket.acquire() == 0.0:
        pass
    wait = bucket.acquire()
    threading.Event().wait(wait + 0.005)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() > 0.0


def test_default_burst_is_one_second_but_at_least_one(client: redis.Redis, prefix: str) -> None:
    per_minute = TokenBucket(client, prefix + "m", "60/m")
    per_hour = TokenBucket(client, prefix + "h", "100/h")
    assert per_minute.burst == 1
    assert per_hour.burst == 1
    assert per_minute.acquire() == 0.0
    assert 0.9 < per_minute.acquire() <= 1.0 + 1e-6
    assert per_hour.acquire() == 0.0
    assert 35.0 < per_hour.acquire() <= 36.0 + 1e-6


def test_explicit_burst(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "1/s", burst=3)
    assert [bucket.acquire() for _ in range(3)] == [0.0] * 3
    assert 0.9 < bucket.acquire() <= 1.0 + 1e-6


def test_several_tokens_at_once(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "10/s")
    assert bucket.acquire(6) == 0.0
    wait = bucket.acquire(6)
    assert 0.15 < wait <= 0.2 + 1e-6
    with pytest.raises(ValueError, match="tokens"):
        bucket.acquire(11)
    with pytest.raises(ValueError, match="tokens"):
        bucket.acquire(0)


def test_key_has_a_ttl_and_uses_server_time(client: redis.Redis, prefix: str) -> None:
    key = prefix + "bucket"
    TokenBucket(client, key, "60/m").acquire()
    ttl_ms = client.pttl(key)
    assert 0 < ttl_ms <= 2000
    seconds, micros = client.time()
    stored = client.hget(key, "ts")
    assert stored is not None
    assert abs(float(stored) - (seconds + micros / 1e6)) < 1.0


def test_buckets_with_different_keys_are_independent(client: redis.Redis, prefix: str) -> None:
    first = TokenBucket(client, prefix + "a", "1/s")
    second = TokenBucket(client, prefix + "b", "1/s")
    assert first.acquire() == 0.0
    assert first.acquire() > 0.0
    assert second.acquire() == 0.0


def test_works_with_decoded_responses(redis_url: str, prefix: str) -> None:
    decoded = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        bucket = TokenBucket(decoded, prefix + "bucket", "2/s")
        assert [bucket.acquire() for _ in range(2)] == [0.0, 0.0]
        assert 0.4 < bucket.acquire() <= 0.5 + 1e-6
    finally:
        decoded.close()


def test_wait_blocks_only_as_long_as_allowed(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "10/s")
    while bucket.acquire() == 0.0:
        pass
    started = time.monotonic()
    assert bucket.wait(max_wait=0.01) is False
    assert time.monotonic() - started < 0.05
    started = time.monotonic()
    assert bucket.wait(max_wait=1.0) is True
    assert 0.02 < time.monotonic() - started < 0.5


def test_threads_share_the_bucket(client: redis.Redis, prefix: str) -> None:
    bucket = TokenBucket(client, prefix + "bucket", "20/s")
    granted: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + 1.0

    def work() -> None:
        while time.monotonic() < end:
            if bucket.wait(max_wait=max(0.0, end - time.monotonic())):
                with lock:
                    granted.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    # 20 at once, then up to 20 more over the second: never more than the rate allows. (How
    # many of the refills the threads get depends on how busy the machine is.)
    assert 20 <= len(granted) <= 42


# -- three processes, one bucket ----------------------------------------------------------

_WORKER = """
import os, sys, threading, time
import redis
from pipelines.ratelimit import TokenBucket

url, key, log_key, ready_key, go_key, duration = sys.argv[1:7]
client = redis.Redis.from_url(url)
try:
    bucket = TokenBucket(client, key, "10/s")
    client.rpush(ready_key, os.getpid())
    if client.blpop([go_key], timeout=60) is None:
        sys.exit("no start signal")
    end = time.monotonic() + float(duration)
    pause = threading.Event()
    while time.monotonic() < end:
        delay = bucket.acquire()
        if delay == 0.0:
            client.rpush(log_key, f"{os.getpid()} {time.time():.6f}")
        else:
            pause.wait(min(delay, max(0.0, end - time.monotonic())))
finally:
    client.close()
"""


def test_three_processes_share_one_bucket(
    redis_url: str, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys = {name: prefix + name for name in ("bucket", "log", "ready", "go")}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for path in logs:
            with path.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _WORKER,
                            redis_url,
                            keys["bucket"],
                            keys["log"],
                            keys["ready"],
                            keys["go"],
                            "5",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

        def output() -> str:
            return "\n".join(path.read_text(errors="replace") for path in logs)

        deadline = time.monotonic() + 60
        while client.llen(keys["ready"]) < 3:
            assert all(p.poll() is None for p in procs), f"a worker died:\n{output()}"
            assert time.monotonic() < deadline, f"workers did not start:\n{output()}"
            threading.Event().wait(0.05)
        client.rpush(keys["go"], *["go"] * 3)
        for proc in procs:
            assert proc.wait(timeout=30) == 0, f"worker failed:\n{output()}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    entries = [
        (line.decode() if isinstance(line, bytes) else line).split()
        for line in client.lrange(keys["log"], 0, -1)
    ]
    stamps = sorted(float(stamp) for _, stamp in entries)
    per_process = {pid: sum(1 for p, _ in entries if p == pid) for pid, _ in entries}
    # 10 at once (the burst) plus 10 per second for 5 seconds: about 60, never 3 x 60.
    assert 45 <= len(stamps) <= 62, f"{len(stamps)} calls: {per_process}"
    assert len(per_process) == 3, f"every process got calls: {per_process}"
    busiest = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert busiest <= 10 + 10 + 2, f"{busiest} calls within one second"
