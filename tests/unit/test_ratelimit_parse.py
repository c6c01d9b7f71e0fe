"""parse_rate: Celery's rate syntax."""

from __future__ import annotations

import pytest

from app.config import parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/s", (10.0, 1.0)),
        ("60/m", (60.0, 60.0)),
        ("100/h", (100.0, 3600.0)),
        ("5", (5.0, 1.0)),
        ("0.5/s", (0.5, 1.0)),
        ("2.5", (2.5, 1.0)),
        (" 30 / m ", (30.0, 60.0)),
    ],
)
def test_valid_rates(text: str, expected: tuple[float, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "/s",
        "10/",
        "10/d",
        "10/sec",
        "ten/s",
        "-1/s",
        "1e3/s",
        "10/s/m",
        "10 per s",
        "0",
        "0/m",
        "0.0/s",
    ],
)
def test_invalid_rates(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_error_names_the_input_and_the_syntax() -> None:
    with pytest.raises(ValueError, match="10/d") as caught:
        parse_rate("10/d")
    assert "'10/d'" in str(caught.value)
    assert "'60/m'" in str(caught.value)


def test_non_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(10)  # type: ignore[arg-type]
