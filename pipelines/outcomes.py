"""Short names for why a stage retried or failed: the ``reason`` and ``outcome`` labels of
the metrics, and what ``enrichment_retries.reason`` stores."""

from __future__ import annotations

import re

import redis
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy import exc as sa_exc

from pipelines.providers.base import PermanentError, TransientError

# The reasons a provider call can fail with; the others are the pipeline's own.
PROVIDER_REASONS = ("429", "5xx", "timeout", "connection", "4xx", "bad_output")

_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def failure_reason(exc: BaseException) -> str:
    """``429``, ``5xx``, ``timeout``, ``connection``, ``database``, ``redis``, ``4xx``,
    ``bad_output`` or ``other``."""
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return "timeout"
    if isinstance(exc, TransientError | PermanentError):
        return _provider_reason(exc)
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return "database"
    if isinstance(exc, redis.RedisError):
        return "redis"
    return "other"


def _provider_reason(exc: TransientError | PermanentError) -> str:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        match = _HTTP_STATUS.search(str(exc))
        status = int(match.group(1)) if match else None
    if status is not None:
        if status == 429:
            return "429"
        if status == 408:
            return "timeout"
        return "5xx" if status >= 500 else "4xx"
    if "Timeout" in str(exc):
        return "timeout"
    return "connection" if isinstance(exc, TransientError) else "bad_output"
