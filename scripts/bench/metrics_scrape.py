"""What one scrape of the API's cluster metrics costs, for a number of runs in the database.

Fills a database of the benchmark's own with finished runs (three stages each, some
retries, token counts) with set-based INSERTs, then times ``ClusterCollector.collect()``
(the aggregate queries behind ``GET /metrics``, cache off): a new process's first scrape,
which reads every ended run once, and the scrapes after it, median of several.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from common import Database, Processes, median, table

FILL_POSTGRES = """
INSERT INTO enrichment_runs (id, issue_id, state, dispatched, force, created_at, finished_at)
SELECT 'r' || g, g, CASE WHEN g % 20 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END, true, false,
       now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval + interval '2 s'
FROM generate_series(:start, :stop) g;
INSERT INTO enrichment_stages (run_id, position, name, queue, task_id, state, retries,
                               started_at, finished_at, prompt_tokens, completion_tokens, cached)
SELECT 'r' || g, p, s, s, 'r' || g || '-' || p, 'SUCCESS', 0,
       now() - (g || ' seconds')::interval + (p * 0.5 || ' s')::interval,
       now() - (g || ' seconds')::interval + (p * 0.5 + 0.3 || ' s')::interval,
       CASE WHEN p < 2 THEN 400 END, CASE WHEN p < 2 THEN 30 END, false
FROM generate_series(:start, :stop) g,
     (VALUES (0, 'summarise'), (1, 'tag'), (2, 'persist')) AS stage(p, s);
INSERT INTO enrichment_retries (run_id, stage, reason, created_at)
SELECT 'r' || g, 'summarise', '429', now() FROM generate_series(:start, :stop) g
WHERE g % 10 = 0;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="runs in the database, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=5, help="scrapes per size; median shown")
    parser.add_argument("--pg", choices=("own", "shared"), default="own")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    procs = Processes(work)
    db = Database("postgres", procs, pg=args.pg)
    os.environ["DATABASE_URL"] = db.url
    try:
        print(run(args, db))
    finally:
        procs.stop_all()
        db.drop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, db: Database) -> str:
    from app.api.metrics import ClusterCollector
    from app.db import make_engine

    engine = make_engine(db.url)
    rows = []
    filled = 0
    for size in (int(part) for part in args.sizes.split(",")):
        with engine.begin() as conn:
            for statement in FILL_POSTGRES.strip().split(";\n"):
                conn.execute(sa.text(statement), {"start": filled + 1, "stop": size})
            conn.execute(sa.text("ANALYZE"))
        filled = size
        # A new API process: its first scrape reads every run that ended; later scrapes
        # read only the counts and what ended in the last SEAL_AFTER (here ~600 runs).
        first = []
        for _ in range(args.repeat):
            collector = ClusterCollector(engine, None, cache_seconds=0)
            started = time.perf_counter()
            list(collector.collect())
            first.append((time.perf_counter() - started) * 1000)
        steady = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            families = list(collector.collect())
            steady.append((time.perf_counter() - started) * 1000)
        samples = sum(len(family.samples) for family in families)
        rows.append(
            (size, f"{median(first):.1f}", f"{median(steady):.1f}", f"{max(steady):.1f}", samples)
        )
    engine.dispose()
    return table(("runs", "first scrape ms", "later scrapes ms", "max later ms", "samples"), rows)


if __name__ == "__main__":
    main()
