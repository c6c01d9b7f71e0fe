"""The three stage tasks of the chain ``summarise | tag | persist``.

Each is thin: it takes ``run_id`` and ``issue_id`` (and the previous stage's small JSON
result), calls the provider or the database, and returns a small JSON value. Beginning,
finishing, retrying and failing are ``StageTask``'s (``pipelines.stage_task``); rate and
time limits come from the Celery app's ``task_annotations`` (``app.celery_app``).
"""

from __future__ import annotations

from typing import Any

from app.celery_app import celery_app
from pipelines.bookkeeping import persist_result
from pipelines.queues import Stage
from pipelines.stage_task import StageTask
from pipelines.usage import mark_cached
from pipelines.webhooks import events_after_commit


@celery_app.task(
    base=StageTask,
    bind=True,
    name=Stage.SUMMARISE.task_name,
    stage=Stage.SUMMARISE,
    reuses_results=True,
    finishes_behind=True,
)
def summarise(self: StageTask, *, run_id: str, issue_id: int) -> dict[str, Any]:
    """The summary; the result's ``fingerprint`` lets later runs of the same text reuse it.

    When an earlier run's result is reused, its tags travel along for the tag stage.
    """
    issue = self.issue
    key = self.fingerprint
    earlier = self.earlier_result()
    if earlier is not None:
        return {"summary": earlier["ai_summary"], "tags": earlier["tags"], "fingerprint": key}
    return {"summary": self.provider().summarise(issue.title, issue.body), "fingerprint": key}


@celery_app.task(base=StageTask, bind=True, name=Stage.TAG.task_name, stage=Stage.TAG)
def tag(self: StageTask, previous: dict[str, Any], *, run_id: str, issue_id: int) -> dict[str, Any]:
    issue = self.issue
    summary = previous["summary"]
    tags = previous.get("tags")
    if tags is not None:
        mark_cached()  # summarise reused an earlier result; its tags come with it
    else:
        tags = self.provider().tag(issue.title, issue.body, summary)
    return {"summary": summary, "tags": tags, "fingerprint": previous.get("fingerprint")}


@celery_app.task(
    base=StageTask,
    bind=True,
    name=Stage.PERSIST.task_name,
    stage=Stage.PERSIST,
    tracks_progress=False,
)
def persist(self: StageTask, previous: dict[str, Any], *, run_id: str, issue_id: int) -> bool:
    """Write summary and tags in one transaction (PostgreSQL: one statement, two round trips
    with its BEGIN and COMMIT); a redelivered persist changes nothing.

    With a webhook set up, ``issue.enriched`` is recorded in that transaction and sent
    once it commits."""
    context = self.context
    with (
        events_after_commit(context.settings, context.engine) as events,
        context.result_transaction() as connection,
    ):
        return persist_result(
            connection,
            run_id=run_id,
            issue_id=issue_id,
            summary=previous["summary"],
            tags=previous["tags"],
            fingerprint=previous.get("fingerprint"),
            events=events,
        )
