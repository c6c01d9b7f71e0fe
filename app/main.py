"""The FastAPI application: ``uvicorn app.main:app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from app import ui
from app.api import health, issues, tasks
from app.api.errors import errors
from app.config import REQUEST_MAX_BYTES, Settings, get_settings
from app.db import make_engine, make_session_factory
from app.middleware import BodySizeLimit, HeaderSizeLimit
from app.progress import SESSION_PUBLISHER, ProgressPublisher
from pipelines.dispatch import OutboxSweeper

log = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


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
        progress.close()
        engine.dispose()

    engine = make_engine(settings.database_url)
    app = FastAPI(
        title="issueflow",
        summary="Issues enriched in the background by a Celery pipeline",
        version="0.1.0",
        lifespan=lifespan,
        # Any request, on any route, is refused when its headers are too large.
        responses=errors(431),
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    # Runs the API ends (cancel, supersede, delete) are published once their commit lands.
    progress = ProgressPublisher.from_settings(settings)
    app.state.session_factory.configure(info={SESSION_PUBLISHER: progress})
    app.add_middleware(BodySizeLimit, max_bytes=REQUEST_MAX_BYTES)
    app.add_middleware(HeaderSizeLimit)
    app.include_router(issues.router)
    app.include_router(tasks.router)
    app.include_router(health.router)
    app.include_router(ui.router)

    _describe_security(app, settings)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 405:
            # Starlette's Allow names only the first route of the path; list them all.
            allow = ", ".join(_allowed_methods(app, request.scope))
            exc = StarletteHTTPException(405, exc.detail, {**(exc.headers or {}), "Allow": allow})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        try:
            return await request_validation_exception_handler(request, exc)
        except (ValueError, RecursionError):
            # The input echoed back is no JSON (NaN, Infinity, 1e999 are floats to json.loads
            # but not to json.dumps), or nested just shallower than the parser's limit and too
            # deep to encode again: report the errors without it.
            detail = [
                {key: value for key, value in error.items() if key not in ("input", "ctx")}
                for error in exc.errors()
            ]
            return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error(
            "database error on %s %s: %s",
            request.method,
            request.url.path,
            type(exc.orig).__name__ if exc.orig else exc,
        )
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)

    return app


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route fully matches for this path (probed through the router)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    ]


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


app = create_app()
