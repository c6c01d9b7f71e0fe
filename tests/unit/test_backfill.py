"""The backfill's pure pieces: --since parsing, the pacer, the checkpoint file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.backfill import BackfillError, Checkpoint, Pacer, Selection, parse_since


def test_since_takes_a_date_or_an_iso_time_in_utc() -> None:
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T12:30:00") == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert parse_since("2026-11-01T12:30:00+02:00") == datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    with pytest.raises(BackfillError, match="--since wants a date"):
        parse_since("last week")


def test_the_pacer_keeps_an_absolute_schedule() -> None:
    now = [100.0]
    pacer = Pacer(10, clock=lambda: now[0])
    assert pacer.delay() == 0.0
    pacer.take(5)  # 5 items at 10/s: the next may go at 100.5
    assert pacer.delay() == pytest.approx(0.5)
    now[0] = 101.0  # late: the next go at once, the schedule is not pushed back
    assert pacer.delay() == 0.0
    pacer.take(20)  # item 25 is due at 102.5
    assert pacer.delay() == pytest.approx(1.5)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_the_pacer_refuses_a_rate_that_is_not_positive(rate: float) -> None:
    with pytest.raises(BackfillError, match="--rate"):
        Pacer(rate)


def test_a_checkpoint_is_resumed_only_by_the_same_selection(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    missing = Selection("missing")
    Checkpoint(selection=missing.key(), last_id=41, max_id=99, sent=7).save(path)
    loaded = Checkpoint.load(path, missing)
    assert loaded is not None
    assert (loaded.last_id, loaded.max_id, loaded.sent) == (41, 99, 7)
    assert Checkpoint.load(path, Selection("all")) is None
    assert Checkpoint.load(path, Selection("missing", datetime(2026, 1, 1, tzinfo=UTC))) is None
    assert Checkpoint.load(tmp_path / "absent.json", missing) is None
    path.write_text('{"selection": "missing:", "last_id": "x"}')
    with pytest.raises(BackfillError, match="damaged"):
        Checkpoint.load(path, missing)
