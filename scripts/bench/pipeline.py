"""The tracked issueflow pipeline against a stock Celery chain, side by side, in one run.

    scripts/bench/pipeline [-n 2000] [--rate 50] [--duration 10] [--db postgres|sqlite]
                           [--layout one|per-queue|both] [--scenarios a,b,...]

Every scenario gets fresh workers on the benchmark's own redis-server and database
(PostgreSQL database created for the run, or a SQLite file), ENRICH_PROVIDER=noop
(tracked-local-pq: local, the offline provider's real work), then:

1. warm-up: a few chains, so the workers are up and connected;
2. throughput: N chains published as fast as the producer can, consumed meanwhile; chains/s
   is N / (first publish -> last completion). Over this phase: CPU of every process
   involved (producer, worker parents and pool children, redis-server, the PostgreSQL
   backends of the benchmark's database), Redis commands (INFO commandstats) and
   PostgreSQL transactions;
3. latency: chains published at a steady rate; latency per chain is run.finished_at -
   run.created_at from the database (tracked) or finish - publish time (bare).

Completion is read from the database for issueflow (runs in state SUCCESS) and from a
probe Redis of its own for the bare chain (its last task RPUSHes its timestamps there).

The machine is shared and noisy: compare the rows of one run with each other (the ratios
printed at the end), not with figures from another run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (  # first: it puts the repository root on sys.path
    BENCH_ENV,
    PYTHON,
    VENV_BIN,
    CpuMeter,
    Database,
    command_delta,
    dump_json,
    median,
    percentile,
    py_spy,
    table,
)

from tests.support.processes import Processes
from tests.support.servers import RedisServer

QUEUES = "summarise,tag,persist"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    kind: str  # tracked | bare
    layout: str  # one | per-queue
    results: bool = True  # tracked: CELERY_RESULT_BACKEND set (the default); bare: backend on
    sent_event: bool = False  # bare only; the tracked app sends none (CELERY_SEND_SENT_EVENT)
    provider: str = "noop"  # tracked only: ENRICH_PROVIDER
    floor: bool = False  # bare only: a PostgreSQL row per run, written twice (BENCH_FLOOR_DSN)


SCENARIOS = {
    s.key: s
    for s in [
        Scenario("tracked", "issueflow, 1 worker", "tracked", "one"),
        Scenario("tracked-pq", "issueflow, per-queue workers", "tracked", "per-queue"),
        Scenario(
            "tracked-local-pq",
            "issueflow, per-queue workers, ENRICH_PROVIDER=local (real work)",
            "tracked",
            "per-queue",
            provider="local",
        ),
        Scenario(
            "tracked-nobackend",
            "issueflow, 1 worker, CELERY_RESULT_BACKEND=''",
            "tracked",
            "one",
            results=False,
        ),
        Scenario("bare", "bare chain, 1 worker, results on", "bare", "one"),
        Scenario(
            "bare-noresults", "bare chain, 1 worker, results off", "bare", "one", results=False
        ),
        Scenario(
            "bare-sent",
            "bare chain, 1 worker, results on, sent events",
            "bare",
            "one",
            sent_event=True,
        ),
        Scenario("bare-pq", "bare chain, per-queue workers, results on", "bare", "per-queue"),
        Scenario(
            "floor",
            "floor: bare chain, 1 worker, results off, a row per run (INSERT, UPDATE)",
            "bare",
            "one",
            results=False,
            floor=True,
        ),
        Scenario(
            "floor-pq",
            "floor: bare chain, per-queue workers, results off, a row per run",
            "bare",
            "per-queue",
            results=False,
            floor=True,
        ),
    ]
}


def default_scenarios(layout: str) -> list[str]:
    keys = []
    if layout in ("one", "both"):
        keys += ["tracked", "bare", "bare-noresults"]
    if layout in ("per-queue", "both"):
        keys += ["tracked-pq", "bare-pq"]
    return keys


class Bench:
    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.procs = Processes(BENCH_ENV, log_dir)
        self.broker = RedisServer(self.procs, "redis-broker").start()
        self.probe = RedisServer(self.procs, "redis-probe").start()  # bare completions
        if args.count_sql and args.db != "postgres":
            raise SystemExit("--count-sql needs --db postgres")
        # Statement counts: pg_stat_statements on the benchmark's own server (exact, no added
        # latency), else a counting proxy in front of the shared one.
        self.db = Database(
            args.db, self.procs, pg=args.pg, stat_statements=args.count_sql and args.pg == "own"
        )
        self.proxy = None
        if args.count_sql and not self.db.stat_statements:
            from sqlcount import PgCountingProxy

            self.proxy = PgCountingProxy(self.db.address())

    def close(self) -> None:
        self.procs.stop_all()
        self.db.drop()
        self.broker.cleanup()
        self.probe.cleanup()

    # ----------------------------------------------------------------- processes

    def env(self, scenario: Scenario) -> dict[str, str]:
        if scenario.kind == "tracked":
            return {
                "DATABASE_URL": self.proxy.url(self.db.url) if self.proxy else self.db.url,
                "CELERY_BROKER_URL": self.broker.url(0),
                "CELERY_RESULT_BACKEND": self.broker.url(1) if scenario.results else "",
                "ENRICH_PROVIDER": scenario.provider,
            }
        return {
            "BENCH_BROKER_URL": self.broker.url(0),
            "BENCH_RESULT_BACKEND": self.broker.url(1),
            "BENCH_BARE_RESULTS": "on" if scenario.results else "off",
            "BENCH_BARE_SENT_EVENT": "1" if scenario.sent_event else "0",
            "BENCH_PROBE_URL": self.probe.url(0),
            **({"BENCH_FLOOR_DSN": self.floor_dsn()} if scenario.floor else {}),
        }

    def floor_dsn(self) -> str:
        """The benchmark's database as a libpq URL (psycopg2's, no SQLAlchemy driver name)."""
        if self.args.db != "postgres":
            raise SystemExit("the floor scenarios need --db postgres")
        return self.db.url.replace("postgresql+psycopg2://", "postgresql://", 1)

    def start_workers(self, scenario: Scenario) -> dict[str, subprocess.Popen[bytes]]:
        module = "app.celery_app" if scenario.kind == "tracked" else "bare_tasks"
        celery = str(VENV_BIN / "celery")
        env = self.env(scenario)
        # The layouts scripts/run deploys (Procfile): one worker for all queues, or one per
        # queue with persist on threads.
        if scenario.layout == "one":
            specs = [("all", QUEUES, "prefork", self.args.concurrency)]
        else:
            specs = [
                ("summarise", "summarise", "prefork", 2),
                ("tag", "tag", "prefork", 2),
                ("persist", "persist", "threads", 4),
            ]
        workers = {}
        for name, queues, pool, concurrency in specs:
            workers[f"worker-{name}"] = self.procs.start(
                f"{scenario.key}-worker-{name}",
                celery,
                "-A",
                module,
                "worker",
                "-Q",
                queues,
                "-n",
                f"{scenario.key}-{name}@%h",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--loglevel",
                self.args.loglevel,
                env=env,
            )
        return workers

    # ----------------------------------------------------------------- one scenario

    def run(self, scenario: Scenario) -> dict[str, Any]:
        print(f"--- {scenario.label}", file=sys.stderr, flush=True)
        self.broker.client.flushall()
        self.probe.client.flushall()
        if scenario.kind == "tracked":
            self.db.truncate()
        workers = self.start_workers(scenario)
        producer = self.procs.start(
            f"{scenario.key}-producer",
            PYTHON,
            "-u",
            "scripts/bench/producer.py",
            scenario.kind,
            env=self.env(scenario),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert producer.stdout is not None
        if not json.loads(producer.stdout.readline() or "{}").get("ready"):
            log = self.procs.log_tail(f"{scenario.key}-producer")
            raise RuntimeError(f"producer did not start:\n{log}")
        db_meter = self.db.meter_args()
        meter = CpuMeter(
            trees={
                "producer": producer.pid,
                **{n: p.pid for n, p in workers.items()},
                **db_meter.get("trees", {}),
            },
            pids={"redis": self.broker.pid},
            pid_sets=db_meter.get("pid_sets", {}),
        )
        try:
            self.phase(scenario, producer, "warmup", self.args.warmup, 0, timeout=120)
            meter.start()
            commands_before = self.broker.commandstats()
            sql_before = self.sql_snapshot()
            spies = self.start_profilers(scenario, producer, workers)
            throughput = self.phase(
                scenario, producer, "throughput", self.args.n, 0, timeout=max(120, self.args.n / 5)
            )
            cpu = meter.stop()
            self.stop_profilers(spies)
            sql = self.sql_snapshot() - sql_before if sql_before is not None else None
            commands = command_delta(commands_before, self.broker.commandstats())
            n_latency = round(self.args.rate * self.args.duration)
            latency_commands_before = self.broker.commandstats()
            sql_latency_before = self.sql_snapshot()
            latency = self.phase(
                scenario,
                producer,
                "latency",
                n_latency,
                self.args.rate,
                timeout=max(120, self.args.duration * 4),
            )
            latency_commands = command_delta(latency_commands_before, self.broker.commandstats())
            sql_latency = None
            if sql_latency_before is not None:
                sql_latency = self.sql_snapshot() - sql_latency_before
        finally:
            if producer.poll() is None and producer.stdin is not None:
                producer.stdin.write(b'{"cmd": "quit"}\n')
                producer.stdin.close()
            for process in [producer, *workers.values()]:
                self.procs.stop(process)
        n = self.args.n
        cpu_ms = {name: seconds * 1000 / n for name, seconds in cpu.items()}
        worker_ms = sum(v for k, v in cpu_ms.items() if k.startswith("worker-"))
        result = {
            "scenario": scenario.key,
            "label": scenario.label,
            "n": n,
            "chains_per_s": n / throughput["elapsed"],
            "elapsed_s": throughput["elapsed"],
            "cpu_ms_per_chain": sum(cpu_ms.values()),
            "cpu_ms": {
                "producer": cpu_ms["producer"],
                "workers": worker_ms,
                "redis": cpu_ms["redis"],
                "postgres": cpu_ms.get("postgres", 0.0),
                **{k: v for k, v in cpu_ms.items() if k.startswith("worker-")},
            },
            "redis_cmds_per_chain": sum(commands.values()) / n,
            "redis_cmds": {k: v / n for k, v in sorted(commands.items(), key=lambda kv: -kv[1])},
            "sql_per_chain": (
                {k: v / n for k, v in sql.most_common()} if sql is not None else None
            ),
            "sql_per_chain_at_rate": (
                {k: v / max(1, n_latency) for k, v in sql_latency.most_common()}
                if sql_latency is not None
                else None
            ),
            "latency_rate": self.args.rate,
            "latency_n": len(latency["latencies"]),
            "p50_ms": percentile(latency["latencies"], 50) * 1000,
            "p99_ms": percentile(latency["latencies"], 99) * 1000,
            "max_ms": max(latency["latencies"]) * 1000,
            "publish_rate_achieved": latency["publish_rate"],
            # A chain publishes 3 messages; more means task retries (e.g. a stage that found
            # no run yet and retried in RUN_NOT_VISIBLE_COUNTDOWN).
            "latency_lpush_per_chain": latency_commands.get("lpush", 0) / max(1, n_latency),
            "latency_steps_ms": getattr(self, "last_segments", None)
            if scenario.kind == "tracked"
            else None,
        }
        print(
            f"    {result['chains_per_s']:.0f} chains/s, {result['cpu_ms_per_chain']:.1f} ms "
            f"CPU/chain, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
        return result

    def sql_snapshot(self) -> Counter[str] | None:
        if self.db.stat_statements:
            return Counter(self.db.statement_counts())
        return self.proxy.snapshot() if self.proxy is not None else None

    def start_profilers(
        self,
        scenario: Scenario,
        producer: subprocess.Popen[bytes],
        workers: dict[str, subprocess.Popen[bytes]],
    ) -> list[subprocess.Popen[bytes]]:
        """py-spy on the producer and each worker (with its pool children), if asked."""
        if not self.args.profile:
            return []
        self.args.profile.mkdir(parents=True, exist_ok=True)
        spies = []
        for name, process in {"producer": producer, **workers}.items():
            out = self.args.profile / f"{scenario.key}-{name}.txt"
            mode = "--idle" if self.args.profile_idle else "--gil"
            spy = py_spy(
                self.procs,
                self.args.py_spy,
                f"py-spy-{scenario.key}-{name}",
                process.pid,
                out,
                "--subprocesses",
                mode,
            )
            spies.append(spy)
        time.sleep(1.0)  # let py-spy attach
        return spies

    def stop_profilers(self, spies: list[subprocess.Popen[bytes]]) -> None:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=30)
            self.procs.stop(spy)

    def phase(
        self,
        scenario: Scenario,
        producer: subprocess.Popen[bytes],
        tag: str,
        n: int,
        rate: float,
        *,
        timeout: float,
    ) -> dict[str, Any]:
        assert producer.stdin is not None
        assert producer.stdout is not None
        if scenario.kind == "bare":
            self.probe.client.delete("bench:done")
        producer.stdin.write(
            json.dumps({"cmd": "run", "n": n, "rate": rate, "tag": tag}).encode() + b"\n"
        )
        producer.stdin.flush()
        line = producer.stdout.readline()
        if not line:
            raise RuntimeError(f"producer died:\n{self.procs.log_tail(scenario.key + '-producer')}")
        sent = json.loads(line)
        if scenario.kind == "tracked":
            finished = self.wait_tracked(scenario, sent["ids"], n, timeout)
        else:
            finished = self.wait_bare(scenario, n, timeout)
        published, done = zip(*finished, strict=True)
        return {
            "elapsed": max(done) - sent["first"],
            "latencies": [d - p for p, d in finished],
            "publish_rate": n / (sent["last"] - sent["first"]) if n > 1 else 0.0,
            "first_published": min(published),
        }

    def wait_tracked(
        self, scenario: Scenario, ids: list[int], n: int, timeout: float
    ) -> list[tuple[float, float]]:
        import sqlalchemy as sa

        from app.models import EnrichmentRun, EnrichmentStage

        in_phase = EnrichmentRun.issue_id.between(ids[0], ids[1])
        deadline = time.monotonic() + timeout
        while True:
            with self.db.engine.connect() as conn:
                states = dict(
                    conn.execute(
                        sa.select(EnrichmentRun.state, sa.func.count())
                        .prefix_with("/* bench */")
                        .where(in_phase)
                        .group_by(EnrichmentRun.state)
                    ).all()
                )
            if states.get("SUCCESS", 0) >= n:
                break
            bad = {k: v for k, v in states.items() if k in ("FAILURE", "REVOKED")}
            if bad:
                raise RuntimeError(f"{scenario.label}: runs ended {bad}; see {self.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{scenario.label}: {states} after {timeout:.0f}s; see {self.log_dir}"
                )
            # Completion times come from the rows (finished_at), not from this poll, so it
            # need not be frequent: each poll is PostgreSQL CPU counted against the chain.
            time.sleep(0.25)
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(EnrichmentRun.created_at, EnrichmentRun.finished_at)
                .prefix_with("/* bench */")
                .where(in_phase)
            ).all()
            stages = conn.execute(
                sa.select(
                    EnrichmentRun.id,
                    EnrichmentRun.created_at,
                    EnrichmentRun.finished_at,
                    EnrichmentStage.position,
                    EnrichmentStage.started_at,
                    EnrichmentStage.finished_at,
                )
                .prefix_with("/* bench */")
                .join(EnrichmentStage, EnrichmentStage.run_id == EnrichmentRun.id)
                .where(in_phase)
            ).all()
        self.last_segments = segments(stages)
        return [(created.timestamp(), finished.timestamp()) for created, finished in rows]

    def wait_bare(self, scenario: Scenario, n: int, timeout: float) -> list[tuple[float, float]]:
        client = self.probe.client
        deadline = time.monotonic() + timeout
        while client.llen("bench:done") < n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{scenario.label}: {client.llen('bench:done')}/{n} chains "
                    f"after {timeout:.0f}s; see {self.log_dir}"
                )
            time.sleep(0.05)
        pairs = []
        for item in client.lrange("bench:done", 0, -1):
            published, done = item.split()
            pairs.append((float(published), float(done)))
        return pairs


def segments(rows: list[Any]) -> dict[str, dict[str, float]]:
    """p50 and p99 milliseconds of each step of a tracked chain, from its run's and stages'
    timestamps (persist marks no start of its own: it runs inside "tag -> persist")."""
    runs: dict[str, dict[Any, Any]] = {}
    for run_id, created, finished, position, started_at, stage_finished in rows:
        run = runs.setdefault(run_id, {"created": created, "finished": finished})
        run[position] = (started_at, stage_finished)
    steps: dict[str, list[float]] = {}
    for run in runs.values():
        previous, previous_name = run["created"], "created"
        for position, name in enumerate(("summarise", "tag")):
            started, finished = run.get(position, (None, None))
            if started is None or finished is None:
                break
            steps.setdefault(f"{previous_name} -> {name} started", []).append(
                (started - previous).total_seconds()
            )
            steps.setdefault(f"{name} started -> finished", []).append(
                (finished - started).total_seconds()
            )
            previous, previous_name = finished, name
        if run["finished"] is not None and previous_name == "tag":
            steps.setdefault("tag finished -> persist done", []).append(
                (run["finished"] - previous).total_seconds()
            )
    result = {
        k: {"p50": percentile(v, 50) * 1000, "p99": percentile(v, 99) * 1000}
        for k, v in steps.items()
    }
    waits = steps.get("created -> summarise started", [])
    if waits:
        result["% of runs whose summarise started >= 0.9 s after the run"] = {
            "p50": 100 * sum(w >= 0.9 for w in waits) / len(waits),
            "p99": float("nan"),
        }
    return result


# --------------------------------------------------------------------------- report


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"load average before/after: {args.loadavg[0]} / {args.loadavg[1]} (2 cores, shared)",
        f"issueflow pipeline benchmark: N={args.n} chains (throughput), "
        f"{args.rate:g} chains/s for {args.duration:g} s (latency), database {args.db}, "
        "ENRICH_PROVIDER=noop (tracked-local-pq: local), "
        f"prefork concurrency {args.concurrency} for 1 worker, "
        f"loglevel {args.loglevel}, {args.rounds} round(s) (figures: medians)",
        "",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r["label"],
                r["chains_per_s"],
                r["cpu_ms_per_chain"],
                r["cpu_ms"]["producer"],
                r["cpu_ms"]["workers"],
                r["cpu_ms"]["redis"],
                r["cpu_ms"]["postgres"],
                r["redis_cmds_per_chain"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["latency_lpush_per_chain"],
            ]
        )
    lines.append(
        table(
            [
                "scenario",
                "chains/s",
                "CPU ms/chain",
                "producer",
                "workers",
                "redis",
                "postgres",
                "redis cmds/chain",
                "p50 ms",
                "p99 ms",
                "max ms",
                "msgs/chain @rate",
            ],
            rows,
        )
    )
    lines.append(
        "CPU ms/chain: every process, throughput phase (producer, workers with their "
        "pool children, redis-server, the PostgreSQL server). msgs/chain @rate: "
        "LPUSHes per chain in the latency phase (3 = no task was retried)."
    )
    lines.append("")
    lines.append("Redis commands per chain, by command (throughput phase):")
    names: list[str] = []
    for r in results:
        for name in r["redis_cmds"]:
            if name not in names:
                names.append(name)
    lines.append(
        table(
            ["command", *[r["scenario"] for r in results]],
            [[name, *[r["redis_cmds"].get(name, 0.0) for r in results]] for name in names],
        )
    )
    steps = [r for r in results if r.get("latency_steps_ms")]
    if steps:
        lines.append("")
        lines.append(
            "Where a tracked chain's latency goes (latency phase; ms from the run's and "
            "stages' timestamps; the last row is a percentage):"
        )
        names = list(steps[0]["latency_steps_ms"])
        lines.append(
            table(
                ["step", *[f"{r['scenario']} {q}" for r in steps for q in ("p50", "p99")]],
                [
                    [
                        n,
                        *[
                            r["latency_steps_ms"].get(n, {}).get(q, float("nan"))
                            for r in steps
                            for q in ("p50", "p99")
                        ],
                    ]
                    for n in names
                ],
            )
        )
    per_worker = [
        r
        for r in results
        if any(k.startswith("worker-") and k != "worker-all" for k in r["cpu_ms"])
    ]
    if per_worker:
        lines.append("")
        lines.append("Worker CPU ms per chain, per-queue layout:")
        for r in per_worker:
            parts = ", ".join(
                f"{k.removeprefix('worker-')} {v:.2f}"
                for k, v in r["cpu_ms"].items()
                if k.startswith("worker-")
            )
            lines.append(f"  {r['label']}: {parts}")
    for r in results:
        if r.get("sql_per_chain"):
            total = sum(r["sql_per_chain"].values())
            lines.append("")
            lines.append(
                f"PostgreSQL statements per chain (each a round trip; psycopg2's BEGIN "
                f"and the pool's pre-ping SELECT 1 included), "
                f"{r['label']}: {total:.2f} in the throughput phase, "
                f"{sum(r['sql_per_chain_at_rate'].values()):.2f} at the steady rate"
            )
            at_rate = r.get("sql_per_chain_at_rate") or {}
            keys = list(dict.fromkeys([*r["sql_per_chain"], *at_rate]))
            lines.append(
                table(
                    ["per chain", f"@{r['latency_rate']:g}/s", "statement"],
                    [[r["sql_per_chain"].get(k, 0.0), at_rate.get(k, 0.0), k] for k in keys],
                )
            )
    by_key = {r["scenario"]: r for r in results}
    pairs = [
        ("tracked", "bare"),
        ("tracked", "bare-noresults"),
        ("tracked-pq", "bare-pq"),
        ("tracked-nobackend", "bare-noresults"),
        ("tracked-pq", "tracked"),
        ("tracked-local-pq", "bare-pq"),
        ("floor", "bare"),
        ("floor-pq", "bare-pq"),
        ("tracked", "floor"),
        ("tracked-pq", "floor-pq"),
    ]
    ratio_rows = []
    for a, b in pairs:
        if a in by_key and b in by_key:
            ra, rb = by_key[a], by_key[b]
            ratio_rows.append(
                [
                    f"{a} / {b}",
                    f"{ra['chains_per_s'] / rb['chains_per_s']:.2f}x",
                    f"{ra['cpu_ms_per_chain'] / rb['cpu_ms_per_chain']:.2f}x",
                    f"{ra['redis_cmds_per_chain'] / rb['redis_cmds_per_chain']:.2f}x",
                    f"{ra['p50_ms'] / rb['p50_ms']:.2f}x",
                    f"{ra['p99_ms'] / rb['p99_ms']:.2f}x",
                ]
            )
    if ratio_rows:
        lines.append("")
        lines.append(
            "Ratios (same run). Contract: the tracked pipeline at least as fast as the "
            "stock chain, i.e. chains/s ratio >= 1.00x:"
        )
        lines.append(
            table(["ratio", "chains/s", "CPU/chain", "redis cmds", "p50", "p99"], ratio_rows)
        )
    return "\n".join(lines)


MEDIAN_KEYS = ("chains_per_s", "cpu_ms_per_chain", "redis_cmds_per_chain", "p50_ms", "p99_ms")


def median_result(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario over the rounds: the round of median throughput, with the medians of
    the headline figures, their lowest and highest (``spread``), and the CPU split medians."""
    ordered = sorted(rounds, key=lambda r: r["chains_per_s"])
    result = dict(ordered[len(ordered) // 2])
    result["spread"] = {}
    for key in MEDIAN_KEYS:
        values = [r[key] for r in rounds]
        result[key] = median(values)
        result["spread"][key] = (min(values), max(values))
    result["cpu_ms"] = {k: median([r["cpu_ms"][k] for r in rounds]) for k in result["cpu_ms"]}
    result["rounds"] = len(rounds)
    return result


def spread_report(rounds: list[list[dict[str, Any]]]) -> str:
    """Each round's figures and ratios: the spread behind the medians."""
    lines = ["Per round (chains/s, CPU ms/chain):"]
    for number, results in enumerate(rounds, 1):
        by_key = {r["scenario"]: r for r in results}
        figures = ", ".join(
            f"{r['scenario']} {r['chains_per_s']:.0f}/s {r['cpu_ms_per_chain']:.1f} ms"
            for r in results
        )
        ratios = ", ".join(
            f"{a}/{b} {by_key[a]['chains_per_s'] / by_key[b]['chains_per_s']:.2f}x"
            for a, b in (
                ("tracked", "bare"),
                ("tracked-pq", "bare-pq"),
                ("tracked-local-pq", "bare-pq"),
            )
            if a in by_key and b in by_key
        )
        lines.append(f"  round {number}: {figures}; {ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="chains in the throughput phase")
    parser.add_argument("--rate", type=float, default=50, help="chains/s in the latency phase")
    parser.add_argument("--duration", type=float, default=10, help="seconds of latency phase")
    parser.add_argument("--warmup", type=int, default=40, help="chains before measuring")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--pg",
        choices=["own", "shared"],
        default="own",
        help="own: a PostgreSQL server of the benchmark's own (CPU measured "
        "whole); shared: a database on the server at BENCH_POSTGRES_URL",
    )
    parser.add_argument("--layout", choices=["one", "per-queue", "both"], default="both")
    parser.add_argument("--scenarios", help=f"comma-separated, from {', '.join(SCENARIOS)}")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children, 1 worker")
    parser.add_argument("--loglevel", default="WARNING", help="celery worker --loglevel")
    parser.add_argument(
        "--count-sql",
        action="store_true",
        help="print the tracked side's SQL statements per chain (from "
        "pg_stat_statements on the own server; with --pg shared through a "
        "counting proxy, whose timings are not comparable)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the producer and workers in the throughput phase; raw "
        "stacks go to this directory (read them with profile_summary.py)",
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: wall-clock samples (idle included) instead of "
        "samples holding the GIL (Python CPU)",
    )
    parser.add_argument(
        "--py-spy",
        default=shutil.which("py-spy") or "/tmp/benchtools/bin/py-spy",
        help="py-spy binary (not a project dependency: pip install it anywhere)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="scenarios take turns this many times; medians"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    args = parser.parse_args()
    keys = args.scenarios.split(",") if args.scenarios else default_scenarios(args.layout)
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    bench = Bench(args, log_dir)
    if args.count_sql and args.pg == "shared":
        print(
            "NOTE: --count-sql relays every query through a Python proxy: its timings are "
            "not comparable with a normal run",
            file=sys.stderr,
        )
    rounds: list[list[dict[str, Any]]] = []
    try:
        for number in range(args.rounds):
            if args.rounds > 1:
                print(f"=== round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
            rounds.append([bench.run(SCENARIOS[key]) for key in keys])
    finally:
        bench.close()
        if args.keep_logs:
            print(f"logs: {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    args.loadavg = (load_before, " ".join(f"{x:.1f}" for x in os.getloadavg()))
    results = [median_result([r[i] for r in rounds]) for i in range(len(keys))]
    print(report(results, args))
    if args.rounds > 1:
        print()
        print(spread_report(rounds))
    if args.json:
        dump_json(args.json, {"args": vars(args), "results": results, "rounds": rounds})


if __name__ == "__main__":
    main()
