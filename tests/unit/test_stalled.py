"""STALLED_RUN_AFTER: its derived default, its deprecated name, and the delivery lease."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.config import Settings
from pipelines.deliveries import LEASE_MARGIN, lease_for
from pipelines.recovery import STALLED_MARGIN, stalled_run_after


def test_the_default_is_the_longest_silence_of_a_healthy_run() -> None:
    # 120 s attempt + 600 s backoff cap + 10 s unacked restore interval + 30 s margin.
    assert stalled_run_after(Settings()) == 760


def test_the_backoff_cap_counts_only_as_far_as_the_visibility_timeout_lets_a_countdown_go() -> None:
    settings = Settings(
        celery_visibility_timeout=300, tag_time_limit=200, tag_retry_backoff_max=3000
    )
    # tag: 200 s + min(3000, 300 - 200 - 5) = 295 s; the others: 120 + min(600, 175) = 295.
    assert stalled_run_after(settings) == 295 + 10 + STALLED_MARGIN


def test_stalled_run_after_is_read_under_its_old_name_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVER_GRACE", "45")
    assert stalled_run_after(Settings()) == 45
    monkeypatch.setenv("STALLED_RUN_AFTER", "90")
    assert Settings().stalled_run_after == 90
    monkeypatch.delenv("RECOVER_GRACE")
    monkeypatch.setenv("STALLED_RUN_AFTER", "")
    assert Settings().stalled_run_after is None


def test_a_redelivered_message_takes_over_at_once_a_duplicate_waits_out_the_time_limit() -> None:
    assert lease_for(20, alive_elsewhere=False) is None
    assert lease_for(20, alive_elsewhere=True) == timedelta(seconds=20 + LEASE_MARGIN)
