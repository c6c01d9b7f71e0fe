"""Whether the Redis broker is set up not to lose work: ``maxmemory-policy noeviction``.

Under memory pressure a Redis with any other policy deletes keys, and a deleted queue or
``unacked`` hash is lost work (the sweeper resumes those runs later, ``pipelines.recovery``,
but only after ``STALLED_RUN_AFTER``). ``/readyz`` reports it as a warning, not as
not-ready: the API and the workers still serve, and taking every API process out of the
load balancer for a setting would turn a risk into an outage. The API also logs it once at
startup.
"""

from __future__ import annotations

import threading
import time

import redis

# /readyz is probed every few seconds; the setting changes rarely.
CHECK_EVERY = 60.0

_lock = threading.Lock()
_cache: dict[str, tuple[float, str | None]] = {}


def eviction_warning(broker_url: str) -> str | None:
    """None when the Redis at ``broker_url`` never evicts keys; else what is wrong."""
    try:
        with redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2) as client:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except redis.ResponseError as exc:  # CONFIG renamed or refused (some managed Redis)
        return f"cannot read the broker's maxmemory-policy ({exc}); it must be noeviction"
    except redis.RedisError:
        return None  # unreachable: the broker check says so
    if policy == "noeviction":
        return None
    return (
        f"the broker Redis has maxmemory-policy {policy}: under memory pressure it deletes "
        "queued messages; set it to noeviction"
    )


def cached_eviction_warning(broker_url: str) -> str | None:
    """``eviction_warning``, read at most every ``CHECK_EVERY`` seconds per URL."""
    now = time.monotonic()
    with _lock:
        found = _cache.get(broker_url)
        if found is not None and now - found[0] < CHECK_EVERY:
            return found[1]
    warning = eviction_warning(broker_url)
    with _lock:
        _cache[broker_url] = (now, warning)
    return warning
