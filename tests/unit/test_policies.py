"""Per-stage retry policy: defaults, equal-jitter backoff, caps below the visibility timeout."""

from __future__ import annotations

import random

import pytest

from app.config import Settings
from pipelines.policies import PolicyError, StagePolicy, policy_for
from pipelines.queues import Stage


def test_defaults_follow_the_contract() -> None:
    settings = Settings()
    assert [policy_for(stage, settings).max_retries for stage in Stage] == [3, 3, 5]
    assert [policy_for(stage, settings).backoff for stage in Stage] == [10, 10, 2]
    assert all(policy_for(stage, settings).backoff_max == 600 for stage in Stage)
    assert all(policy_for(stage, settings).time_limit == 120 for stage in Stage)
    assert all(policy_for(stage, settings).rate_limit is None for stage in Stage)


def test_environment_sets_each_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAG_MAX_RETRIES", "7")
    monkeypatch.setenv("TAG_RATE_LIMIT", "60/m")
    monkeypatch.setenv("PERSIST_RETRY_BACKOFF", "0.5")
    settings = Settings()
    assert policy_for(Stage.TAG, settings).max_retries == 7
    assert policy_for(Stage.TAG, settings).rate_limit == "60/m"
    assert policy_for(Stage.PERSIST, settings).backoff == 0.5
    assert policy_for(Stage.SUMMARISE, settings).max_retries == 3


@pytest.mark.parametrize("bad", ["fast", "10/d", "-1/s", "10 per s"])
def test_bad_rate_limit_is_refused_with_a_clear_message(bad: str) -> None:
    with pytest.raises(ValueError, match="rate limit must look like"):
        Settings(tag_rate_limit=bad)


def policy(**overrides: float) -> StagePolicy:
    values: dict = {
        "max_retries": 3,
        "backoff": 10,
        "backoff_max": 600,
        "rate_limit": None,
        "time_limit": 120,
        "visibility_timeout": 3600,
    }
    return StagePolicy(**{**values, **overrides})


def test_backoff_doubles_with_equal_jitter_never_zero() -> None:
    rng = random.Random(7)
    for retries in range(6):
        step = 10 * 2**retries
        waits = [policy().countdown(retries, rng=rng) for _ in range(200)]
        assert min(waits) >= step / 2
        assert max(waits) <= step
        assert max(waits) - min(waits) > step / 10  # it really is jittered


def test_backoff_is_capped_by_backoff_max() -> None:
    waits = [policy(backoff_max=30).countdown(20) for _ in range(100)]
    assert all(15 <= wait <= 30 for wait in waits)


def test_countdown_plus_attempt_stays_below_visibility_timeout() -> None:
    tight = policy(backoff_max=10_000, visibility_timeout=300, time_limit=100)
    assert tight.longest_wait == 300 - 100 - 5
    assert all(tight.countdown(30) + tight.time_limit < 300 for _ in range(100))


def test_retry_after_is_honoured_in_full_when_longer() -> None:
    assert policy().countdown(0, retry_after=42) == 42
    # RETRY_BACKOFF_MAX bounds our own backoff, not the server's instruction.
    assert policy(backoff=1, backoff_max=2).countdown(0, retry_after=3) == 3
    # Longer than one countdown may be: the whole wait is reported; StageTask hops it.
    assert policy(backoff_max=60).countdown(0, retry_after=10_000) == 10_000
    # A shorter Retry-After does not shorten the backoff.
    assert policy().countdown(3, retry_after=1) >= 40


def test_time_limit_too_close_to_visibility_timeout_is_refused() -> None:
    settings = Settings(celery_visibility_timeout=60, summarise_time_limit=58)
    with pytest.raises(PolicyError, match="SUMMARISE_TIME_LIMIT=58"):
        policy_for(Stage.SUMMARISE, settings)


def test_soft_time_limit_comes_first() -> None:
    assert 0 < policy(time_limit=120).soft_time_limit < 120
    assert 0 < policy(time_limit=2).soft_time_limit < 2
