"""The FastAPI application: ``uvicorn app.main:app``."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from app import ui
from app.api import health, issues, tasks, webhooks
from app.api.errors import errors, install_error_handlers
from app.api.metrics import ClusterCollector, HttpMetrics
from app.api.metrics import router as metrics_router
from app.api.query import reject_unknown_query_parameters
from app.broker_policy import eviction_warning
from app.celery_app import celery_app
from app.config import REQUEST_MAX_BYTES, Settings, get_settings
from app.db import make_autocommit_engine, make_engine, make_session_factory
from app.logs import configure_logging
from app.middleware import BodySizeLimit, HeaderSizeLimit
from app.progress import SESSION_PUBLISHER, ProgressPublisher
from app.tracing import setup_tracing, trace_app
from pipelines.dispatch import OutboxSweeper
from pipelines.recovery import recover_lost_runs, stalled_run_after
from pipelines.webhooks import lost_after as webhook_lost_after
from pipelines.webhooks import send_undispatched

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, sweep_outbox: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = (
            OutboxSweeper(
                engine,
                settings.outbox_sweep_interval,
                recover=_recovery(engine, settings),
                recover_every=settings.recover_interval,
                sweeps=[
                    functools.partial(
                        send_undispatched, engine, lost_after=webhook_lost_after(settings)
                    )
                ],
            )
            if sweep_outbox
            else None
        )
        if sweeper:
            sweeper.start()
        if settings.broker_is_redis:
            warning = eviction_warning(settings.celery_broker_url)
            if warning is not None:
                log.warning("%s (README, Reliability)", warning)
        freeze_startup_objects()
        yield
        if sweeper:
            sweeper.stop()
        progress.close()
        engine.dispose()
        if autocommit_engine is not engine:
            autocommit_engine.dispose()

    tracing = setup_tracing("issueflow-api")  # before the engine: its statements are traced
    engine = make_engine(settings.database_url)
    # /docs and /redoc load Swagger UI and ReDoc from the installed fastapi-offline package
    # (served under /static-offline-docs), never from a CDN: they work offline.
    app: FastAPI = FastAPIOffline(
        title="issueflow",
        summary="Issues enriched in the background by a Celery pipeline",
        version="0.1.0",
        lifespan=lifespan,
        # Any request, on any route, is refused when its headers are too large, or when its
        # query names a parameter the route does not take.
        responses=errors(422, 431),
        dependencies=[Depends(reject_unknown_query_parameters)],
    )
    app.state.settings = settings
    if tracing:
        trace_app(app)
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    # Routes whose statements are each a transaction of their own (GET /tasks/<id>'s
    # SELECT, POST /issues' insert): on PostgreSQL a pool in autocommit, so the statement
    # is the only round trip (no BEGIN, no COMMIT or ROLLBACK).
    autocommit_engine = make_autocommit_engine(settings.database_url, engine)
    app.state.autocommit_session_factory = make_session_factory(autocommit_engine)
    # Runs the API ends (cancel, supersede, delete) are published once their commit lands.
    progress = ProgressPublisher.from_settings(settings)
    app.state.session_factory.configure(info={SESSION_PUBLISHER: progress})
    app.add_middleware(BodySizeLimit, max_bytes=REQUEST_MAX_BYTES)
    app.add_middleware(HeaderSizeLimit)
    app.add_middleware(HttpMetrics)  # outermost: refused requests are counted too
    app.include_router(issues.router)
    app.include_router(tasks.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.state.cluster_registry = CollectorRegistry(auto_describe=False)
    app.state.cluster_registry.register(
        ClusterCollector(engine, celery_app, settings.metrics_cache_seconds)
    )
    app.include_router(ui.router)

    _describe_security(app, settings)

    install_error_handlers(app)
    return app


_frozen: list[bool] = []


def freeze_startup_objects() -> None:
    """Move what exists once the app has started (modules, the app, its routes, pydantic
    and SQLAlchemy's caches: hundreds of thousands of objects) out of the garbage
    collector's reach, once per process.

    They live as long as the process, yet every full collection scanned them all: a pause
    of tens of milliseconds, in the middle of whichever request allocated at that moment,
    and the bulk of POST /issues' p99 at a steady rate. Done once: a process that builds
    many apps (the tests) pays the collection once.
    """
    if _frozen:
        return
    _frozen.append(True)
    gc.collect()
    gc.freeze()


def _recovery(engine: Engine, settings: Settings) -> Callable[[], int] | None:
    """The sweeper's look for stalled runs, whose message a Redis broker lost
    (``pipelines.recovery``), if any."""
    if not settings.recover_interval or not settings.broker_is_redis:
        return None  # RabbitMQ acknowledges deliveries itself and loses no message this way
    return functools.partial(
        recover_lost_runs,
        engine,
        broker_url=settings.celery_broker_url,
        stalled_after=stalled_run_after(settings),
        max_resumes=settings.max_resumes,
        lock_key=f"{settings.redis_key_prefix}recovery-lock",
        lock_seconds=settings.recover_interval * 0.9,
    )


def _describe_security(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI schema asks for a key only where this deployment checks one.

    Every route has the bearer dependency; without ``API_KEYS`` none checks it, and reads
    check it only with ``API_READ_REQUIRES_KEY``.
    """
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        for path_item in schema.get("paths", {}).values():
            for method, operation in path_item.items():
                reads = method in ("get", "head")
                if not settings.api_keys or (reads and not settings.api_read_requires_key):
                    operation.pop("security", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


configure_logging()
app = create_app()
