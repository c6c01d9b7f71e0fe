"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from app.schemas import UNSTORABLE

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
