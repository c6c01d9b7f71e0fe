"""A cluster-wide token bucket kept in Redis.

Every worker on every machine shares one bucket per key. Taking a token is one atomic
Lua script that reads the clock with Redis ``TIME``, so the workers' own clocks (and
any skew between machines) never matter.

Callers are expected not to poll: :meth:`TokenBucket.acquire` says how long to wait, and
a Celery task reschedules itself with that countdown. :meth:`TokenBucket.wait` is for
code that may block a little.
"""

from __future__ import annotations

import math
import threading
import time

import redis

from app.config import parse_rate

# KEYS[1]: the bucket (a hash of ``tokens`` and ``ts``, the server time of the last update)
# ARGV: rate (tokens per second), burst (capacity), requested tokens, TTL in milliseconds
# Returns {1, "0"} when the tokens were taken, else {0, seconds until they will be}
# (nothing is taken then). Floats go back as strings: Lua numbers become Redis integers.
_ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local taken = 0
local wait = 0
if tokens >= requested then
  tokens = tokens - requested
  taken = 1
else
  wait = (requested - tokens) / rate
end
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.17g', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {taken, string.format('%.17g', wait)}
"""


class TokenBucket:
    """A token bucket shared through Redis by every process that uses the same key."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: str,
        burst: float | None = None,
    ) -> None:
        tokens, per_seconds = parse_rate(rate)
        self.key = key
        self.rate = rate
        self.per_second = tokens / per_seconds
        self.burst = float(burst) if burst is not None else max(1.0, self.per_second)
        if self.burst <= 0 or not math.isfinite(self.burst):
            raise ValueError(f"burst must be a positive number, got {burst!r}")
        # An idle bucket refills completely after burst / rate seconds; a missing key
        # means "full", so the key may vanish then (one second of slack).
        self._ttl_ms = math.ceil(self.burst / self.per_second * 1000) + 1000
        self._script = client.register_script(_ACQUIRE_LUA)

    def __repr__(self) -> str:
        return f"TokenBucket(key={self.key!r}, rate={self.rate!r}, burst={self.burst:g})"

    def acquire(self, tokens: float = 1) -> float:
        """Take ``tokens`` and return 0.0, or take nothing and return the seconds to wait.

        Raises ``ValueError`` when ``tokens`` could never fit into the bucket, and lets
        ``redis.RedisError`` through when Redis cannot be reached.
        """
        if tokens <= 0 or tokens > self.burst:
            raise ValueError(f"tokens must be in (0, {self.burst:g}], got {tokens!r}")
        taken, wait = self._script(
            keys=[self.key],
            args=[repr(self.per_second), repr(self.burst), repr(float(tokens)), self._ttl_ms],
        )
        if int(taken):
            return 0.0
        # Never report "no wait" for a refusal, however close the next token is.
        return max(float(wait), 1e-6)

    def wait(self, max_wait: float, tokens: float = 1) -> bool:
        """Block until ``tokens`` are taken, but never longer than ``max_wait`` seconds.

        Sleeps (on a ``threading.Event``, not a spin loop) only for the time the bucket
        says; returns False at once when the wait it reports would overshoot ``max_wait``.
        """
        deadline = time.monotonic() + max_wait
        pause = threading.Event()
        while True:
            delay = self.acquire(tokens)
            if delay == 0.0:
                return True
            if delay > deadline - time.monotonic():
                return False
            pause.wait(delay)
