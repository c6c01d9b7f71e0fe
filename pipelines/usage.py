"""What one stage attempt cost: the provider's token counts, and whether it reused a result.

A stage attempt runs inside :func:`metering`; a provider reports the ``usage`` object of
each response it gets with :func:`record_usage` (a no-op outside a stage). The meter lives
in a context variable, so threads and pool processes never mix their counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class StageUsage:
    """Tokens one stage attempt spent (None: no response reported any) and cache use."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    requests: int = 0
    cached: bool = False

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens

    @property
    def metered(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None


_current: ContextVar[StageUsage | None] = ContextVar("issueflow_stage_usage", default=None)


@contextmanager
def metering() -> Iterator[StageUsage]:
    """Count what the code inside spends."""
    usage = StageUsage()
    token = _current.set(usage)
    try:
        yield usage
    finally:
        _current.reset(token)


def current_usage() -> StageUsage | None:
    return _current.get()


def record_usage(body: object) -> None:
    """Add a Chat Completions response's ``usage`` (``prompt_tokens``,
    ``completion_tokens``) to the running meter; a response without one counts as a
    request with unknown tokens."""
    usage = _current.get()
    if usage is None:
        return
    usage.requests += 1
    counts = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(counts, dict):
        return
    prompt = _count(counts.get("prompt_tokens"))
    completion = _count(counts.get("completion_tokens"))
    if prompt is not None or completion is not None:
        usage.add(prompt or 0, completion or 0)


def mark_cached() -> None:
    usage = _current.get()
    if usage is not None:
        usage.cached = True


def _count(value: object) -> int | None:
    # bool is an int to Python; a server sending true is not counting tokens.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None
