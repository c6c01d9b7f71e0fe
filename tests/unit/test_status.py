"""Assembling a chain's status from its run record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.models import EnrichmentRun, EnrichmentStage
from app.services.runs import chain_state, task_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def run(*states: str, run_state: str = "PENDING", **fields: object) -> EnrichmentRun:
    stages = [
        EnrichmentStage(
            position=i,
            name=name,
            queue=name,
            task_id=f"t{i}",
            state=state,
            retries=0,
            error=None,
            started_at=None,
            finished_at=None,
        )
        for i, (name, state) in enumerate(zip(("summarise", "tag", "persist"), states, strict=True))
    ]
    return EnrichmentRun(
        id="t0",
        issue_id=1,
        state=run_state,
        created_at=NOW,
        stages=stages,
        error=fields.get("error"),
        result=fields.get("result"),
        finished_at=fields.get("finished_at"),
    )


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("PENDING", "PENDING", "PENDING"), "PENDING"),
        (("STARTED", "PENDING", "PENDING"), "STARTED"),
        (("SUCCESS", "PENDING", "PENDING"), "PENDING"),  # between stages
        (("SUCCESS", "RETRY", "PENDING"), "RETRY"),
        (("SUCCESS", "SUCCESS", "STARTED"), "STARTED"),
    ],
)
def test_unfinished_run_reads_as_its_first_unfinished_stage(
    states: tuple[str, str, str], expected: str
) -> None:
    assert chain_state(run(*states)) == expected


@pytest.mark.parametrize("final", ["SUCCESS", "FAILURE", "REVOKED"])
def test_finished_run_reads_as_its_own_state(final: str) -> None:
    assert chain_state(run("SUCCESS", "STARTED", "PENDING", run_state=final)) == final


def test_status_counts_progress_and_carries_result() -> None:
    status = task_status(
        run(
            "SUCCESS",
            "SUCCESS",
            "SUCCESS",
            run_state="SUCCESS",
            result={"ai_summary": "S", "tags": ["bug"]},
            finished_at=NOW,
        )
    )
    assert status.progress.completed == 3
    assert status.progress.total == 3
    assert status.result is not None
    assert status.result.tags == ["bug"]
    assert [stage.name for stage in status.stages] == ["summarise", "tag", "persist"]


def test_failed_status_names_stage_and_reason() -> None:
    status = task_status(
        run("SUCCESS", "FAILURE", "REVOKED", run_state="FAILURE", error="tag: PermanentError: 401")
    )
    assert status.state == "FAILURE"
    assert status.error == "tag: PermanentError: 401"
    assert status.progress.completed == 1
    assert status.result is None
