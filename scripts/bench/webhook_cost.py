"""What webhooks add to the end of a run: persist with and without NOTIFY_WEBHOOK_URL.

    scripts/bench/webhook_cost [-n 300] [--rounds 5]

In one process, against a PostgreSQL server and a redis-server of the benchmark's own: for
each chain the producer's transaction (not measured), then the persist task called in
process (``StageTask.__call__`` and its body: ``persist_result`` in one transaction). With
webhooks ``off`` that is all; ``on`` adds what a run's end then does: the ``issue.enriched``
row in the same transaction (the issue's title read, an ``INSERT ... ON CONFLICT DO
NOTHING``), and after the commit the ``webhooks.deliver`` message published to Redis and
the row marked dispatched. No notify worker runs: sending is the notify queue's work, not
the pipeline's. The two take turns, round after round; per persist: this process's CPU,
the PostgreSQL server's CPU, wall time and SQL statements; median, min and max.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from common import BENCH_ENV, ISSUE_BODY, Database, table, tree_ticks

from tests.support.processes import Processes
from tests.support.servers import RedisServer

VARIANTS = ("off", "on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="persists per variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; median, min and max shown")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    procs = Processes(BENCH_ENV, work)
    db = Database("postgres", procs)
    (work / "redis").mkdir()
    broker = RedisServer(procs, workdir=work / "redis").start()
    try:
        os.environ.update(
            {
                "DATABASE_URL": db.url,
                "ENRICH_PROVIDER": "noop",
                "CELERY_BROKER_URL": broker.url(),
                "CELERY_RESULT_BACKEND": "",
            }
        )
        print(run(args, db, broker))
    finally:
        procs.stop_all()
        db.drop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, db: Database, broker: RedisServer) -> str:
    from sqlalchemy import event, func, select
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.models import WebhookDelivery
    from app.schemas import IssueCreate
    from app.services.issues import create_issue
    from app.services.runs import record_run
    from pipelines.context import WorkerContext, use_context
    from pipelines.dispatch import stage_specs
    from pipelines.enrichment import persist
    from pipelines.queues import Queue, Stage

    assert db.server is not None
    base = Settings(database_url=db.url, enrich_provider="noop")
    contexts = {
        "off": WorkerContext.build(base),
        "on": WorkerContext.build(
            base.model_copy(update={"notify_webhook_url": "http://127.0.0.1:9/hook"})
        ),
    }
    statements = [0]
    for context in contexts.values():
        event.listen(
            context.engine,
            "before_cursor_execute",
            lambda *a: statements.__setitem__(0, statements[0] + 1),
        )
    data = IssueCreate(title="Settings page hangs on save", body=ISSUE_BODY)
    previous = {"summary": "The settings page hangs on save.", "tags": ["ui", "performance"]}

    def produce(context: WorkerContext) -> dict[str, Any]:
        task_ids = [str(uuid4()) for _ in Stage]
        with Session(context.engine, expire_on_commit=False) as session, session.begin():
            issue = create_issue(session=session, data=data)
            record_run(
                session=session, issue=issue, run_id=task_ids[0], stages=stage_specs(task_ids)
            )
            session.flush()
        return {"issue_id": issue.id, "run_id": task_ids[0]}

    def measure(variant: str, n: int) -> dict[str, float]:
        context = contexts[variant]
        use_context(context)
        chains = [produce(context) for _ in range(n)]
        statements[0] = 0
        cpu = wall = 0.0
        server_before = tree_ticks(db.server.pid)  # type: ignore[union-attr]
        for ids in chains:
            c0, w0 = time.process_time(), time.perf_counter()
            assert persist(previous, **ids) is True
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
        server = (tree_ticks(db.server.pid) - server_before) / os.sysconf("SC_CLK_TCK")  # type: ignore[union-attr]
        return {
            "cpu": cpu * 1000 / n,
            "wall": wall * 1000 / n,
            "server": server * 1000 / n,
            "statements": statements[0] / n,
        }

    for variant in VARIANTS:  # warm: connections, compiled statements, the broker pool
        measure(variant, 20)
    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            results[variant].append(measure(variant, args.n))

    with Session(contexts["on"].engine) as session:
        recorded = session.scalar(select(func.count()).select_from(WebhookDelivery))
        undispatched = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.dispatched.is_(False))
        )
    queued = int(broker.client.llen(Queue.NOTIFY.value))
    for context in contexts.values():
        context.close()

    def stats(variant: str, key: str) -> tuple[float, float, float]:
        values = sorted(r[key] for r in results[variant])
        return values[len(values) // 2], values[0], values[-1]

    rows = []
    for key, label in [
        ("cpu", "CPU ms, this process"),
        ("server", "CPU ms, PostgreSQL server"),
        ("wall", "wall ms"),
        ("statements", "SQL statements"),
    ]:
        off, on = stats("off", key), stats("on", key)
        rows.append([label, *off, *on, on[0] - off[0], on[0] / off[0] if off[0] else 0.0])
    return "\n".join(
        [
            f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared); "
            f"{args.n} persists per variant and round, {args.rounds} rounds, taking turns",
            "",
            table(
                [
                    "per persist",
                    "off median",
                    "off min",
                    "off max",
                    "on median",
                    "on min",
                    "on max",
                    "on - off",
                    "on / off",
                ],
                rows,
            ),
            "",
            f"webhooks on: {recorded} deliveries recorded, {undispatched} left undispatched, "
            f"{queued} webhooks.deliver messages in the notify queue",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
