"""What the run bookkeeping costs per chain, without Celery, and what two changes would save.

    scripts/bench/stage_cost [-n 300] [--profile]

In one process, against a PostgreSQL server of the benchmark's own, for each chain: the
producer's transaction (insert the issue, record the run and its stages, as
``start_enrichment`` does minus the publish), then the bodies of the three stage tasks
(``summarise.run``, ``tag.run``, ``persist.run`` with ENRICH_PROVIDER=noop), one after the
other. Reported per chain: this process's CPU per step (time.process_time), the whole
PostgreSQL server's CPU, and the wall time per step.

Variants, each on the product's code with only the engine changed (no product file is
touched; the process-wide engine in ``app.db`` is replaced before the first task):

- ``as is``: ``app.db.make_engine`` (``pool_pre_ping=True``), synchronous commits;
- ``no pre-ping``: ``pool_pre_ping=False`` (saves the ``SELECT 1`` at each checkout);
- ``async commit``: ``SET synchronous_commit = off`` on each connection (no fsync wait at
  COMMIT; what ``SET LOCAL`` in the bookkeeping-only transactions would give);
- ``both``.

``--profile`` adds a cProfile of the ``as is`` variant: where the client CPU goes.
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

from common import ISSUE_BODY, Database, Processes, table, tree_ticks

STEPS = ("producer", "summarise", "tag", "persist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="chains per variant")
    parser.add_argument("--profile", action="store_true", help="cProfile the 'as is' variant")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="variants take turns this many times, each round starting with "
        "the next variant; the medians are shown",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    procs = Processes(work)
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

    import app.db
    from app.config import get_settings
    from app.schemas import IssueCreate
    from app.services.issues import create_issue
    from app.services.runs import StageSpec, record_run
    from pipelines.enrichment import persist, summarise, tag
    from pipelines.queues import Stage

    get_settings.cache_clear()
    assert db.server is not None

    def engine_for(pre_ping: bool, async_commit: bool) -> Any:
        engine = app.db.make_engine(db.url, pool_pre_ping=pre_ping)
        if async_commit:

            @event.listens_for(engine, "connect")
            def _no_fsync_wait(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("SET synchronous_commit = off")
                cursor.close()
                dbapi_connection.commit()

        return engine

    statements = [0]

    def chain(engine: Any, cpu: dict[str, float], wall: dict[str, float]) -> None:
        task_ids = [str(uuid4()) for _ in Stage]
        run_id = task_ids[0]
        data = IssueCreate(title="Settings page hangs on save", body=ISSUE_BODY)

        def produce() -> Any:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                issue = create_issue(session=session, data=data)
                record_run(
                    session=session,
                    issue=issue,
                    run_id=run_id,
                    stages=[
                        StageSpec(s.value, s.queue.value, t)
                        for s, t in zip(Stage, task_ids, strict=True)
                    ],
                )
                session.flush()
            return issue.id

        issue_id = timed("producer", produce, cpu, wall)
        ids = {"issue_id": issue_id, "run_id": run_id}
        summary = timed("summarise", lambda: summarise.run(issue_id, run_id), cpu, wall)
        tagged = timed("tag", lambda: tag.run(summary, **ids), cpu, wall)
        assert timed("persist", lambda: persist.run(tagged, **ids), cpu, wall) is True

    variants = {
        "as is": (True, False),
        "no pre-ping": (False, False),
        "async commit": (True, True),
        "both": (False, True),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}

    def measure(name: str, profiler: cProfile.Profile | None = None) -> dict[str, Any]:
        engine = engine_for(*variants[name])
        event.listen(
            engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1)
        )
        with app.db._engines_lock:  # the engine every stage task asks app.db for
            app.db._engines.clear()
            app.db._engines[db.url] = engine
        cpu: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        wall: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        for _ in range(20):  # warm: connection, compiled-statement caches
            chain(engine, {}, {})
        statements[0] = 0
        server_before = tree_ticks(db.server.pid)
        if profiler is not None:
            profiler.enable()
        for _ in range(args.n):
            chain(engine, cpu, wall)
        if profiler is not None:
            profiler.disable()
        server_cpu = (tree_ticks(db.server.pid) - server_before) / os.sysconf("SC_CLK_TCK")
        engine.dispose()
        return {
            "cpu": {k: v * 1000 / args.n for k, v in cpu.items()},
            "wall": {k: v * 1000 / args.n for k, v in wall.items()},
            "server": server_cpu * 1000 / args.n,
            "statements": statements[0] / args.n,
        }

    names = list(variants)
    for round_ in range(args.rounds):  # each round starts with another variant
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(measure(name))
    profiler = None
    if args.profile:  # a pass of its own: the profiler's overhead stays out of the table
        profiler = cProfile.Profile(time.process_time)
        measure("as is", profiler)

    def med(name: str, get: Callable[[dict[str, Any]], float]) -> float:
        values = sorted(get(r) for r in results[name])
        return values[len(values) // 2]

    rows = []
    for name in variants:
        rows.append(
            [
                name,
                *[med(name, lambda r, s=s: r["cpu"][s]) for s in STEPS],
                med(name, lambda r: sum(r["cpu"].values())),
                med(name, lambda r: r["server"]),
                med(name, lambda r: sum(r["wall"].values())),
                *[med(name, lambda r, s=s: r["wall"][s]) for s in STEPS],
                med(name, lambda r: r["statements"]),
            ]
        )
    base_wall = med("as is", lambda r: sum(r["wall"].values()))
    base_cpu = med("as is", lambda r: sum(r["cpu"].values()) + r["server"])
    lines = [
        f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared); "
        f"{args.n} chains per variant, median of {args.rounds} rounds (rotating order); "
        "ms per chain",
        "",
        table(
            [
                "variant",
                "CPU: producer",
                "summarise",
                "tag",
                "persist",
                "client total",
                "PG server",
                "wall total",
                "wall: producer",
                "summarise",
                "tag",
                "persist",
                "SQL stmts",
            ],
            rows,
        ),
        "",
        "vs 'as is' (same run): "
        + "; ".join(
            f"{name}: wall {med(name, lambda r: sum(r['wall'].values())) / base_wall:.2f}x, "
            f"CPU (client + server) "
            f"{med(name, lambda r: sum(r['cpu'].values()) + r['server']) / base_cpu:.2f}x"
            for name in variants
            if name != "as is"
        ),
    ]
    if profiler is not None:
        lines += [
            "",
            "cProfile (CPU time) of 'as is' (client process, a separate pass), top 30 by own time:",
        ]
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
