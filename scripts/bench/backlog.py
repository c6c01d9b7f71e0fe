"""A backlog of queued runs: Redis memory per run, drain rate, publish latency meanwhile.

    scripts/bench/backlog [-n 100000] [--burst 1000] [--rate 20] [--layout per-queue|one]

On the benchmark's own redis-server and PostgreSQL server (as ``scripts/bench/pipeline``),
ENRICH_PROVIDER=noop:

1. reference: workers up, a burst of ``--burst`` runs published as fast as the producer
   can; its chains/s is the burst rate. Then ``--rate`` runs/s for ``--duration`` seconds:
   the publish latency (one POST's transaction and message, without HTTP) with the
   workers idle;
2. fill: workers stopped, ``-n`` runs published; Redis ``used_memory`` before and after
   gives the memory per queued run;
3. drain: workers started again while the producer keeps publishing ``--rate`` runs/s;
   the runs done are counted every second. Drain rate: ``-n`` / the time until the last
   backlog run is done; its ratio to the burst rate; the publish latency meanwhile.

The full size takes a while (100,000 runs: about half an hour on a 2-core machine);
``-n 5000`` is a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import PYTHON, dump_json, table  # first: it puts the repository root on sys.path
from pipeline import SCENARIOS, Bench


def runs_done(bench: Bench) -> int:
    import sqlalchemy as sa

    from app.models import EnrichmentRun

    with bench.db.engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(EnrichmentRun)
            .where(EnrichmentRun.state == "SUCCESS")
        ).scalar_one()
    return int(count)


def used_memory(bench: Bench) -> int:
    return int(bench.broker.client.info("memory")["used_memory"])


def command(producer: subprocess.Popen[bytes], n: int, rate: float, tag: str) -> None:
    assert producer.stdin is not None
    producer.stdin.write(json.dumps({"cmd": "run", "n": n, "rate": rate, "tag": tag}).encode())
    producer.stdin.write(b"\n")
    producer.stdin.flush()


def answer(producer: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert producer.stdout is not None
    line = producer.stdout.readline()
    if not line:
        raise RuntimeError("producer died")
    result: dict[str, Any] = json.loads(line)
    return result


def wait_done(
    bench: Bench, total: int, timeout: float, every: float = 1.0
) -> list[tuple[float, int]]:
    """Runs done over time, ``every`` seconds, until ``total`` are; (seconds, count) pairs."""
    start = time.monotonic()
    timeline = [(0.0, runs_done(bench))]
    while timeline[-1][1] < total:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{timeline[-1][1]}/{total} runs done after {timeout:.0f}s")
        time.sleep(every)
        timeline.append((time.monotonic() - start, runs_done(bench)))
    return timeline


def run(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    scenario = SCENARIOS["tracked-pq" if args.layout == "per-queue" else "tracked"]
    bench.broker.client.flushall()
    bench.db.truncate()
    env = bench.env(scenario)
    producers = [
        bench.procs.start(
            f"backlog-producer-{name}",
            PYTHON,
            "-u",
            "scripts/bench/producer.py",
            "tracked",
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for name in ("fill", "steady")
    ]
    fill, steady = producers
    for producer in producers:
        if not answer(producer).get("ready"):
            raise RuntimeError("producer did not start")
    n_steady = round(args.rate * args.duration)

    print("--- reference burst", file=sys.stderr, flush=True)
    workers = bench.start_workers(scenario)
    command(fill, 40, 0, "warmup")
    answer(fill)
    wait_done(bench, 40, timeout=120)
    command(fill, args.burst, 0, "burst")
    sent = answer(fill)
    timeline = wait_done(bench, 40 + args.burst, timeout=max(120, args.burst / 5), every=0.05)
    burst_rate = args.burst / (sent["last"] - sent["first"] + timeline[-1][0])
    command(steady, n_steady, args.rate, "idle")
    idle = answer(steady)
    wait_done(bench, 40 + args.burst + n_steady, timeout=120)
    for process in workers.values():
        bench.procs.stop(process)

    print(f"--- fill: {args.n} runs, no workers", file=sys.stderr, flush=True)
    before = used_memory(bench)
    command(fill, args.n, 0, "backlog")
    filled = answer(fill)
    after = used_memory(bench)
    queued = int(bench.broker.client.llen("summarise"))
    done_before = runs_done(bench)

    print("--- drain, with runs published at a steady rate meanwhile", file=sys.stderr, flush=True)
    workers = bench.start_workers(scenario)
    command(steady, n_steady, args.rate, "during")
    drain = wait_done(bench, done_before + args.n, timeout=max(600, args.n / 10))
    during = answer(steady)
    wait_done(bench, done_before + args.n + n_steady, timeout=120)
    for process in [*workers.values(), *producers]:
        bench.procs.stop(process)
    drain_s = drain[-1][0]
    return {
        "n": args.n,
        "layout": args.layout,
        "burst": args.burst,
        "burst_rate": burst_rate,
        "fill_rate": args.n / (filled["last"] - filled["first"]),
        "queued_messages": queued,
        "redis_bytes_per_run": (after - before) / args.n,
        "drain_rate": args.n / drain_s,
        "drain_over_burst": args.n / drain_s / burst_rate,
        "drain_timeline": [(t, done - done_before) for t, done in drain],
        "publish_ms_idle": idle["publish_ms"],
        "publish_ms_during_drain": during["publish_ms"],
        "rate": args.rate,
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    idle, during = result["publish_ms_idle"], result["publish_ms_during_drain"]
    rows = [
        ["runs queued (summarise messages)", f"{result['queued_messages']:,}"],
        ["Redis memory per queued run", f"{result['redis_bytes_per_run']:.0f} B"],
        ["fill rate (publish, no workers)", f"{result['fill_rate']:.0f} runs/s"],
        [f"burst of {result['burst']:,}, workers up", f"{result['burst_rate']:.1f} runs/s"],
        ["backlog drain rate", f"{result['drain_rate']:.1f} runs/s"],
        ["drain / burst", f"{result['drain_over_burst']:.2f}x"],
        [
            f"publish p50/p99 at {args.rate:g}/s, workers idle",
            f"{idle['50']:.1f} / {idle['99']:.1f} ms",
        ],
        [
            f"publish p50/p99 at {args.rate:g}/s, while draining",
            f"{during['50']:.1f} / {during['99']:.1f} ms",
        ],
    ]
    return "\n".join(
        [
            f"load average before/after: {args.loadavg[0]} / {args.loadavg[1]} (2 cores, shared)",
            f"backlog benchmark: {args.n:,} runs, {args.layout} workers, ENRICH_PROVIDER=noop, "
            "PostgreSQL and redis-server of its own",
            "",
            table(["what", "figure"], rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="runs in the backlog")
    parser.add_argument("--burst", type=int, default=1000, help="runs in the reference burst")
    parser.add_argument("--rate", type=float, default=20, help="runs/s published meanwhile")
    parser.add_argument("--duration", type=float, default=10, help="seconds of steady publishing")
    parser.add_argument("--layout", choices=["one", "per-queue"], default="per-queue")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children, 1 worker")
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    # What pipeline.Bench reads: its own PostgreSQL server, no statement counts.
    args.db, args.pg, args.count_sql = "postgres", "own", False
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    log_dir = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    bench = Bench(args, log_dir)
    try:
        result = run(args, bench)
    finally:
        bench.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    args.loadavg = (load_before, " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(report(result, args))
    if args.json:
        dump_json(args.json, {"args": vars(args), "result": result})


if __name__ == "__main__":
    main()
