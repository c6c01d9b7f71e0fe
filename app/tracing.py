"""OpenTelemetry tracing (the ``otel`` extra): one trace per run, from the POST to persist.

With the extra installed (``pip install 'issueflow[otel]'``) and
``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the API and every worker export spans over OTLP/HTTP:
the HTTP request (FastAPI), each publish and each stage's run (Celery: the trace context
travels in the message headers, so the three queues share one trace), the provider's HTTP
calls (httpx) and every SQL statement (SQLAlchemy). The usual ``OTEL_*`` variables apply
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` ...).
Without either, nothing here does anything, and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals
from sqlalchemy import Engine

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Probes and scrapes would be most of the traces, and say nothing.
EXCLUDED_URLS = "healthz,readyz,metrics"

_provider: Any = None
_instrumentors: list[Any] = []


def tracing_requested() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def tracing_active() -> bool:
    return _provider is not None


def setup_tracing(service_name: str, *, tracer_provider: Any = None) -> bool:
    """Start tracing in this process (once); True when it is on.

    Without ``tracer_provider`` (tests pass one with an in-memory exporter) it is on only
    when an OTLP endpoint is configured and the ``otel`` extra is installed.
    """
    global _provider
    if _provider is not None:
        return True
    if tracer_provider is None:
        if not tracing_requested():
            return False
        try:
            tracer_provider = _otlp_provider(service_name)
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'issueflow[otel]'; no traces are sent"
            )
            return False
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    celery_instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (celery_instrumentor, HTTPXClientInstrumentor()):
        instrumentor.instrument(tracer_provider=tracer_provider)
        _instrumentors.append(instrumentor)
    _provider = tracer_provider
    log.info("tracing on: %s", service_name)
    return True


def teardown_tracing() -> None:
    """Stop tracing in this process (tests)."""
    global _provider
    for instrumentor in _instrumentors:
        instrumentor.uninstrument()
    _instrumentors.clear()
    _provider = None


def _otlp_provider(service_name: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    # BatchSpanProcessor re-creates its export thread in a forked pool process.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def trace_app(app: Any) -> None:
    """Spans for the API's requests (by route template)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS)


def trace_engine(engine: Engine) -> None:
    """Spans for an engine's statements (``app.db.make_engine`` calls this for each one)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import get_tracer

    tracer = get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__, _provider)
    connections = get_meter("issueflow", __version__).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(tracer, engine, connections)  # type: ignore[no-untyped-call]


@signals.worker_init.connect
def _worker_tracing(**_: Any) -> None:
    """A worker traces its stages; a forked pool process inherits it (the SDK's span
    processor restarts its thread after the fork)."""
    setup_tracing("issueflow-worker")
