"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


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
        if not isinstance(position[key], kind) or isinstance(position[key], bool):
            raise InvalidCursor("invalid cursor")
    return position
