"""The FastAPI application: ``uvicorn app.main:app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from app.api import health, issues, tasks
from app.config import REQUEST_MAX_BYTES, Settings, get_settings
from app.db import make_engine, make_session_factory
from app.middleware import BodySizeLimit
from pipelines.outbox import OutboxSweeper

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, sweep_outbox: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = OutboxSweeper(engine, settings.outbox_sweep_interval) if sweep_outbox else None
        if sweeper:
            sweeper.start()
        yield
        if sweeper:
            sweeper.stop()
        engine.dispose()

    engine = make_engine(settings.database_url)
    app = FastAPI(
        title="issueflow",
        summary="Issues enriched in the background by a Celery pipeline",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.add_middleware(BodySizeLimit, max_bytes=REQUEST_MAX_BYTES)
    app.include_router(issues.router)
    app.include_router(tasks.router)
    app.include_router(health.router)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path,
                  type(exc.orig).__name__ if exc.orig else exc)
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)

    return app


app = create_app()
