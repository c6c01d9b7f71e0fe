"""What the run bookkeeping costs per chain, without Celery's messaging.

    scripts/bench/stage_cost [-n 300] [--rounds 4] [--profile]

In one process, against a PostgreSQL server of the benchmark's own, for each chain: the
producer's transaction (insert the issue, record the run and its stages, as
``start_enrichment`` does minus the publish), then the three stage tasks called in process
(``StageTask.__call__``: begin, body, finish; ENRICH_PROVIDER=noop), one after the other.
Reported per chain: this process's CPU per step (time.process_time), the whole PostgreSQL
server's CPU, the wall time per step and the SQL statements sent; median, min and max over
the rounds. ``--profile`` adds a cProfile pass: where the client CPU goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from common import BENCH_ENV, ISSUE_BODY, Database, table, tree_ticks

from tests.support.processes import Processes

STEPS = ("producer", "summarise", "tag", "persist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="chains per round")
    parser.add_argument("--profile", action="store_true", help="add a cProfile pass")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; median, min and max shown")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    procs = Processes(BENCH_ENV, work)
    db = Database("postgres", procs)
    try:
        os.environ.update(
            {
                "DATABASE_URL": db.url,
                "ENRICH_PROVIDER": "noop",
                "CELERY_BROKER_URL": "memory://",
                "CELERY_RESULT_BACKEND": "",
            }
        )
        print(run(args, db))
    finally:
        procs.stop_all()
        db.drop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, db: Database) -> str:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.schemas import IssueCreate
    from app.services.issues import create_issue
    from app.services.runs import record_run
    from pipelines.context import WorkerContext, use_context
    from pipelines.dispatch import stage_specs
    from pipelines.enrichment import persist, summarise, tag
    from pipelines.messages import FINISHED_KEY
    from pipelines.queues import Stage

    assert db.server is not None
    context = WorkerContext.build(Settings(database_url=db.url, enrich_provider="noop"))
    use_context(context)
    statements = [0]
    engines = (context.engine, context.marks_engine, context.single_engine)
    for engine in {id(e): e for e in engines}.values():
        event.listen(
            engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1)
        )

    def chain(cpu: dict[str, float], wall: dict[str, float]) -> None:
        task_ids = [str(uuid4()) for _ in Stage]
        run_id = task_ids[0]
        data = IssueCreate(title="Settings page hangs on save", body=ISSUE_BODY)

        def produce() -> Any:
            with Session(context.engine, expire_on_commit=False) as session, session.begin():
                issue = create_issue(session=session, data=data)
                record_run(
                    session=session, issue=issue, run_id=run_id, stages=stage_specs(task_ids)
                )
                session.flush()
            return issue.id

        issue_id = timed("producer", produce, cpu, wall)
        ids = {"issue_id": issue_id, "run_id": run_id}
        # Calling a task runs its StageTask.__call__: begin, body, finish, as in a worker.
        summary = timed("summarise", lambda: summarise(**ids), cpu, wall)
        finish = context.marks.finish_of(run_id, 0) if context.marks else None
        if finish is not None:  # written behind: tag's message carries it (send_next_stage)
            summary = {**summary, FINISHED_KEY: [finish.row(0)]}
        tagged = timed("tag", lambda: tag(summary, **ids), cpu, wall)
        assert timed("persist", lambda: persist(tagged, **ids), cpu, wall) is True

    def measure(profiler: cProfile.Profile | None = None) -> dict[str, Any]:
        cpu: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        wall: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        for _ in range(20):  # warm: connection, compiled-statement caches
            chain({}, {})
        statements[0] = 0
        server_before = tree_ticks(db.server.pid)
        if profiler is not None:
            profiler.enable()
        for _ in range(args.n):
            chain(cpu, wall)
        if profiler is not None:
            profiler.disable()
        server_cpu = (tree_ticks(db.server.pid) - server_before) / os.sysconf("SC_CLK_TCK")
        return {
            "cpu": {k: v * 1000 / args.n for k, v in cpu.items()},
            "wall": {k: v * 1000 / args.n for k, v in wall.items()},
            "server": server_cpu * 1000 / args.n,
            "statements": statements[0] / args.n,
        }

    results = [measure() for _ in range(args.rounds)]
    profiler = None
    if args.profile:  # a pass of its own: the profiler's overhead stays out of the table
        profiler = cProfile.Profile(time.process_time)
        measure(profiler)
    context.close()

    def med(get: Callable[[dict[str, Any]], float]) -> tuple[float, float, float]:
        values = sorted(get(r) for r in results)
        return values[len(values) // 2], values[0], values[-1]

    rows = []
    for label, get in [
        *[(f"CPU: {s}", lambda r, s=s: r["cpu"][s]) for s in STEPS],
        ("CPU: client total", lambda r: sum(r["cpu"].values())),
        ("CPU: PostgreSQL server", lambda r: r["server"]),
        *[(f"wall: {s}", lambda r, s=s: r["wall"][s]) for s in STEPS],
        ("wall: total", lambda r: sum(r["wall"].values())),
        ("SQL statements", lambda r: r["statements"]),
    ]:
        rows.append([label, *med(get)])
    lines = [
        f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared); "
        f"{args.n} chains a round, {args.rounds} rounds; per chain (ms, or a count)",
        "",
        table(["step", "median", "min", "max"], rows),
    ]
    if profiler is not None:
        lines += ["", "cProfile (CPU time, a separate pass), top 30 by own time:"]
        lines.append(profile_text(profiler, "tottime", 30))
        lines += ["", "top 40 by cumulative time:"]
        lines.append(profile_text(profiler, "cumulative", 40))
    return "\n".join(lines)


def timed(step: str, fn: Callable[[], Any], cpu: dict[str, float], wall: dict[str, float]) -> Any:
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    if step in cpu:
        cpu[step] += time.process_time() - c0
        wall[step] += time.perf_counter() - w0
    return result


def profile_text(profiler: cProfile.Profile, key: str, top: int) -> str:
    import io

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(key).print_stats(top)
    text = out.getvalue()
    return text[text.index("   ncalls") :].rstrip() if "   ncalls" in text else text


if __name__ == "__main__":
    sys.exit(main())
