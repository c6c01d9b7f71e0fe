"""Keyset pagination: opaque cursors, and the newest-first page that the lists share."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.schemas import UNSTORABLE

Row = TypeVar("Row")

# What a cursor this API made never holds, and the databases refuse as a query parameter:
# integers beyond 64 bits (SQLite: OverflowError), NUL and lone surrogates (PostgreSQL).
_INT64 = range(-(2**63), 2**63)


class InvalidCursor(ValueError):
    """The client sent a cursor this API did not make."""


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, keys: dict[str, type]) -> dict[str, Any]:
    """The position in ``cursor``; every key must be present with the given type."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    if not isinstance(position, dict) or set(position) != set(keys):
        raise InvalidCursor("invalid cursor")
    for key, kind in keys.items():
        # bool is an int in Python; a cursor never holds one.
        value = position[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidCursor("invalid cursor")
        if (
            (isinstance(value, int) and value not in _INT64)
            or (isinstance(value, str) and UNSTORABLE.search(value))
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise InvalidCursor("invalid cursor")
    return position


def newest_first_page(
    session: Session,
    query: Select[Row],
    *,
    created_at: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row], str | None]:
    """One page of ``query``'s rows, newest ``created_at`` first (``key`` breaks ties), after
    ``cursor``; and the cursor of the next page, None on the last. Raises InvalidCursor."""
    query = query.order_by(created_at.desc(), key.desc())
    if cursor is not None:
        position = decode_cursor(cursor, keys={"created_at": str, "id": str})
        after = _aware(position["created_at"])
        query = query.where(or_(created_at < after, (created_at == after) & (key < position["id"])))
    rows = session.scalars(query.limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(
        {"created_at": getattr(last, created_at.key).isoformat(), "id": getattr(last, key.key)}
    )


def _aware(text: str) -> datetime:
    """A cursor's timestamp, in UTC. The cursors this API makes are aware; one near the ends
    of time may have no UTC."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor("invalid cursor") from exc
