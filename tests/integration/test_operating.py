"""Operating issueflow: metrics after real runs, what each run cost, and results reused.

The embedded worker runs the real OpenAI-compatible provider against a fake Chat
Completions server on loopback that reports ``usage`` and counts its calls; the API's
``GET /metrics`` is scraped after the runs and parsed as Prometheus text.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from app.config import Settings
from app.logs import ContextFilter, JsonFormatter
from app.main import create_app
from app.tracing import setup_tracing, teardown_tracing
from pipelines.context import WorkerContext, use_context
from pipelines.policies import policies_for
from pipelines.providers.openai import OpenAIProvider
from tests.chat_server import JsonHandler, completion
from tests.support.processes import wait_until

PROMPT_TOKENS = {"summarise": 120, "tag": 80}
COMPLETION_TOKENS = {"summarise": 30, "tag": 7}
PRICE_PER_1K = 2.0


@dataclasses.dataclass
class Calls:
    """What the fake server was asked, per operation; titles it answers 429 (once) or 400."""

    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"summarise": 0, "tag": 0})
    rate_limited_once: set[str] = dataclasses.field(default_factory=set)
    refused_tags: set[str] = dataclasses.field(default_factory=set)
    # Tag calls for these titles wait for ``release`` (``held`` is set when one arrives).
    held_tags: set[str] = dataclasses.field(default_factory=set)
    held: threading.Event = dataclasses.field(default_factory=threading.Event)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class FakeChatServer(ThreadingHTTPServer):
    daemon_threads = True
    calls: Calls


class FakeChatHandler(JsonHandler):
    server: FakeChatServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        op = "tag" if '"tags"' in body["messages"][0]["content"] else "summarise"
        issue = body["messages"][1]["content"]
        calls = self.server.calls
        with calls.lock:
            calls.counts[op] += 1
            limited = next((t for t in calls.rate_limited_once if t in issue), None)
            if limited is not None and op == "summarise":
                calls.rate_limited_once.discard(limited)
        if limited is not None and op == "summarise":
            self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            return
        if op == "tag" and any(title in issue for title in calls.held_tags):
            calls.held.set()
            assert calls.release.wait(20), "the test never released the tag call"
        if op == "tag" and any(title in issue for title in calls.refused_tags):
            self._send(400, {"error": {"message": "this model cannot tag that"}})
            return
        content = {"summary": "A short summary."} if op == "summarise" else {"tags": ["bug"]}
        answer = completion(json.dumps(content))
        answer["usage"] = {
            "prompt_tokens": PROMPT_TOKENS[op],
            "completion_tokens": COMPLETION_TOKENS[op],
            "total_tokens": PROMPT_TOKENS[op] + COMPLETION_TOKENS[op],
        }
        self._send(200, answer)


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    server = FakeChatServer(("127.0.0.1", 0), FakeChatHandler)
    server.calls = Calls()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.calls.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def calls(chat_server: FakeChatServer) -> Calls:
    return chat_server.calls


@contextmanager
def openai_context(database_url: str, chat_server: FakeChatServer) -> Iterator[None]:
    """The embedded worker with the real OpenAI provider on the fake server, short backoffs."""
    settings = Settings(database_url=database_url)
    provider = OpenAIProvider(
        base_url=f"http://127.0.0.1:{chat_server.server_port}/v1",
        api_key="sk-test",
        model="fake-model",
        timeout=5,
        taxonomy=["ui", "crash"],
    )
    policies = {
        stage: dataclasses.replace(policy, backoff=0.1, backoff_max=0.2)
        for stage, policy in policies_for(settings).items()
    }
    context = WorkerContext.build(settings, provider=provider, policies=policies)
    previous = use_context(context)
    try:
        yield
    finally:
        use_context(previous)
        context.close()
        provider.close()


def api_client(database_url: str) -> TestClient:
    settings = Settings(
        database_url=database_url,
        provider_price_per_1k_tokens=PRICE_PER_1K,
        metrics_cache_seconds=0,
    )
    return TestClient(create_app(settings, sweep_outbox=False))


@pytest.fixture
def ops_api(
    worker_engine: Engine, worker_database_url: str, chat_server: FakeChatServer
) -> Iterator[TestClient]:
    with (
        openai_context(worker_database_url, chat_server),
        api_client(worker_database_url) as client,
    ):
        yield client


@pytest.fixture
def traced_api(
    spans: Any, worker_engine: Engine, worker_database_url: str, chat_server: FakeChatServer
) -> Iterator[TestClient]:
    """As ``ops_api``, built after tracing started: its engines and app are traced."""
    with (
        openai_context(worker_database_url, chat_server),
        api_client(worker_database_url) as client,
    ):
        yield client


def create(api: TestClient, title: str, body: str = "It crashes.") -> str:
    response = api.post("/issues", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def finished(api: TestClient, task_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status: dict[str, Any] = api.get(f"/tasks/{task_id}").json()
        return status if status["state"] in ("SUCCESS", "FAILURE", "REVOKED") else None

    result: dict[str, Any] = wait_until(check, timeout=30, what=f"run {task_id} to end")
    return result


def scrape(api: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], metric: str, **labels: str) -> float:
    """The sum over every series of ``metric`` that has these labels (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == metric and wanted <= series)


def test_metrics_after_runs_count_successes_retries_failures_tokens_and_queue_waits(
    ops_api: TestClient, calls: Calls
) -> None:
    calls.rate_limited_once.add("Rate limited once")
    calls.refused_tags.add("Refused by the tagger")
    before = scrape(ops_api)

    ok = create(ops_api, "Plain crash")
    retried = create(ops_api, "Rate limited once")
    failed = create(ops_api, "Refused by the tagger")
    assert finished(ops_api, ok)["state"] == "SUCCESS"
    retried_status = finished(ops_api, retried)
    assert retried_status["state"] == "SUCCESS"
    assert retried_status["stages"][0]["retries"] == 1
    failed_status = finished(ops_api, failed)
    assert failed_status["state"] == "FAILURE"
    assert failed_status["error"].startswith("tag: PermanentError")

    after = scrape(ops_api)

    # The cluster view, from the database (emptied before each test: absolute counts).
    assert value(after, "issueflow_runs_total", state="SUCCESS") == 2
    assert value(after, "issueflow_runs_total", state="FAILURE") == 1
    assert value(after, "issueflow_runs_total", state="REVOKED") == 0
    assert value(after, "issueflow_runs_in_progress") == 0
    assert value(after, "issueflow_outbox_runs") == 0
    assert value(after, "issueflow_stage_retries_total", stage="summarise", reason="429") == 1
    assert value(after, "issueflow_stage_retries_total") == 1
    assert value(after, "issueflow_provider_requests_total", stage="summarise", outcome="ok") == 3
    assert value(after, "issueflow_provider_requests_total", stage="summarise", outcome="429") == 1
    assert value(after, "issueflow_provider_requests_total", stage="tag", outcome="ok") == 2
    assert value(after, "issueflow_provider_requests_total", stage="tag", outcome="failed") == 1
    assert value(after, "issueflow_provider_tokens_total", stage="summarise", kind="prompt") == 360
    assert value(after, "issueflow_provider_tokens_total", stage="tag", kind="completion") == 14
    assert value(after, "issueflow_run_duration_seconds_count", state="SUCCESS") == 2
    assert value(after, "issueflow_run_duration_seconds_count", state="FAILURE") == 1
    assert value(after, "issueflow_stage_duration_seconds_count", stage="summarise") == 3
    assert value(after, "issueflow_stage_duration_seconds_count", stage="persist") == 2
    for stage, runs in (("summarise", 3), ("tag", 3), ("persist", 2)):
        count = value(after, "issueflow_stage_queue_wait_seconds_count", stage=stage)
        assert count == runs, stage
        waits = value(after, "issueflow_stage_queue_wait_seconds_sum", stage=stage)
        assert waits >= 0, stage
        # Every wait is counted in the +Inf bucket, and no bucket holds more.
        assert (
            value(after, "issueflow_stage_queue_wait_seconds_bucket", stage=stage, le="+Inf")
            == runs
        )
    for queue in ("summarise", "tag", "persist"):
        assert ("celery_queue_length", frozenset({("queue_name", queue)})) in after
    assert value(after, "issueflow_database_up") == 1
    assert value(after, "issueflow_broker_up") == 1

    # This process's task counters (the embedded worker runs in it): what changed.
    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("celery_task_started_total", name="enrichment.summarise") == 4
    assert delta("celery_task_succeeded_total", name="enrichment.summarise") == 3
    assert delta("celery_task_retried_total", name="enrichment.summarise") == 1
    assert delta("celery_task_succeeded_total", name="enrichment.persist") == 2
    assert delta("celery_task_failed_total", name="enrichment.tag", exception="PermanentError") == 1
    assert delta("celery_task_received_total", name="enrichment.tag", queue_name="tag") == 3
    # Sent: three chains by the API, one retry of summarise, and the tag and persist hops.
    assert delta("celery_task_sent_total", name="enrichment.summarise") == 4
    assert delta("celery_task_sent_total", name="enrichment.persist") == 2
    assert delta("celery_task_runtime_count", name="enrichment.tag") == 3

    # The API's HTTP metrics, by route template.
    assert delta("http_requests_total", handler="/issues", method="POST", status="201") == 3
    assert delta("http_requests_total", handler="/tasks/{task_id}", method="GET", status="200") >= 3


def test_each_run_shows_its_token_usage_and_cost_per_stage_and_summed(
    ops_api: TestClient, calls: Calls
) -> None:
    status = finished(ops_api, create(ops_api, "Costed crash"))
    assert status["state"] == "SUCCESS"
    summarise, tag, persist = status["stages"]
    assert summarise["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "cost": pytest.approx(150 * PRICE_PER_1K / 1000),
    }
    assert tag["usage"]["total_tokens"] == 87
    assert persist["usage"] is None  # persist calls no provider
    assert status["usage"] == {
        "prompt_tokens": 200,
        "completion_tokens": 37,
        "total_tokens": 237,
        "cost": pytest.approx(237 * PRICE_PER_1K / 1000),
    }
    assert [s["cached"] for s in status["stages"]] == [False, False, False]


def test_unchanged_text_reuses_the_result_unless_forced(ops_api: TestClient, calls: Calls) -> None:
    first = finished(ops_api, create(ops_api, "Reused crash", "Same body"))
    assert first["state"] == "SUCCESS"
    assert calls.counts == {"summarise": 1, "tag": 1}
    issue_id = first["issue_id"]

    again = ops_api.post(f"/issues/{issue_id}/enrich")
    assert again.status_code == 202
    reused = finished(ops_api, again.json()["task_id"])
    assert reused["state"] == "SUCCESS"
    assert calls.counts == {"summarise": 1, "tag": 1}, "the provider was called again"
    assert [s["cached"] for s in reused["stages"]] == [True, True, False]
    assert reused["result"] == first["result"]
    assert reused["usage"] is None  # nothing was paid for

    # Another issue with the same text is the same work too.
    duplicate = finished(ops_api, create(ops_api, "Reused crash", "Same body"))
    assert [s["cached"] for s in duplicate["stages"]] == [True, True, False]
    assert calls.counts == {"summarise": 1, "tag": 1}

    forced = ops_api.post(f"/issues/{issue_id}/enrich", params={"force": "true"})
    assert forced.status_code == 202
    fresh = finished(ops_api, forced.json()["task_id"])
    assert fresh["state"] == "SUCCESS"
    assert calls.counts == {"summarise": 2, "tag": 2}
    assert [s["cached"] for s in fresh["stages"]] == [False, False, False]
    assert fresh["usage"]["total_tokens"] == 237

    # Changed text is new work.
    ops_api.patch(f"/issues/{issue_id}", json={"body": "A different body"})
    changed = ops_api.get(f"/issues/{issue_id}").json()["enrichment"]["task_id"]
    assert finished(ops_api, changed)["stages"][0]["cached"] is False
    assert calls.counts == {"summarise": 3, "tag": 3}

    metrics = scrape(ops_api)
    assert value(metrics, "issueflow_provider_requests_total", stage="tag", outcome="cached") == 2


def test_metrics_answer_with_the_database_down(worker_database_url: str) -> None:
    app = create_app(
        Settings(database_url="postgresql+psycopg2://nobody@127.0.0.1:1/none"),
        sweep_outbox=False,
    )
    with TestClient(app) as client:
        samples = scrape(client)
    assert value(samples, "issueflow_database_up") == 0
    assert not any(name == "issueflow_runs_total" for name, _ in samples)


def test_worker_log_records_carry_the_run_fields(ops_api: TestClient, calls: Calls) -> None:
    calls.rate_limited_once.add("Logged crash")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pipelines")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # the embedded worker sets the root logger to ERROR
    try:
        status = finished(ops_api, create(ops_api, "Logged crash"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert status["state"] == "SUCCESS"
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    retry = next(r for r in records if "retry 1/" in r["message"])
    assert retry["run_id"] == status["task_id"]
    assert retry["issue_id"] == status["issue_id"]
    assert retry["stage"] == "summarise"
    assert retry["task_id"] == status["stages"][0]["task_id"]
    calls_logged = [r for r in records if r["message"].startswith("openai tag")]
    assert calls_logged, records
    assert {r["stage"] for r in calls_logged} == {"tag"}
    assert {r["task_id"] for r in calls_logged} == {status["stages"][1]["task_id"]}


@pytest.fixture
def spans(worker_database_url: str) -> Iterator[Any]:
    """Tracing on, into an in-memory exporter (the ``otel`` extra is part of ``dev``)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert setup_tracing("issueflow-test", tracer_provider=provider)
    yield exporter
    teardown_tracing()
    provider.shutdown()


def test_one_trace_spans_the_request_all_three_stages_the_provider_and_the_database(
    spans: Any, traced_api: TestClient, calls: Calls
) -> None:
    ops_api = traced_api
    task_id = create(ops_api, "Traced crash")
    assert finished(ops_api, task_id)["state"] == "SUCCESS"
    # persist's span ends just after its commit, which the status may show first.
    wait_until(
        lambda: any(s.name == "run/enrichment.persist" for s in spans.get_finished_spans()),
        timeout=10,
        what="the persist span",
    )
    finished_spans = spans.get_finished_spans()
    post = next(s for s in finished_spans if s.name == "POST /issues" and s.parent is None)
    trace_id = post.context.trace_id
    in_trace = [s for s in finished_spans if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    for stage in ("summarise", "tag", "persist"):
        assert f"apply_async/enrichment.{stage}" in names, names
        assert f"run/enrichment.{stage}" in names, names
    kinds = {
        s.attributes.get("http.request.method") or s.attributes.get("http.method") for s in in_trace
    }
    assert "POST" in kinds  # the provider's HTTP calls
    provider_calls = [
        s
        for s in in_trace
        if "127.0.0.1" in str(s.attributes.get("url.full") or s.attributes.get("http.url") or "")
    ]
    assert len(provider_calls) == 2, names
    database = [
        s for s in in_trace if s.attributes.get("db.system") or s.attributes.get("db.system.name")
    ]
    assert database, names
    statements = " ".join(
        str(s.attributes.get("db.statement") or s.attributes.get("db.query.text")) for s in database
    )
    assert "INSERT INTO enrichment_runs" in statements
    assert "UPDATE issues SET ai_summary" in statements
    # Polling the status is other traces: one run is one trace.
    assert all(s.name != "GET /tasks/{task_id}" for s in in_trace)


def test_a_stage_of_a_superseded_run_counts_as_revoked(ops_api: TestClient, calls: Calls) -> None:
    from prometheus_client import REGISTRY

    def revoked() -> float:
        return sum(
            sample.value
            for family in REGISTRY.collect()
            if family.name == "celery_task_revoked"
            for sample in family.samples
            if sample.name == "celery_task_revoked_total"
            and sample.labels["name"] == "enrichment.tag"
        )

    before = revoked()
    calls.held_tags.add("Superseded crash")
    old = create(ops_api, "Superseded crash")
    assert calls.held.wait(20), "the tag call never arrived"
    issue_id = ops_api.get(f"/tasks/{old}").json()["issue_id"]
    assert ops_api.patch(f"/issues/{issue_id}", json={"body": "Edited"}).status_code == 200
    calls.release.set()  # the old run's tag finishes, finds its run superseded and stops
    assert finished(ops_api, old)["state"] == "REVOKED"
    wait_until(lambda: revoked() == before + 1, timeout=20, what="the revoked tag counted")
    new = ops_api.get(f"/issues/{issue_id}").json()["enrichment"]["task_id"]
    assert finished(ops_api, new)["state"] == "SUCCESS"
    metrics = scrape(ops_api)
    assert value(metrics, "issueflow_runs_total", state="REVOKED") == 1
    assert value(metrics, "issueflow_runs_total", state="SUCCESS") == 1
