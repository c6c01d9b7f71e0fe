"""FastAPI dependencies: settings, a database session per request (or a read-only one),
the API-key check."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings


async def get_settings_dep(request: Request) -> Settings:
    # Dependencies that do no I/O are ``async``: FastAPI runs a plain ``def`` in the thread
    # pool, a trip that costs more than the dependency itself on every request.
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(request: Request) -> Iterator[Session]:
    """A session for the request; the route commits (``with session.begin()``) what it writes."""
    with request.app.state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_autocommit_session(request: Request) -> AsyncIterator[Session]:
    """A session for a route whose every statement is a transaction of its own (a read of
    one statement, ``POST /issues``' one insert): on PostgreSQL its pool is in autocommit,
    so a statement is one round trip, no BEGIN, no COMMIT or ROLLBACK.

    ``async``, with no thread-pool trip: opening the session does no I/O, and closing it
    hands an autocommit connection back to the pool without a ROLLBACK.
    """
    session: Session = request.app.state.autocommit_session_factory()
    try:
        yield session
    finally:
        session.close()


AutocommitSessionDep = Annotated[Session, Depends(get_autocommit_session)]

_bearer = HTTPBearer(auto_error=False, description="One of the keys in API_KEYS")


def key_matches(settings: Settings, offered: str) -> bool:
    """Whether ``offered`` is one of ``API_KEYS``."""
    raw = offered.encode()
    # Compare with every key, always, so the time taken says nothing about which matched.
    matches = [
        hmac.compare_digest(raw, key.get_secret_value().encode()) for key in settings.api_keys
    ]
    return any(matches)


def _check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if not settings.api_keys:
        return
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_matches(settings, credentials.credentials):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


async def require_write_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    _check_key(settings, credentials)


async def require_read_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.api_read_requires_key:
        _check_key(settings, credentials)


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
