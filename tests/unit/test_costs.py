"""What a stage attempt cost (token usage), why it retried, and what a result depends on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import exc as sa_exc

from app.config import Settings
from app.models import EnrichmentRun, EnrichmentStage
from app.services.runs import task_status
from pipelines.cache import fingerprint
from pipelines.outcomes import failure_reason
from pipelines.providers import NoopProvider
from pipelines.providers.base import PermanentError, TransientError
from pipelines.providers.local import LocalProvider
from pipelines.providers.openai import OpenAIProvider
from pipelines.usage import StageUsage, current_usage, mark_cached, metering, record_usage

TAXONOMY = ["ui", "crash"]


def reply(content: dict[str, object], usage: object) -> httpx.Response:
    body: dict[str, object] = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(content)}}]
    }
    if usage is not None:
        body["usage"] = usage
    return httpx.Response(200, json=body)


def provider(*responses: httpx.Response, model: str = "m") -> OpenAIProvider:
    queue = list(responses)
    return OpenAIProvider(
        base_url="https://llm.example.test/v1",
        api_key="sk-x",
        model=model,
        taxonomy=TAXONOMY,
        transport=httpx.MockTransport(lambda request: queue.pop(0)),
    )


def test_the_openai_provider_reports_every_calls_usage_to_the_running_meter() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    unusable = httpx.Response(
        200, json={"choices": [{"message": {"content": "no json"}}], "usage": usage}
    )
    chat = provider(unusable, reply({"summary": "Saving crashes."}, usage))
    with metering() as meter:
        assert chat.summarise("Crash", "on save") == "Saving crashes."
    # The re-asked reply was paid for too.
    assert (meter.prompt_tokens, meter.completion_tokens, meter.requests) == (200, 40, 2)
    assert current_usage() is None


def test_a_server_without_usage_leaves_the_tokens_unknown() -> None:
    chat = provider(
        reply({"summary": "S."}, None), reply({"tags": ["bug"]}, {"prompt_tokens": "x"})
    )
    with metering() as meter:
        chat.summarise("t", "b")
        chat.tag("t", "b", "S.")
    assert (meter.prompt_tokens, meter.completion_tokens, meter.requests) == (None, None, 2)
    assert not meter.metered


def test_usage_outside_a_stage_is_ignored_and_nonsense_counts_are_dropped() -> None:
    record_usage({"usage": {"prompt_tokens": 5, "completion_tokens": 1}})  # no meter: no-op
    with metering() as meter:
        record_usage({"usage": {"prompt_tokens": True, "completion_tokens": -3}})
        record_usage({"usage": {"prompt_tokens": 7}})
        record_usage(["not", "a", "dict"])
        mark_cached()
    assert meter == StageUsage(prompt_tokens=7, completion_tokens=0, requests=3, cached=True)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TransientError("openai tag: HTTP 429 from x (model 'm'): slow down"), "429"),
        (TransientError("openai tag: HTTP 503 from x (model 'm'): busy"), "5xx"),
        (TransientError("openai tag: HTTP 408 from x (model 'm'): late"), "timeout"),
        (TransientError("openai tag: ReadTimeout after 30s at x"), "timeout"),
        (TransientError("openai tag: ConnectError talking to x: refused"), "connection"),
        (PermanentError("openai tag: HTTP 401 from x (model 'm'): bad key"), "4xx"),
        (PermanentError("openai tag: model 'm' gave unusable output twice: no JSON"), "bad_output"),
        (SoftTimeLimitExceeded(), "timeout"),
        (sa_exc.OperationalError("SELECT 1", {}, Exception("gone")), "database"),
        (ValueError("?"), "other"),
    ],
)
def test_failure_reasons(exc: BaseException, reason: str) -> None:
    assert failure_reason(exc) == reason


def test_the_fingerprint_changes_with_text_model_prompts_and_taxonomy() -> None:
    base = provider(model="m")
    key = fingerprint(base, "Title", "Body")
    assert key == fingerprint(provider(model="m"), "Title", "Body")
    assert key != fingerprint(base, "Title", "Body ")
    assert key != fingerprint(base, "Title ", "Body")
    assert key != fingerprint(provider(model="other"), "Title", "Body")
    assert key != fingerprint(NoopProvider(), "Title", "Body")
    other_taxonomy = OpenAIProvider(
        base_url="https://llm.example.test/v1", api_key=None, model="m", taxonomy=["ui"]
    )
    assert key != fingerprint(other_taxonomy, "Title", "Body")
    # No separator trick: the parts are encoded, not concatenated.
    assert fingerprint(base, "ab", "c") != fingerprint(base, "a", "bc")


def test_the_local_providers_fingerprint_covers_its_model_files() -> None:
    local = LocalProvider()
    assert fingerprint(local, "t", "b") == fingerprint(LocalProvider(), "t", "b")
    assert fingerprint(local, "t", "b") != fingerprint(LocalProvider(["ui"]), "t", "b")


def test_the_prompt_version_is_the_providers_source() -> None:
    """Any change to the module that builds the prompts and reads the replies is a new
    prompt version, so no result made the old way is reused."""
    import hashlib
    from pathlib import Path

    import pipelines.providers.openai as openai_module

    source = Path(openai_module.__file__).read_bytes()
    assert provider().prompt_version == hashlib.sha256(source).hexdigest()[:12]
    assert fingerprint(provider(), "t", "b") == fingerprint(provider(), "t", "b")


def _run_with_usage() -> EnrichmentRun:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stages = [
        EnrichmentStage(
            position=n,
            name=name,
            queue=name,
            task_id=f"t{n}",
            state="SUCCESS",
            retries=0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached=False,
        )
        for n, (name, prompt, completion) in enumerate(
            [("summarise", 1000, 100), ("tag", 500, 10), ("persist", None, None)]
        )
    ]
    return EnrichmentRun(id="t0", issue_id=1, state="SUCCESS", created_at=now, stages=stages)


def test_prompt_and_completion_tokens_have_prices_of_their_own() -> None:
    settings = Settings(
        provider_price_per_1k_tokens=1.0, provider_price_per_1k_completion_tokens=4.0
    )
    assert settings.token_prices == (1.0, 4.0)
    status = task_status(_run_with_usage(), prices=settings.token_prices)
    summarise, _tag, persist = status.stages
    assert summarise.usage is not None
    assert summarise.usage.cost == pytest.approx(1000 * 1.0 / 1000 + 100 * 4.0 / 1000)
    assert persist.usage is None
    assert status.usage is not None
    assert (status.usage.prompt_tokens, status.usage.completion_tokens) == (1500, 110)
    assert status.usage.cost == pytest.approx(1.5 + 0.44)


def test_without_a_price_for_each_kind_there_is_no_cost() -> None:
    assert Settings(provider_price_per_1k_prompt_tokens=1.0).token_prices is None
    status = task_status(_run_with_usage(), prices=None)
    assert status.usage is not None
    assert status.usage.total_tokens == 1610
    assert status.usage.cost is None
