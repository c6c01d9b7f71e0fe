"""``issue.created`` webhook events, sent from FastAPI's BackgroundTasks after the response."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)


def _where(url: str) -> str:
    """The URL without credentials, path or query, which may hold tokens: safe to log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


class _HideWebhookUrls(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST <url> ..."): for a
    webhook that would write its credentials, path and query (often the secret) to the log.
    Shows such a URL as ``_where`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            record.args = tuple(
                _where(str(arg)) if isinstance(arg, httpx.URL) and str(arg) in self.urls else arg
                for arg in record.args
            )
        return True


_hide_webhook_urls = _HideWebhookUrls()
logging.getLogger("httpx").addFilter(_hide_webhook_urls)


def notify_issue_creation(url: str, issue: dict[str, Any], *, timeout: float = 5.0) -> bool:
    """POST the event; a failing or slow webhook is logged and never raised. True if 2xx."""
    event = {"event": "issue.created", "issue": issue}
    _hide_webhook_urls.urls.add(str(httpx.URL(url)))
    try:
        response = httpx.post(url, json=event, timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning(
            "webhook %s for issue %s failed: %s", _where(url), issue.get("id"), type(exc).__name__
        )
        return False
    if response.is_success:
        return True
    log.warning(
        "webhook %s for issue %s answered %d", _where(url), issue.get("id"), response.status_code
    )
    return False
