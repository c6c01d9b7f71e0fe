"""docs/performance.md and its charts, from the benchmarks, in one command.

    scripts/bench/report [--rounds 3] [--backlog 20000] [--only api,backlog] [--render-only]

Runs ``pipeline.py`` (both layouts, tracked against the stock chain, and the offline
provider per queue), ``api.py`` (POST /issues against the BackgroundTasks endpoint, its
latency at half that endpoint's rate, GET /tasks/<id> against a primary-key GET and its
round trips) and ``backlog.py``, keeps their JSON in ``docs/perf/``, draws the charts into
``docs/img/perf-*.svg`` (plain SVG, ``charts.py``) and writes ``docs/performance.md`` with
the machine, the commands and the figures. ``--only`` runs some of them and keeps the
others' JSON (each section of the document gives its run's date); ``--render-only``
redraws from the JSON kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from charts import Bar, bar_chart, line_chart
from common import PYTHON, ROOT, median

DOCS = ROOT / "docs"
DATA = DOCS / "perf"
IMAGES = DOCS / "img"
BENCH = Path("scripts/bench")


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "pipeline": [
            "pipeline.py",
            "-n",
            "1000",
            "--rate",
            "20",
            "--duration",
            "5",
            "--rounds",
            str(args.rounds),
            "--scenarios",
            "tracked,bare,tracked-pq,bare-pq,tracked-local-pq,floor,floor-pq",
        ],
        "api": [
            "api.py",
            "--rounds",
            str(args.rounds),
            "--duration",
            "5",
            "--apps",
            "issueflow,background,floor",
        ],
        "backlog": ["backlog.py", "-n", str(args.backlog), "--duration", "10"],
    }


def floor_p99(apps: dict[str, list[dict[str, Any]]]) -> str:
    """The insert-only floor's p99 in the same rounds, when it ran: what the disk's commit
    (fsync) and the two cores leave for any endpoint that writes a row at that rate."""
    if "floor" not in apps:
        return ""
    return f"; insert-only floor {median([r['steady']['p99_ms'] for r in apps['floor']]):.1f} ms"


def floor_section(by_key: dict[str, list[dict[str, Any]]]) -> str:
    """What the floor scenarios (``floor``, ``floor-pq``) say, when the run measured them."""
    if "floor" not in by_key or "floor-pq" not in by_key:
        return ""

    def med(key: str, name: str) -> float:
        return median([r[name] for r in by_key[key]])

    def cpu(key: str, part: str) -> float:
        return median([r["cpu_ms"][part] for r in by_key[key]])

    def ratios(a: str, b: str) -> str:
        return (
            f"{ratio(med(a, 'chains_per_s'), med(b, 'chains_per_s'))} the chains/s, "
            f"{ratio(med(a, 'cpu_ms_per_chain'), med(b, 'cpu_ms_per_chain'))} the CPU"
        )

    return f"""
### The floor: what recording a run costs

The `floor` scenarios are the stock chain with its result backend off and the least a
chain whose runs are recorded in a database could write: one row per run, INSERTed by the
producer before it publishes and UPDATEd to `SUCCESS` with a result by the last task, each
a prepared autocommit statement on raw psycopg2, durable (`scripts/bench/bare_tasks.py`,
`BENCH_FLOOR_DSN`). No stage rows, no progress, no check that the run is still wanted,
no read of the issue's text. Against the stock chain the floor runs at {ratios("floor", "bare")}
with one worker, {ratios("floor-pq", "bare-pq")} per queue: two statements per chain cost
about what the result backend does, and the goal is within reach of a chain that writes
no more than that. issueflow runs at {ratios("tracked", "floor")} of the floor with one
worker ({ratios("tracked-pq", "floor-pq")} per queue): PostgreSQL's CPU per chain
{cpu("tracked", "postgres"):.2f} ms against the floor's {cpu("floor", "postgres"):.2f}, the
workers' {cpu("tracked", "workers"):.2f} against {cpu("floor", "workers"):.2f}.

The difference is what the contract asks a run to record beyond the floor: the issue and
its three stage rows written with the run (`GET /tasks/<id>` answers every stage's state
in one round trip, and `issueflow recover` resumes a stalled run from its first
unfinished stage), summarise's read of the issue's text (a queued message carries ids,
not the text: a queued run costs about 1 KB of Redis whatever the issue's size), tag's
read and finish (the checks that a run cancelled or superseded meanwhile calls no
further provider and never runs persist), and persist's transaction (its locks, the
issue's summary, tags and state, the run's and the stage's). Measured once on
2026-12-01 with a patch that dropped tag's two statements altogether (its input carried
in its message, its marks written behind, no check for a cancelled run: not kept, it
gives up the cancel and duplicate-delivery guarantees), the chain ran at 0.89x the stock
chain with one worker and 0.85x per queue, CPU 1.16x: not enough either. Reaching the
stock chain's throughput and CPU needs a chain that writes about two statements per run,
which means per-stage progress kept outside PostgreSQL, and then `GET /tasks/<id>` would
no longer answer in one round trip.
"""


def shown(command: list[str]) -> str:
    return "scripts/bench/" + command[0].removesuffix(".py") + " " + " ".join(command[1:])


def run_benchmarks(args: argparse.Namespace) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, command in commands(args).items():
        if args.only and name not in args.only:
            continue
        print(f"### {shown(command)}", file=sys.stderr, flush=True)
        out = subprocess.run(
            [PYTHON, str(BENCH / command[0]), *command[1:], "--json", str(DATA / f"{name}.json")],
            cwd=ROOT,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        (DATA / f"{name}.txt").write_text(out)
        print(out, file=sys.stderr)
        box = machine()
        box["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        dates = (
            json.loads((DATA / "dates.json").read_text()) if (DATA / "dates.json").exists() else {}
        )
        dates[name] = box["date"]
        (DATA / "dates.json").write_text(json.dumps(dates, indent=2) + "\n")
        (DATA / "machine.json").write_text(json.dumps(box, indent=2) + "\n")


def machine() -> dict[str, str]:
    def first_line(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.split("\n")[0]
        except OSError:
            return "?"

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = Path("/proc/meminfo").read_text().split("\n")[0].split(":", 1)[1].strip()
    from tests.support.servers import pg_binary

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": first_line(pg_binary("postgres"), "--version"),
        "redis": " ".join(
            first_line(shutil.which("redis-server") or "redis-server", "--version").split()[:3]
        ),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def spread(rounds: list[float]) -> Bar:
    return Bar(median(rounds), min(rounds), max(rounds))


def render(args: argparse.Namespace) -> None:
    pipeline = json.loads((DATA / "pipeline.json").read_text())
    api = json.loads((DATA / "api.json").read_text())
    backlog = json.loads((DATA / "backlog.json").read_text())["result"]
    box = json.loads((DATA / "machine.json").read_text())
    IMAGES.mkdir(parents=True, exist_ok=True)

    by_key: dict[str, list[dict[str, Any]]] = {}
    for round_ in pipeline["rounds"]:
        for result in round_:
            by_key.setdefault(result["scenario"], []).append(result)

    def figure(key: str, name: str) -> Bar:
        return spread([r[name] for r in by_key[key]])

    # The floor (a row per run, two statements) when the run measured it.
    floors = "floor" in by_key and "floor-pq" in by_key
    layouts = [
        ("one worker", ["tracked", "bare", *(["floor"] if floors else [])]),
        ("per-queue workers", ["tracked-pq", "bare-pq", *(["floor-pq"] if floors else [])]),
    ]
    (IMAGES / "perf-chains.svg").write_text(
        bar_chart(
            "Chains per second (median of rounds; whiskers: lowest and highest)",
            "chains/s",
            [layout for layout, _ in layouts],
            ["issueflow", "stock Celery chain", *(["floor: a row per run"] if floors else [])],
            [[figure(key, "chains_per_s") for key in keys] for _, keys in layouts],
        )
    )
    parts = ["producer", "workers", "redis", "postgres"]
    cpu_groups = [
        ("issueflow", "tracked"),
        ("stock chain", "bare"),
        *([("floor", "floor")] if floors else []),
        ("issueflow, per queue", "tracked-pq"),
        ("stock, per queue", "bare-pq"),
        *([("floor, per queue", "floor-pq")] if floors else []),
    ]
    (IMAGES / "perf-cpu.svg").write_text(
        bar_chart(
            "CPU ms per chain, by process (median of rounds)",
            "ms per chain",
            [label for label, _ in cpu_groups],
            parts,
            [
                [Bar(median([r["cpu_ms"][p] for r in by_key[key]])) for p in parts]
                for _, key in cpu_groups
            ],
        )
    )
    apps: dict[str, list[dict[str, Any]]] = {}
    for run in api["runs"]:
        apps.setdefault(run["app"], []).append(run)
    (IMAGES / "perf-post.svg").write_text(
        bar_chart(
            "POST /issues: requests per second (wrk, 32 connections)",
            "req/s",
            ["issueflow", "BackgroundTasks endpoint"],
            ["req/s"],
            [[spread([r["req_per_s"] for r in apps[a]])] for a in ("issueflow", "background")],
        )
    )
    if apps["issueflow"][0].get("gets"):
        gets = [
            ("issueflow", "GET /tasks/<id>"),
            ("background", "PK GET /issues/<id>"),
            ("issueflow", "GET /issues/<id>"),
        ]
        (IMAGES / "perf-get.svg").write_text(
            bar_chart(
                "GET /tasks/<id> against a primary-key GET: requests per second (wrk)",
                "req/s",
                ["GET /tasks/<id>", "PK GET (tutorial app)", "issueflow GET /issues/<id>"],
                ["req/s"],
                [[spread([r["gets"][name]["req_per_s"] for r in apps[a]])] for a, name in gets],
            )
        )
    (IMAGES / "perf-latency.svg").write_text(
        bar_chart(
            f"Latency at a steady rate: POST /issues ({post_rate(api)}), "
            f"a chain ({pipeline['args']['rate']:g}/s)",
            "ms",
            ["POST issueflow", "POST BackgroundTasks", "chain issueflow", "stock chain"],
            ["p50", "p99"],
            [
                *[
                    [
                        spread([r["steady"]["p50_ms"] for r in apps[a]]),
                        spread([r["steady"]["p99_ms"] for r in apps[a]]),
                    ]
                    for a in ("issueflow", "background")
                ],
                *[[figure(k, "p50_ms"), figure(k, "p99_ms")] for k in ("tracked", "bare")],
            ],
        )
    )
    burst = backlog["burst_rate"]
    seconds = backlog["drain_timeline"][-1][0]
    (IMAGES / "perf-backlog.svg").write_text(
        line_chart(
            f"Draining a backlog of {backlog['n']:,} runs ({backlog['layout']} workers)",
            "runs done",
            "seconds since the workers started",
            [
                ("backlog drained", [(t, d) for t, d in backlog["drain_timeline"]]),
                ("at the burst rate", [(0.0, 0.0), (seconds, burst * seconds)]),
            ],
        )
    )
    (DOCS / "performance.md").write_text(document(args, pipeline, api, backlog, box, by_key, apps))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def post_rate(api: dict[str, Any]) -> str:
    """The steady rate of the POST latency phase: fixed, or half the seed endpoint's."""
    if api["args"]["rate"]:
        return f"{api['args']['rate']:g} req/s"
    rates = [r["steady"]["rate"] for r in api["runs"] if r["app"] == "background"]
    return f"{median(rates):.0f} req/s, half the BackgroundTasks endpoint's"


def document(
    args: argparse.Namespace,
    pipeline: dict[str, Any],
    api: dict[str, Any],
    backlog: dict[str, Any],
    box: dict[str, str],
    by_key: dict[str, list[dict[str, Any]]],
    apps: dict[str, list[dict[str, Any]]],
) -> str:
    def med(key: str, name: str) -> float:
        return median([r[name] for r in by_key[key]])

    def rng(key: str, name: str) -> str:
        values = [r[name] for r in by_key[key]]
        return f"{min(values):.3g}-{max(values):.3g}"

    def round_ratios(a: str, b: str, name: str) -> str:
        values = [x[name] / y[name] for x, y in zip(by_key[a], by_key[b], strict=True)]
        return ", ".join(f"{v:.2f}" for v in values)

    def api_med(app: str, get: Any) -> float:
        return median([get(r) for r in apps[app]])

    rows = []
    for layout, a, b in (("one worker", "tracked", "bare"), ("per queue", "tracked-pq", "bare-pq")):
        rows.append(
            f"| chains/s, {layout} | {med(a, 'chains_per_s'):.0f} ({rng(a, 'chains_per_s')}) "
            f"| {med(b, 'chains_per_s'):.0f} ({rng(b, 'chains_per_s')}) "
            f"| **{ratio(med(a, 'chains_per_s'), med(b, 'chains_per_s'))}** "
            f"(rounds: {round_ratios(a, b, 'chains_per_s')}) | ≥ 1.0x |"
        )
        rows.append(
            f"| CPU ms per chain, {layout} | {med(a, 'cpu_ms_per_chain'):.1f} "
            f"| {med(b, 'cpu_ms_per_chain'):.1f} "
            f"| {ratio(med(a, 'cpu_ms_per_chain'), med(b, 'cpu_ms_per_chain'))} | ≤ 1.0x |"
        )
    if "floor" in by_key and "floor-pq" in by_key:
        for layout, a, b in (("one worker", "floor", "bare"), ("per queue", "floor-pq", "bare-pq")):
            rows.append(
                f"| floor (a row per run, 2 statements): chains/s, {layout} "
                f"| {med(a, 'chains_per_s'):.0f} ({rng(a, 'chains_per_s')}) "
                f"| {med(b, 'chains_per_s'):.0f} "
                f"| {ratio(med(a, 'chains_per_s'), med(b, 'chains_per_s'))} "
                f"(rounds: {round_ratios(a, b, 'chains_per_s')}); CPU "
                f"{ratio(med(a, 'cpu_ms_per_chain'), med(b, 'cpu_ms_per_chain'))} | |"
            )
    post = {a: api_med(a, lambda r: r["req_per_s"]) for a in ("issueflow", "background")}
    p99 = {a: api_med(a, lambda r: r["steady"]["p99_ms"]) for a in ("issueflow", "background")}
    post_rounds = ", ".join(
        f"{x['req_per_s'] / y['req_per_s']:.2f}"
        for x, y in zip(apps["issueflow"], apps["background"], strict=True)
    )
    rows.append(
        f"| POST /issues req/s | {post['issueflow']:.0f} | {post['background']:.0f} "
        f"(BackgroundTasks) | **{ratio(post['issueflow'], post['background'])}** "
        f"(rounds: {post_rounds}) | ≥ 1.0x |"
    )
    p99_rounds = ", ".join(f"{r['steady']['p99_ms']:.1f}" for r in apps["issueflow"])
    rows.append(
        f"| POST /issues p99 at {post_rate(api)} | {p99['issueflow']:.1f} ms "
        f"(rounds: {p99_rounds}) | {p99['background']:.1f} ms{floor_p99(apps)} "
        f"| {'met' if p99['issueflow'] <= 10 else 'missed by %.0f ms' % (p99['issueflow'] - 10)} "
        "| ≤ 10 ms |"
    )
    if apps["issueflow"][0].get("gets"):

        def get_rate(app: str, name: str) -> list[float]:
            return [r["gets"][name]["req_per_s"] for r in apps[app]]

        def get_cpu(app: str, name: str) -> float:
            return median([r["gets"][name]["cpu_ms_per_req"]["server"] for r in apps[app]])

        tasks = get_rate("issueflow", "GET /tasks/<id>")
        pk = get_rate("background", "PK GET /issues/<id>")
        get_rounds = ", ".join(f"{t / k:.2f}" for t, k in zip(tasks, pk, strict=True))
        rows.append(
            f"| GET /tasks/<id> req/s (uvicorn CPU ms/req) | {median(tasks):.0f} "
            f"({get_cpu('issueflow', 'GET /tasks/<id>'):.2f}) "
            f"| {median(pk):.0f} ({get_cpu('background', 'PK GET /issues/<id>'):.2f}) "
            f"(primary-key GET) | **{ratio(median(tasks), median(pk))}** "
            f"(rounds: {get_rounds}) | ≥ 1.0x |"
        )
    trips = api.get("round_trips", {})
    if trips:
        rows.append(
            f"| GET /tasks/<id> round trips | {trips.get('GET /tasks/<root id>', '?')} | | | 1 |"
        )
    if "tracked-local-pq" in by_key:
        a, b = "tracked-local-pq", "bare-pq"
        rows.append(
            f"| chains/s, offline provider, per queue | {med(a, 'chains_per_s'):.0f} "
            f"({rng(a, 'chains_per_s')}) | {med(b, 'chains_per_s'):.0f} (stock no-op chain) "
            f"| **{ratio(med(a, 'chains_per_s'), med(b, 'chains_per_s'))}** "
            f"(rounds: {round_ratios(a, b, 'chains_per_s')}) | ≥ 0.5x |"
        )
    rows.append(
        f"| Redis memory per queued run | {backlog['redis_bytes_per_run']:.0f} B | | | ≤ 1,536 B |"
    )
    rows.append(
        f"| backlog drain rate ({backlog['n']:,} runs) | {backlog['drain_rate']:.1f} runs/s "
        f"| {backlog['burst_rate']:.1f} runs/s (burst of {backlog['burst']:,}) "
        f"| **{backlog['drain_over_burst']:.2f}x** | ≥ 0.8x |"
    )
    idle, during = backlog["publish_ms_idle"], backlog["publish_ms_during_drain"]
    rows.append(
        f"| publish p50/p99 while draining | {during['50']:.1f} / {during['99']:.1f} ms "
        f"| {idle['50']:.1f} / {idle['99']:.1f} ms (workers idle) | | unchanged |"
    )
    cmds = commands(args)
    dates = json.loads((DATA / "dates.json").read_text()) if (DATA / "dates.json").exists() else {}
    ran = "; ".join(f"{name} {when}" for name, when in dates.items())
    return f"""# Performance

Generated by `scripts/bench/report` (do not edit: run it again). Every figure compares
issueflow with its yardstick **measured side by side in the same run**; the machine is
shared and noisy, so compare ratios, not absolute numbers of two runs. Medians of the
rounds; the spread (lowest-highest round) in brackets and as whiskers on the charts.

Machine: {box["cpu"]}, {box["memory"]} RAM, Linux {box["kernel"]}, Python {box["python"]},
{box["postgres"]}, {box["redis"]}; load average when the report was written:
{box["load"]}; {box["date"]}.{f" Runs: {ran}." if ran else ""}

| what | issueflow | yardstick, same run | ratio | goal |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

## The chain against a stock Celery chain

`{shown(cmds["pipeline"])}`: the tracked chain (`ENRICH_PROVIDER=noop`, PostgreSQL,
every stage's bookkeeping) against a stock 3-task Celery chain with its result backend on,
in one prefork worker and with one worker per queue.

![chains per second](img/perf-chains.svg)

![CPU per chain](img/perf-cpu.svg)
{floor_section(by_key)}
## POST /issues against the BackgroundTasks endpoint

`{shown(cmds["api"])}`: one uvicorn process each, PostgreSQL, wrk with 32 connections,
then a steady rate for the latency percentiles: half the BackgroundTasks endpoint's req/s
measured in the same round (it runs first in each round), the rate of the issue's p99 goal.
Then, in the same processes, `GET /tasks/<id>` and a primary-key GET (`session.get` in the
BackgroundTasks app, the tutorial's shape) with wrk for 5 s each.

![POST throughput](img/perf-post.svg)

![GET throughput](img/perf-get.svg)

![latency percentiles](img/perf-latency.svg)

## A backlog

`{shown(cmds["backlog"])}` (the full size: `scripts/bench/backlog -n 100000`): runs
published with no worker up, then drained while runs keep arriving at
{backlog["rate"]:g}/s.

![backlog drain](img/perf-backlog.svg)

## Where the time goes, and what is left

A chain's CPU is Celery's per-task work (the worker's event loop, the ack, the next
stage's publish), which the stock chain pays too, plus the run's bookkeeping. Two of
Celery's per-task costs are cut here and not in the stock chain: a stage that succeeds
sends the next one itself as a slim message (`pipelines/messages.py`, the same form
`publish_chain` sends: no `Signature` objects, no routing, no empty headers), about 0.22 ms
of CPU per publish instead of Celery's continuation's 0.39 ms; and kombu's Redis channel
keeps one Redis client (`app/broker.py`) where it built one per publish, received message
and ack (redis-py copies some 170 response callbacks into each: about 0.06 ms, six times
per chain; it was a tenth of a worker's profile). On the workers the bookkeeping is four
statements per chain on PostgreSQL, plus a share of the mark buffer's: summarise reads its
input and its own stage row in one SELECT that also computes the text's fingerprint and
finds an earlier result for it (`pipelines/cache.py`), one round trip in autocommit, and
writes nothing itself: its finish (result, tokens, start and finish times) waits in a
per-process buffer (`pipelines/marks.py`) and travels in tag's message, and tag's read
writes it first, in the same statement (a data-modifying CTE), before tag calls its
provider. Tag's read is also what tells whether the run was cancelled or superseded while
summarise ran. Tag finishes with one UPDATE, at once: it says whether the run ended while
tag ran, before persist is sent. Persist is one statement (its locks, then every write, in
data-modifying CTEs) in a transaction of two round trips on the same autocommit pool, its
BEGIN sent in the statement's query string and its COMMIT alone (`app/db.py`:
`transaction`; four round trips before, nine before that). The buffer also holds the start
marks and the issue's running mark, taken back by tag's finish for a short stage, and
writes what waits every 50 ms in one statement for all of them, prepared like the others
(its marks as JSON lists, one text whatever their count; each row found by its primary
key: with the lists joined as `json_to_recordset`, which the planner takes for 100 rows,
the plan of a flush prepared while the tables were small scanned the stages and issues
whole, some 1.5 ms of PostgreSQL's CPU per flush with 1,500 runs and more as they grew,
now 0.3 ms whatever their size: `issueflow_rows`, migration 0060, and the flush's own
connection without sequential scans); summarise's finish is written
there too, so a run's page shows summarise done while tag still waits in its queue (each
write guarded: it never undoes a later state, and the second of the two changes nothing).
That flush is a fraction of a statement per chain (0.5-0.65 at 50-65 chains/s,
`--count-sql`), fewer as the rate grows (one per process per 50 ms, for all the runs it
holds: 0.3 in `stage_cost`).
summarise's and tag's notices to the runs' watchers go out with that flush, pipelined in
one Redis round trip, persist's at once. Then the producer's one statement (issue, run and
three stages): six round trips per chain and that share of a flush (seven before summarise's
finish was written behind), and PostgreSQL's own CPU for all of it. The workers' statements
are prepared once per database connection (`pipelines/prepared.py`: `PREPARE`, then only
`EXECUTE`): sent as text, PostgreSQL parsed and planned each one anew, most of its CPU for
these short primary-key statements (a stage's read 155 µs of backend CPU as text, 50 µs
prepared; summarise's read with its fingerprint 280 µs and 75 µs). Writing summarise's
finish behind took some 0.5 ms of the workers' client CPU per chain off summarise
(`scripts/bench/stage_cost`) and left PostgreSQL's CPU where it was: tag's read carries
the write, the flush repeats it. With that, the workers'
CPU per chain is within some 10-20 % of the stock chain's (the `workers` column of
`docs/perf/pipeline.txt`); most of what is left is PostgreSQL's. The stock chain
with its Redis result backend does none of that; as long as a run is recorded in
PostgreSQL at each stage, its CPU per chain stays above the stock chain's, and
on a 2-core machine where every process competes for the same cores,
throughput follows CPU. `scripts/bench/pipeline --count-sql` counts the statements,
`scripts/bench/stage_cost` shows the bookkeeping alone, `scripts/bench/pipeline --profile
DIR` where the rest goes.

`POST /issues` is one database round trip (the issue, its run and the three stages in one
INSERT with data-modifying CTEs, on an autocommit pool: no BEGIN, no COMMIT; a prepared
statement, so PostgreSQL parses and plans it once per connection: about 280 µs of backend
CPU instead of 400-450 µs as text) and one LPUSH of a message that carries only what a
worker and Flower read (no empty Celery headers, no RPC reply fields): about 1 KB, which
is also what a queued run costs in Redis. On Redis a publish declares no queue (the
anonymous exchange is an LPUSH onto the queue's list; kombu's `maybe_declare` copied and
bound the queue on every publish, some 15-20 % of the publish's CPU), for every stage's
message as for this one. Its CPU in
uvicorn is below the BackgroundTasks endpoint's, which commits and then reads the issue
back. Its p99 at a steady rate follows whatever else the two cores run at that moment
and how long the disk takes to make a commit durable (each `POST /issues` waits for its
commit's WAL flush, as the BackgroundTasks endpoint does); the BackgroundTasks
endpoint's p99 in the same round is the yardstick, and the insert-only floor (validate,
INSERT, commit, answer: no broker, no run) shows what any endpoint that writes a row durably
gets at that rate. The load generator
keeps its own garbage collector off while it measures: a full collection of its finished
request tasks once paused it for tens of milliseconds, at the same moment of every app's
run, and it counted that as the server's latency.

The raw figures of this report: `docs/perf/*.json` and `docs/perf/*.txt`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=20_000, help="runs in the backlog")
    parser.add_argument("--render-only", action="store_true", help="redraw from docs/perf/")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=[],
        help="comma-separated, from pipeline, api, backlog: run these, keep the others' JSON",
    )
    args = parser.parse_args()
    if not args.render_only:
        run_benchmarks(args)
    # The commands shown are those of the JSON kept.
    saved = json.loads((DATA / "pipeline.json").read_text())["args"]
    args.rounds = saved.get("rounds", args.rounds)
    args.backlog = json.loads((DATA / "backlog.json").read_text())["args"]["n"]
    render(args)
    print(f"wrote {DOCS / 'performance.md'} and {IMAGES}/perf-*.svg", file=sys.stderr)


if __name__ == "__main__":
    main()
