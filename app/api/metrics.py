"""``GET /metrics``: the cluster's figures from the database and the broker, and the API's own.

The ``issueflow_*`` metrics and ``celery_queue_length`` are computed at scrape time from the
runs in the database and the queues in the broker (:class:`ClusterCollector`), so every API
process answers the same, whichever one Prometheus reaches. Counters here are counts of
records (runs, retries, tokens), so they only grow while runs are kept.

The API's HTTP metrics (``http_requests_total``, ``http_request_duration_seconds``, the
names prometheus-fastapi-instrumentator uses) are per process; with several API processes
set ``PROMETHEUS_MULTIPROC_DIR`` and they add up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Engine, Select, and_, case, func, select
from sqlalchemy.orm import aliased
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import errors
from app.deps import ReadAccess
from app.models import EnrichmentRetry, EnrichmentRun, EnrichmentStage
from app.states import FINISHED_STATES, TaskState
from pipelines.metrics import metrics_registry
from pipelines.outcomes import PROVIDER_REASONS
from pipelines.queues import Queue, Stage

log = logging.getLogger(__name__)

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PROVIDER_STAGES = (Stage.SUMMARISE.value, Stage.TAG.value)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests by route template, method and status.",
    ("method", "handler", "status"),
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Seconds from the request to the end of the response, by route template.",
    ("method", "handler"),
    buckets=HTTP_BUCKETS,
)


# -- the cluster view --------------------------------------------------------------------


class ClusterCollector(Collector):
    """The ``issueflow_*`` figures and queue lengths, computed when scraped (at most every
    ``cache_seconds``: a scrape is a handful of aggregate queries over the run tables)."""

    def __init__(self, engine: Engine, celery_app: Celery | None, cache_seconds: float) -> None:
        self.engine = engine
        self.celery_app = celery_app
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        # The totals of rows that ended before ``_horizon``: read once, then extended.
        self._sealed: Totals = {}
        self._horizon: datetime | None = None

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, [*self._database(), *self._queues()])
            return list(self._cached[1])

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "issueflow_database_up", "1 when the last scrape could read the run tables."
        )
        try:
            with self.engine.connect() as connection:
                metrics = list(_run_metrics(connection, self._ended(connection)))
        except Exception as exc:  # the scrape must answer even with the database down
            log.warning("metrics: cannot read the database: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _ended(self, connection: Any) -> Totals:
        """The totals of every run and stage that ended: the sealed part is read once per
        process (the first scrape reads the whole table), later scrapes read only what
        ended since the horizon."""
        horizon = datetime.now(UTC) - SEAL_AFTER
        if self._horizon is None:
            sealed = _ended_rows(connection, None, horizon)
        elif horizon > self._horizon:
            sealed = _add(self._sealed, _ended_rows(connection, self._horizon, horizon))
        else:
            sealed, horizon = self._sealed, self._horizon
        live = _ended_rows(connection, horizon, None)
        self._sealed, self._horizon = sealed, horizon
        return _add(sealed, live)

    def _queues(self) -> Iterator[Metric]:
        if self.celery_app is None:
            return
        lengths = GaugeMetricFamily(
            "celery_queue_length", "Messages waiting in each queue.", labels=["queue_name"]
        )
        up = GaugeMetricFamily("issueflow_broker_up", "1 when the last scrape reached the broker.")
        try:
            for queue, length in queue_lengths(self.celery_app):
                lengths.add_metric([queue], length)
        except Exception as exc:
            log.warning("metrics: cannot read the queues: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield lengths


def queue_lengths(celery_app: Celery) -> list[tuple[str, int]]:
    """Each stage queue's length, as the broker reports it (0 for a queue not declared yet)."""
    lengths = []
    with celery_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        for queue in Queue:
            channel: Any = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue.value, passive=True)
            except connection.channel_errors:
                count = 0  # no such queue yet: nothing waits in it
            finally:
                channel.close()
            lengths.append((queue.value, int(count)))
    return lengths


def _seconds(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.date_part("epoch", later - earlier)  # double precision; extract is numeric
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _bucket_index(value: ColumnElement[Any], buckets: Sequence[float]) -> ColumnElement[int]:
    """The index of the first bucket whose bound holds ``value`` (``len(buckets)``: none)."""
    return case(*((value <= bound, n) for n, bound in enumerate(buckets)), else_=len(buckets))


# Additive totals of rows that will not change any more, keyed (family, label value): a
# vector of per-bucket counts and the sum for histograms, plain sums otherwise. Totals of
# two disjoint sets of rows add up to the totals of their union.
Totals = dict[tuple[str, str], list[float]]
HISTOGRAMS = {
    "issueflow_run_duration_seconds": RUN_BUCKETS,
    "issueflow_stage_duration_seconds": STAGE_BUCKETS,
    "issueflow_stage_queue_wait_seconds": WAIT_BUCKETS,
}
# Rows that ended this long ago are aggregated once and remembered; younger ones at each
# scrape. A row is final when it ends (its finished_at is set in the same statement), and
# commits follow their timestamps by milliseconds, so no row lands behind this horizon.
SEAL_AFTER = timedelta(minutes=10)


def _add(totals: Totals, more: Totals) -> Totals:
    merged = {key: list(vector) for key, vector in totals.items()}
    for key, vector in more.items():
        mine = merged.setdefault(key, [0.0] * len(vector))
        for n, value in enumerate(vector):
            mine[n] += value
    return merged


def _ended_rows(connection: Any, after: datetime | None, until: datetime | None) -> Totals:
    """The totals of the runs and stages that ended in ``(after, until]`` (None: open)."""
    dialect = connection.dialect.name
    runs = EnrichmentRun.__table__
    stages = EnrichmentStage.__table__
    totals: Totals = {}

    def window(column: Any) -> list[Any]:
        where = [column.is_not(None)]
        if after is not None:
            where.append(column > after)
        if until is not None:
            where.append(column <= until)
        return where

    def histogram(family: str, value: ColumnElement[Any], label: Any, query: Select[Any]) -> None:
        buckets = HISTOGRAMS[family]
        index = _bucket_index(value, buckets).label("bucket")
        grouped = query.add_columns(label.label("label"), index, func.count(), func.sum(value))
        for row_label, bucket, count, total in connection.execute(grouped.group_by(label, index)):
            vector = totals.setdefault((family, str(row_label)), [0.0] * (len(buckets) + 2))
            vector[int(bucket)] += count
            vector[-1] += float(total or 0)

    ended = [TaskState.SUCCESS, TaskState.FAILURE]
    histogram(
        "issueflow_run_duration_seconds",
        _seconds(runs.c.finished_at, runs.c.created_at, dialect),
        runs.c.state,
        select().select_from(runs).where(*window(runs.c.finished_at), runs.c.state.in_(ended)),
    )
    histogram(
        "issueflow_stage_duration_seconds",
        _seconds(stages.c.finished_at, stages.c.started_at, dialect),
        stages.c.name,
        select()
        .select_from(stages)
        .where(
            *window(stages.c.finished_at),
            stages.c.started_at.is_not(None),
            stages.c.state.in_(ended),
        ),
    )
    previous = aliased(EnrichmentStage)
    enqueued = case((stages.c.position == 0, runs.c.created_at), else_=previous.finished_at)
    histogram(
        "issueflow_stage_queue_wait_seconds",
        _seconds(stages.c.started_at, enqueued, dialect),
        stages.c.name,
        select()
        .select_from(stages)
        .join(runs, runs.c.id == stages.c.run_id)
        .outerjoin(
            previous,
            and_(previous.run_id == stages.c.run_id, previous.position == stages.c.position - 1),
        )
        .where(
            *window(stages.c.finished_at),
            stages.c.started_at.is_not(None),
            stages.c.state.in_(ended),
            enqueued.is_not(None),
        ),
    )
    provider_rows = connection.execute(
        select(
            stages.c.name,
            func.sum(func.coalesce(stages.c.prompt_tokens, 0)),
            func.sum(func.coalesce(stages.c.completion_tokens, 0)),
            func.sum(
                case((and_(stages.c.state == TaskState.SUCCESS, ~stages.c.cached), 1), else_=0)
            ),
            func.sum(case((stages.c.cached, 1), else_=0)),
            func.sum(case((stages.c.state == TaskState.FAILURE, 1), else_=0)),
        )
        .where(*window(stages.c.finished_at), stages.c.name.in_(PROVIDER_STAGES))
        .group_by(stages.c.name)
    )
    for name, *sums in provider_rows:
        totals[("provider", str(name))] = [float(value or 0) for value in sums]
    return totals


def _histogram_family(
    name: str, documentation: str, label_name: str, totals: Totals
) -> HistogramMetricFamily:
    buckets = HISTOGRAMS[name]
    family = HistogramMetricFamily(name, documentation, labels=[label_name])
    for (family_name, label), vector in sorted(totals.items()):
        if family_name != name:
            continue
        cumulative, running = [], 0.0
        for bound, count in zip((*map(str, map(float, buckets)), "+Inf"), vector, strict=False):
            running += count
            cumulative.append((bound, running))
        family.add_metric([label], cumulative, vector[-1])
    return family


def _run_metrics(connection: Any, ended: Totals) -> Iterator[Metric]:
    """Every ``issueflow_*`` family: counts of the run tables now, and ``ended`` (the
    totals of the runs and stages that ended)."""
    runs = EnrichmentRun.__table__
    retries = EnrichmentRetry.__table__

    by_state = dict(
        connection.execute(select(runs.c.state, func.count()).group_by(runs.c.state)).all()
    )
    total = CounterMetricFamily(
        "issueflow_runs", "Runs that ended, by final state.", labels=["state"]
    )
    for state in sorted(FINISHED_STATES):
        total.add_metric([state.value], by_state.get(state, 0))
    yield total
    going = GaugeMetricFamily("issueflow_runs_in_progress", "Runs not ended yet.")
    going.add_metric([], sum(n for state, n in by_state.items() if state not in FINISHED_STATES))
    yield going

    outbox = GaugeMetricFamily(
        "issueflow_outbox_runs", "Runs waiting for the broker (the outbox); the API resends them."
    )
    outbox.add_metric(
        [],
        connection.execute(
            select(func.count()).where(
                runs.c.dispatched.is_(False), runs.c.state == TaskState.PENDING
            )
        ).scalar_one(),
    )
    yield outbox

    resumed_runs, resumes = connection.execute(
        select(func.count(), func.coalesce(func.sum(runs.c.resumes), 0)).where(
            runs.c.resumed_at.is_not(None)
        )
    ).one()
    resumed = CounterMetricFamily(
        "issueflow_runs_resumed",
        "Runs resumed after they stalled (their message lost in the broker), at least once.",
    )
    resumed.add_metric([], resumed_runs)
    yield resumed
    resumed_total = CounterMetricFamily(
        "issueflow_run_resumes", "Resumes of stalled runs, all runs together."
    )
    resumed_total.add_metric([], resumes)
    yield resumed_total

    yield _histogram_family(
        "issueflow_run_duration_seconds",
        "Seconds from a run's creation to its final state, by final state.",
        "state",
        ended,
    )
    yield _histogram_family(
        "issueflow_stage_duration_seconds",
        "Seconds a stage's last attempt ran (started to succeeded or failed).",
        "stage",
        ended,
    )
    yield _histogram_family(
        "issueflow_stage_queue_wait_seconds",
        "Seconds an ended stage waited for a worker: from its enqueueing (the run's creation, "
        "or the previous stage's end) to its last start. High: that stage needs more workers.",
        "stage",
        ended,
    )

    retried = CounterMetricFamily(
        "issueflow_stage_retries", "Stage retries by reason.", labels=["stage", "reason"]
    )
    retry_counts = connection.execute(
        select(retries.c.stage, retries.c.reason, func.count()).group_by(
            retries.c.stage, retries.c.reason
        )
    ).all()
    for stage, reason, count in retry_counts:
        retried.add_metric([stage, reason], count)
    yield retried

    tokens = CounterMetricFamily(
        "issueflow_provider_tokens",
        "Tokens the provider reported for stages that ended, by stage and kind.",
        labels=["stage", "kind"],
    )
    requests = CounterMetricFamily(
        "issueflow_provider_requests",
        "Provider calls by stage attempt and outcome: ok, cached (no call: an earlier "
        "result was reused), failed (the stage failed), or the reason of a retry.",
        labels=["stage", "outcome"],
    )
    for (family_name, stage), sums in sorted(ended.items()):
        if family_name != "provider":
            continue
        prompt, completion, ok, cached, failed = sums
        tokens.add_metric([stage, "prompt"], prompt)
        tokens.add_metric([stage, "completion"], completion)
        requests.add_metric([stage, "ok"], ok)
        requests.add_metric([stage, "cached"], cached)
        requests.add_metric([stage, "failed"], failed)
    for stage, reason, count in retry_counts:
        if stage in PROVIDER_STAGES and reason in PROVIDER_REASONS:
            requests.add_metric([stage, reason], count)
    yield tokens
    yield requests


# -- HTTP metrics ------------------------------------------------------------------------


class HttpMetrics:
    """Pure ASGI middleware: counts and times each request by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            handler = _route_template(scope)
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, handler, str(status)).inc()
            HTTP_DURATION.labels(method, handler).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (413, 431) or no route: find the template, never the raw path.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        template = getattr(candidate, "path", None)
        if isinstance(template, str) and candidate.matches(scope)[0] != Match.NONE:
            return template
    return "unmatched"


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    dependencies=[ReadAccess],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **errors(401, 403, 422, 503),
    },
)
def metrics(request: Request) -> Response:
    """Prometheus text: the cluster view (``issueflow_*``, ``celery_queue_length``) and this
    process's HTTP and task metrics."""
    cluster: CollectorRegistry = request.app.state.cluster_registry
    body = render(metrics_registry()) + render(cluster)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
