"""The API-key check (app.deps): every configured key is compared, in constant time."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable

import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials

from app import deps
from app.config import Settings

KEYS = ["key-one", "key-two", "key-three"]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """Every call of hmac.compare_digest, with its arguments; the real function still runs."""
    calls: list[tuple[object, object]] = []
    real: Callable[[object, object], bool] = hmac.compare_digest

    def counting(a: object, b: object) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", counting)
    return calls


def offer(key: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_compared_whichever_matches(
    compared: list[tuple[object, object]], key: str
) -> None:
    deps._check_key(Settings(api_keys=",".join(KEYS)), offer(key))
    assert len(compared) == len(KEYS)
    # Bytes on both sides (compare_digest on str refuses non-ASCII), each key once.
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in compared)
    assert sorted(b for _, b in compared) == sorted(k.encode() for k in KEYS)


@pytest.mark.parametrize("key", ["nope", "", "key-one ", "key-on", "key-one-and-more", "ключ"])
def test_a_wrong_key_is_compared_with_every_key_and_refused(
    compared: list[tuple[object, object]], key: str
) -> None:
    with pytest.raises(HTTPException) as refused:
        deps._check_key(Settings(api_keys=",".join(KEYS)), offer(key))
    assert refused.value.status_code == 403
    assert len(compared) == len(KEYS)
    assert refused.value.detail == "invalid API key"  # the offered key is not echoed


def test_no_credentials_is_401_with_a_challenge(compared: list[tuple[object, object]]) -> None:
    with pytest.raises(HTTPException) as refused:
        deps._check_key(Settings(api_keys="k1"), None)
    assert refused.value.status_code == 401
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}
    assert compared == []


def test_without_keys_nothing_is_checked(compared: list[tuple[object, object]]) -> None:
    deps._check_key(Settings(), None)
    deps._check_key(Settings(), offer("anything"))
    assert compared == []


def test_reads_are_checked_only_when_configured(compared: list[tuple[object, object]]) -> None:
    # The dependencies are async (no I/O: FastAPI then runs them without a thread-pool trip).
    asyncio.run(deps.require_read_key(Settings(api_keys="k1"), None))  # open
    with pytest.raises(HTTPException) as refused:
        asyncio.run(
            deps.require_read_key(Settings(api_keys="k1", api_read_requires_key=True), None)
        )
    assert refused.value.status_code == 401
    asyncio.run(
        deps.require_read_key(Settings(api_keys="k1", api_read_requires_key=True), offer("k1"))
    )
    with pytest.raises(HTTPException):
        asyncio.run(deps.require_write_key(Settings(api_keys="k1"), offer("k2")))


def test_keys_come_from_the_environment_and_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " env-key-1 , env-key-2,,")
    monkeypatch.setenv("API_READ_REQUIRES_KEY", "true")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["env-key-1", "env-key-2"]
    assert settings.api_read_requires_key is True
    assert "env-key" not in repr(settings)
    assert "env-key" not in str(settings.model_dump())
