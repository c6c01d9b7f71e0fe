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


def notify_issue_creation(url: str, issue: dict[str, Any], *, timeout: float = 5.0) -> bool:
    """POST the event; a failing or slow webhook is logged and never raised. True if 2xx."""
    event = {"event": "issue.created", "issue": issue}
    try:
        response = httpx.post(url, json=event, timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning("webhook %s for issue %s failed: %s", _where(url), issue.get("id"),
                    type(exc).__name__)
        return False
    if response.is_success:
        return True
    log.warning("webhook %s for issue %s answered %d", _where(url), issue.get("id"),
                response.status_code)
    return False
