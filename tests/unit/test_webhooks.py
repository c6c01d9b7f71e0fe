"""Webhook events without a network: the bytes and headers sent, and how each answer of a
receiver (``httpx.MockTransport``) is classified."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.celery_app import task_annotations
from app.config import BODY_MAX, TITLE_MAX, Settings
from app.retry_after import retry_after
from app.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    MAX_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    SIGNATURE_HEADER,
    EventTooLarge,
    encode,
    enriched_payload,
    failed_payload,
    headers,
    scrub,
)
from pipelines.policies import PolicyError, webhook_policy
from pipelines.queues import DELIVER_TASK
from pipelines.webhooks import DeliveryError, RetryableDeliveryError, attempt

URL = "https://hook:pa55word@receiver.example:8443/hooks/t0ken?key=s3cret"
SECRETS = ("pa55word", "t0ken", "s3cret")
AT = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


def settings(**changes: Any) -> Settings:
    return Settings(notify_webhook_url=URL, notify_webhook_secret="shh", **changes)


def send(handler: Any, **changes: Any) -> int:
    return attempt(
        settings(**changes),
        delivery_id="d-1",
        event="issue.enriched",
        payload={"event": "issue.enriched"},
        transport=httpx.MockTransport(handler),
    )


def test_signature_is_the_hmac_of_the_exact_body_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    assert send(handler) == 204
    [request] = seen
    body = request.content
    expected = hmac.new(b"shh", body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert request.headers[EVENT_HEADER] == "issue.enriched"
    assert request.headers[DELIVERY_HEADER] == "d-1"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(body) == {"event": "issue.enriched"}


def test_no_signature_without_a_secret() -> None:
    sent = headers(event="run.failed", delivery_id="d", body=b"{}", secret=None)
    assert SIGNATURE_HEADER not in sent
    assert sent[EVENT_HEADER] == "run.failed"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_timeouts_and_rate_limits_are_retried(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": "7"}, text="busy")

    with pytest.raises(RetryableDeliveryError) as caught:
        send(handler)
    assert caught.value.status == status
    assert f"answered {status}: busy" in str(caught.value)
    # Retry-After counts for 429 and 503 only.
    assert caught.value.retry_after == (7.0 if status in (429, 503) else None)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_client_errors_fail_at_once(status: int) -> None:
    with pytest.raises(DeliveryError) as caught:
        send(lambda request: httpx.Response(status))
    assert not isinstance(caught.value, RetryableDeliveryError)
    assert caught.value.status == status


def test_a_redirect_is_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://elsewhere.example/steal"})

    with pytest.raises(DeliveryError, match="redirect: not followed") as caught:
        send(handler)
    assert not isinstance(caught.value, RetryableDeliveryError)
    assert len(seen) == 1  # nothing went to elsewhere.example


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("x")],
)
def test_transport_errors_are_retried(error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(RetryableDeliveryError, match=type(error).__name__):
        send(handler)


def test_errors_never_show_the_urls_secrets() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {URL}")

    with pytest.raises(RetryableDeliveryError) as caught:
        send(handler)
    message = str(caught.value)
    assert "receiver.example:8443" in message
    assert not [secret for secret in SECRETS if secret in message], message

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request to {request.url}")

    with pytest.raises(DeliveryError) as caught:
        send(echo)
    assert not [secret for secret in SECRETS if secret in str(caught.value)], str(caught.value)


def test_the_answer_is_read_only_up_to_a_bound() -> None:
    produced: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):
            produced.append(1)
            yield b"x" * 512

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=endless())

    with pytest.raises(RetryableDeliveryError) as caught:
        send(handler)
    assert len(produced) <= MAX_RESPONSE_BYTES // 512 + 1
    assert len(str(caught.value)) < 400


def test_no_url_on_the_worker_fails_the_delivery() -> None:
    with pytest.raises(DeliveryError, match="NOTIFY_WEBHOOK_URL is not set"):
        attempt(Settings(), delivery_id="d", event="run.failed", payload={})


def test_bodies_are_bounded_and_the_largest_issue_fits() -> None:
    # Control characters are escaped as \\u0001: six bytes each, the worst case per character.
    issue = {"id": 1, "title": "\u0001" * TITLE_MAX, "body": "\u0001" * BODY_MAX}
    assert len(encode({"event": "issue.created", "issue": issue})) < MAX_BODY_BYTES
    with pytest.raises(EventTooLarge):
        encode({"blob": "x" * MAX_BODY_BYTES})


def test_payloads() -> None:
    enriched = enriched_payload(
        run_id="r", issue_id=3, title="T", summary="S", tags=["crash"], at=AT
    )
    assert enriched == {
        "event": "issue.enriched",
        "issue": {"id": 3, "title": "T", "ai_summary": "S", "tags": ["crash"]},
        "run": {
            "task_id": "r",
            "state": "SUCCESS",
            "status_url": "/tasks/r",
            "finished_at": "2026-11-30T16:00:00+00:00",
        },
    }
    failed = failed_payload(run_id="r", issue_id=3, stage="tag", reason="boom", at=AT)
    assert failed["event"] == "run.failed"
    assert failed["run"]["stage"] == "tag"
    assert failed["run"]["reason"] == "boom"
    assert failed["run"]["state"] == "FAILURE"


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "12"})) == 12.0
    assert retry_after(httpx.Headers({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})) == 0.0
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers({"Retry-After": "nan"})) is None
    assert retry_after(httpx.Headers()) is None


def test_scrub_hides_credentials_path_and_query() -> None:
    text = scrub(f"failed: {URL} (user hook, password pa55word)", URL)
    assert "https://receiver.example:8443" in text
    assert not [secret for secret in SECRETS if secret in text], text


def test_webhook_policy_follows_notify_settings_and_the_visibility_rule() -> None:
    policy = webhook_policy(
        Settings(notify_max_retries=2, notify_retry_backoff=3, notify_time_limit=10)
    )
    assert (policy.max_retries, policy.backoff, policy.time_limit) == (2, 3, 10)
    with pytest.raises(PolicyError, match="NOTIFY_TIME_LIMIT"):
        webhook_policy(Settings(notify_time_limit=60, celery_visibility_timeout=60))


def test_notify_settings_are_checked_only_when_webhooks_are_set_up() -> None:
    # A short visibility timeout suits fast stages; without a webhook URL the notify task's
    # longer time limit must not stop a worker or the API from starting.
    quick: dict[str, Any] = {"celery_visibility_timeout": 12, "notify_time_limit": 30}
    quick |= {f"{stage}_time_limit": 4 for stage in ("summarise", "tag", "persist")}
    assert DELIVER_TASK not in task_annotations(Settings(**quick))
    with pytest.raises(PolicyError, match="NOTIFY_TIME_LIMIT=30"):
        task_annotations(Settings(**quick, notify_webhook_url="http://127.0.0.1:9/hook"))
    assert task_annotations(Settings(notify_webhook_url="http://127.0.0.1:9/hook"))[
        DELIVER_TASK
    ] == {"time_limit": 30, "soft_time_limit": 29}
