"""Webhook events as a receiver sees them: payloads, the exact bytes sent, and their headers.

Every event is a JSON object POSTed to ``NOTIFY_WEBHOOK_URL`` with

- ``X-Issueflow-Event``: the event name (``issue.created``, ``issue.enriched``, ``run.failed``);
- ``X-Issueflow-Delivery``: the delivery id, the same on every retry and re-send of it;
- ``X-Issueflow-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body under
  ``NOTIFY_WEBHOOK_SECRET``, when one is set (GitHub's convention, so receivers know it).

The body is bounded (``MAX_BODY_BYTES``), and the webhook URL, which may carry credentials
and tokens in its path or query, never reaches a log (``where``, ``hide_url_in_logs``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.retry_after import retry_after
from app.states import TaskState, WebhookEvent

EVENT_HEADER = "X-Issueflow-Event"
DELIVERY_HEADER = "X-Issueflow-Delivery"
SIGNATURE_HEADER = "X-Issueflow-Signature-256"
USER_AGENT = "issueflow-webhooks/1"

# An issue.created body is at most 300 + 50,000 characters of text: even escaped it stays
# far below this. An event above it is refused, never cut.
MAX_BODY_BYTES = 512 * 1024
# Of the receiver's answer, only this much is read (the start of an error page is kept).
MAX_RESPONSE_BYTES = 1024


class EventTooLarge(ValueError):
    """The event's JSON is larger than ``MAX_BODY_BYTES``."""


def enriched_payload(
    *, run_id: str, issue_id: int, title: str, summary: str, tags: list[str], at: datetime
) -> dict[str, Any]:
    """``issue.enriched``: the run's result. The issue's body is not repeated (``GET
    /issues/<id>`` has it): the event stays small whatever the issue."""
    return {
        "event": WebhookEvent.ISSUE_ENRICHED.value,
        "issue": {"id": issue_id, "title": title, "ai_summary": summary, "tags": tags},
        "run": {
            "task_id": run_id,
            "state": TaskState.SUCCESS.value,
            "status_url": f"/tasks/{run_id}",
            "finished_at": at.isoformat(),
        },
    }


def failed_payload(
    *, run_id: str, issue_id: int, stage: str, reason: str, at: datetime
) -> dict[str, Any]:
    """``run.failed``: which stage failed for good, and why."""
    return {
        "event": WebhookEvent.RUN_FAILED.value,
        "issue": {"id": issue_id},
        "run": {
            "task_id": run_id,
            "state": TaskState.FAILURE.value,
            "status_url": f"/tasks/{run_id}",
            "stage": stage,
            "reason": reason,
            "finished_at": at.isoformat(),
        },
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed). Raises ``EventTooLarge``."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > MAX_BODY_BYTES:
        raise EventTooLarge(f"event of {len(body)} bytes, above {MAX_BODY_BYTES}")
    return body


def signature(body: bytes, secret: str) -> str:
    """The ``X-Issueflow-Signature-256`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(*, event: str, delivery_id: str, body: bytes, secret: str | None) -> dict[str, str]:
    sent = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    if secret:
        sent[SIGNATURE_HEADER] = signature(body, secret)
    return sent


@dataclass(frozen=True)
class Answer:
    """What the receiver answered: its status, the start of its body, its Retry-After."""

    status: int
    excerpt: str
    retry_after: float | None

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


def post(
    url: str,
    *,
    body: bytes,
    sent_headers: dict[str, str],
    timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> Answer:
    """POST ``body``; raises what httpx raises (timeouts, connection errors).

    Redirects are never followed (a 3xx is the answer: the URL is the operator's, and a
    receiver that moved gets a new one configured), and at most ``MAX_RESPONSE_BYTES`` of
    the answer are read.
    """
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client,
        client.stream("POST", url, content=body, headers=sent_headers) as response,
    ):
        start = b""
        for chunk in response.iter_bytes():
            start += chunk
            if len(start) >= MAX_RESPONSE_BYTES:
                break
        excerpt = start[:MAX_RESPONSE_BYTES].decode("utf-8", errors="replace")
        return Answer(response.status_code, excerpt, retry_after(response.headers))


def where(url: str) -> str:
    """The URL without credentials, path or query, which may hold tokens: safe to log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with the webhook URL shown as ``where`` shows it,
    and its credentials, path and query hidden wherever they appear on their own."""
    for full in {url, str(httpx.URL(url))}:
        text = text.replace(full, where(url))
    parts = urlsplit(url)
    for secret in (parts.password, parts.username, parts.query, parts.path.strip("/")):
        if secret:
            text = text.replace(secret, "***")
    return text


class _HideWebhookUrls(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST <url> ..."): for a
    webhook that would write its credentials, path and query (often the secret) to the log.
    Shows such a URL as ``where`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            record.args = tuple(
                where(str(arg)) if isinstance(arg, httpx.URL) and str(arg) in self.urls else arg
                for arg in record.args
            )
        return True


_hide_webhook_urls = _HideWebhookUrls()
logging.getLogger("httpx").addFilter(_hide_webhook_urls)


def hide_url_in_logs(url: str) -> None:
    """From now on httpx's request log shows ``url`` as ``where(url)``."""
    _hide_webhook_urls.urls.add(str(httpx.URL(url)))
