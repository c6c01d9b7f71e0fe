"""``issue.created`` webhook events, sent from FastAPI's BackgroundTasks after the response.

One attempt, no retry: the API process keeps no state for it (``issue.enriched`` and
``run.failed`` are the reliable events, ``pipelines.webhooks``). Signed like them.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

import httpx

from app.states import WebhookEvent
from app.webhooks import encode, headers, hide_url_in_logs, post, where

log = logging.getLogger(__name__)


def notify_issue_creation(
    url: str, issue: dict[str, Any], *, timeout: float = 5.0, secret: str | None = None
) -> bool:
    """POST the event; a failing or slow webhook is logged and never raised. True if 2xx."""
    event = WebhookEvent.ISSUE_CREATED.value
    body = encode({"event": event, "issue": issue})
    hide_url_in_logs(url)
    sent = headers(event=event, delivery_id=str(uuid4()), body=body, secret=secret)
    try:
        answer = post(url, body=body, sent_headers=sent, timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning(
            "webhook %s for issue %s failed: %s", where(url), issue.get("id"), type(exc).__name__
        )
        return False
    if answer.delivered:
        return True
    log.warning("webhook %s for issue %s answered %d", where(url), issue.get("id"), answer.status)
    return False
