"""A chain's status, assembled from its run record: Celery has no chain-level state."""

from __future__ import annotations

from app.models import EnrichmentRun, TaskState
from app.schemas import EnrichmentResult, Progress, StageRead, TaskStatusRead


def chain_state(run: EnrichmentRun) -> str:
    """The run's own state once it has ended; before that, the first unfinished stage's.

    Between two stages (one done, the next not started) that is ``PENDING``.
    """
    if run.state in (TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED):
        return run.state
    for stage in run.stages:
        if stage.state != TaskState.SUCCESS:
            return stage.state
    return TaskState.STARTED  # every stage done, the run not yet marked: persist is committing


def task_status(run: EnrichmentRun) -> TaskStatusRead:
    stages = [StageRead.model_validate(stage, from_attributes=True) for stage in run.stages]
    return TaskStatusRead(
        task_id=run.id,
        issue_id=run.issue_id,
        state=chain_state(run),  # type: ignore[arg-type]
        progress=Progress(
            completed=sum(stage.state == TaskState.SUCCESS for stage in stages),
            total=len(stages),
        ),
        stages=stages,
        result=EnrichmentResult(**run.result) if run.result is not None else None,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )
