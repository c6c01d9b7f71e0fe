"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.broker_policy import cached_eviction_warning
from app.celery_app import celery_app
from app.deps import SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


def _broker_reachable() -> str | None:
    """None when the broker answers, else why not."""
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            connection.default_channel  # noqa: B018 - opening a channel talks to the server
    except Exception as exc:  # every transport raises its own kinds; all mean "not ready"
        return type(exc).__name__
    return None


@router.get("/readyz", responses={503: {"description": "The database or the broker is down"}})
def readyz(session: SessionDep, settings: SettingsDep) -> Any:
    """Ready when the database and the broker both answer.

    ``warnings`` lists what does not stop the service but can lose work: a Redis broker
    that evicts keys (``app.broker_policy``).
    """
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    broker_error = _broker_reachable()
    checks["broker"] = "ok" if broker_error is None else f"unreachable: {broker_error}"
    ready = all(value == "ok" for value in checks.values())
    warnings = []
    if broker_error is None and settings.broker_is_redis:
        warning = cached_eviction_warning(settings.celery_broker_url)
        if warning is not None:
            warnings.append(warning)
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks, "warnings": warnings},
        status_code=200 if ready else 503,
    )
