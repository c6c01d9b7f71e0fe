"""What every enrichment provider offers, and the two kinds of failure it may raise."""

from __future__ import annotations

from typing import Protocol


class ProviderError(Exception):
    """A provider could not produce a result."""


class TransientError(ProviderError):
    """Worth retrying: a timeout, a refused connection, HTTP 429 or 5xx.

    ``retry_after`` carries the server's ``Retry-After`` (seconds) when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """Retrying cannot help: bad credentials, an unknown model, unusable output."""


class Provider(Protocol):
    """Summarises and tags one issue. Implementations are safe to reuse across tasks."""

    name: str

    def summarise(self, title: str, body: str) -> str:
        """One to three sentences, at most 300 characters."""
        ...

    def tag(self, title: str, body: str, summary: str) -> list[str]:
        """Exactly one type tag (bug, feature, question) first, then topic tags."""
        ...
