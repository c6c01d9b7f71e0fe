from __future__ import annotations

import pytest

from app.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.schemas import IssueCreate, storable_text


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor({"id": 42}), keys={"id": int}) == {"id": 42}


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        encode_cursor({"id": "42"}),
        encode_cursor({"id": True}),
        encode_cursor({"id": 1, "x": 2}),
        encode_cursor([1]),
    ],  # type: ignore[arg-type]
)
def test_foreign_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, keys={"id": int})


def test_storable_text_replaces_only_what_postgres_refuses() -> None:
    assert storable_text("a\x00b\ud800c\udfff😀é") == "a\ufffdb\ufffdc\ufffd😀é"
    assert storable_text(7) == 7


def test_title_with_only_whitespace_is_empty() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        IssueCreate(title=" \n\t ")
