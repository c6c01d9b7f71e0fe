"""POST /issues: issueflow's API against an insert-only floor and the original plan's
BackgroundTasks endpoint, in one run; GET /tasks/<id> against a primary-key GET; then the
SQL round trips of GET /tasks/<id>.

    scripts/bench/api [--duration 10] [--rate 0] [--connections 32] [--rounds 1]
                      [--apps issueflow,issueflow-nobackend,floor,background]

Each app runs alone as ONE uvicorn worker (uvloop, httptools, no access log) on a
PostgreSQL database of the benchmark's own; issueflow gets a reachable broker (a
redis-server of the benchmark's own, no Celery worker: the chains just queue up). Per app:

1. throughput: ``wrk -t1 -c32`` POSTing the same issue for ``--duration`` seconds (after a
   short warm-up), with the CPU per request of uvicorn, the PostgreSQL backends and Redis;
2. latency at a steady rate: ``loadgen.py`` in its own process, open loop, latency from
   each request's scheduled send time. The rate is ``--rate`` req/s, or by default (0) half
   the BackgroundTasks endpoint's req/s measured in step 1 of the same round (that app then
   runs first in each round): the issue's goal is p99 <= 10 ms there;
3. GETs (issueflow and the BackgroundTasks app; ``--skip-gets`` leaves them out): in the
   same uvicorn process, ``wrk`` GETs one issue's run (``GET /tasks/<id>``) and the issue
   (``GET /issues/<id>``); the BackgroundTasks app answers a primary-key GET as the
   tutorial writes it (``session.get``), the contract's yardstick. req/s and CPU per
   request for ``--get-duration`` seconds each.

With ``--rounds`` > 1 the apps take turns, round after round, and the table shows each
app's median. Then GET /tasks/<id> runs in-process against a counting proxy: SQL
statements per request as SQLAlchemy's ``before_cursor_execute`` sees them, and the round
trips that really reach PostgreSQL (psycopg2's BEGIN and the pool's pre-ping included).

The machine is shared and noisy: compare the rows of one run (the ratios), not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import (  # first: it puts the repository root on sys.path
    BENCH_ENV,
    ISSUE_BODY,
    PYTHON,
    VENV_BIN,
    CpuMeter,
    Database,
    command_delta,
    dump_json,
    median,
    py_spy,
    table,
)

from tests.support.processes import Processes, free_port, listening, wait_until
from tests.support.servers import RedisServer

ISSUE = {"title": "Settings page hangs on save", "body": ISSUE_BODY}

APPS = {
    "issueflow": ("issueflow API (app.main:app)", "app.main:app"),
    "issueflow-nobackend": ("issueflow API, CELERY_RESULT_BACKEND=''", "app.main:app"),
    "floor": ("insert-only floor", "baseline_app:floor_app"),
    "background": ("original plan: BackgroundTasks", "baseline_app:background_app"),
    # what-if variants of issueflow (scripts/bench/app_variants.py), not run by default
    "issueflow-nosent": ("issueflow, task_send_sent_event=False", "app_variants:no_sent_event"),
    "issueflow-nosweep": ("issueflow, no outbox sweeper", "app_variants:no_sweeper"),
}
VARIANTS = {"issueflow-nosent": "no_sent_event", "issueflow-nosweep": "no_sweeper"}

# The GET phases: issueflow's run status and its own issue read, and a primary-key GET in
# the BackgroundTasks app (the tutorial's ``session.get``), the contract's yardstick.
GETS = {
    "issueflow": {"GET /tasks/<id>": "/tasks/{task}", "GET /issues/<id>": "/issues/{issue}"},
    "background": {"PK GET /issues/<id>": "/issues/{issue}"},
}

WRK_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
"""
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ApiBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs = Processes(BENCH_ENV, work)
        self.broker = RedisServer(self.procs, "redis-broker").start()
        self.db = Database("postgres", self.procs, pg=args.pg)
        body = json.dumps(ISSUE)
        self.body_file = work / "issue.json"
        self.body_file.write_text(body)
        self.lua = work / "post_issue.lua"
        self.lua.write_text(WRK_POST % lua_string(body) + WRK_DONE)
        self.get_lua = work / "get.lua"
        self.get_lua.write_text('wrk.method = "GET"\n' + WRK_DONE)
        # --rate 0: the steady rate of a round is half the BackgroundTasks endpoint's
        # req/s measured in that round (it runs first), the issue's p99 target rate.
        self.round_rate = float(args.rate)
        self.wrk = shutil.which("wrk")

    def close(self) -> None:
        self.procs.stop_all()
        self.db.drop()
        self.broker.cleanup()

    def env(self, key: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.db.url,
            "CELERY_BROKER_URL": self.broker.url(0),
            "CELERY_RESULT_BACKEND": "" if key == "issueflow-nobackend" else self.broker.url(1),
            "ENRICH_PROVIDER": "noop",
            "BENCH_APP_VARIANT": VARIANTS.get(key, ""),
        }

    def run(self, key: str) -> dict[str, Any]:
        label, target = APPS[key]
        print(f"--- {label}", file=sys.stderr, flush=True)
        self.broker.client.flushall()
        self.db.truncate()
        port = free_port()
        server = self.procs.start(
            f"uvicorn-{key}",
            str(VENV_BIN / "uvicorn"),
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            env=self.env(key),
        )
        try:
            wait_until(
                lambda: listening(port),
                timeout=30,
                interval=0.05,
                what=f"{label} on port {port}",
                process=server,
                log=self.procs.log_dir / f"uvicorn-{key}.log",
            )
            url = f"http://127.0.0.1:{port}/issues"
            self.load(url, self.args.warmup)  # warm-up: connections, caches, JIT-less Python
            db_meter = self.db.meter_args()
            meter = CpuMeter(
                trees={"server": server.pid, **db_meter.get("trees", {})},
                pids={"redis": self.broker.pid},
                pid_sets=db_meter.get("pid_sets", {}),
            )
            spy = self.start_profiler(key, server)
            commands_before = self.broker.commandstats()
            sessions_before = self.db.sessions()
            meter.start()
            wrk = self.load(url, self.args.duration)
            cpu = meter.stop()
            commands = command_delta(commands_before, self.broker.commandstats())
            time.sleep(0.6)  # session counts reach pg_stat_database within 0.5 s
            sessions = (self.db.sessions() or 0) - (sessions_before or 0)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=30)
            if not self.args.rate and key == "background":
                self.round_rate = wrk["requests"] / (wrk["duration_us"] / 1e6) / 2
            steady = self.steady(url)
            gets = self.get_phases(key, port, server.pid)
        finally:
            self.procs.stop(server)
        requests = wrk["requests"]
        return {
            "app": key,
            "label": label,
            "req_per_s": requests / (wrk["duration_us"] / 1e6),
            "wrk_p50_ms": wrk["p50_us"] / 1000,
            "wrk_p99_ms": wrk["p99_us"] / 1000,
            "errors": wrk["non2xx"] + wrk["socket_errors"],
            "cpu_ms_per_req": {k: v * 1000 / requests for k, v in cpu.items()},
            "redis_cmds_per_req": sum(commands.values()) / requests,
            "redis_cmds": {k: v / requests for k, v in commands.items()},
            "pg_sessions_per_req": sessions / requests,
            "steady": steady,
            "gets": gets,
        }

    def get_phases(self, key: str, port: int, server_pid: int) -> dict[str, dict[str, Any]]:
        """Closed-loop GETs of one issue and its run, after the POST phases (so the tables
        hold thousands of rows): req/s and CPU per request, each path in turn."""
        paths = GETS.get(key, {})
        if not paths or self.args.skip_gets:
            return {}
        base = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(
            base + "/issues",
            data=self.body_file.read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            created = json.load(response)
        # issueflow answers {"issue": ..., "task_id": ...}, the BackgroundTasks app the issue.
        ids = {"issue": created.get("issue", created)["id"], "task": created.get("task_id", "")}
        results = {}
        for name, template in paths.items():
            url = base + template.format(**ids)
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200, (url, response.status)
            self.load(url, self.args.warmup, self.get_lua)
            db_meter = self.db.meter_args()
            meter = CpuMeter(
                trees={"server": server_pid, **db_meter.get("trees", {})},
                pid_sets=db_meter.get("pid_sets", {}),
            )
            meter.start()
            wrk = self.load(url, self.args.get_duration, self.get_lua)
            cpu = meter.stop()
            requests = wrk["requests"]
            results[name] = {
                "req_per_s": requests / (wrk["duration_us"] / 1e6),
                "p50_ms": wrk["p50_us"] / 1000,
                "p99_ms": wrk["p99_us"] / 1000,
                "errors": wrk["non2xx"] + wrk["socket_errors"],
                "cpu_ms_per_req": {k: v * 1000 / requests for k, v in cpu.items()},
            }
        return results

    def start_profiler(self, key: str, server: subprocess.Popen[bytes]) -> Any:
        if not self.args.profile:
            return None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"api-{key}.txt"
        spy = py_spy(self.procs, self.args.py_spy, f"py-spy-{key}", server.pid, out, "--gil")
        time.sleep(1.0)
        return spy

    def load(self, url: str, duration: float, lua: Path | None = None) -> dict[str, Any]:
        """Closed loop, as fast as the server answers: wrk (POST the issue, or ``lua``)."""
        if self.wrk is None:
            raise SystemExit("wrk not found: apt-get install -y wrk")
        out = subprocess.run(
            [
                self.wrk,
                "-t1",
                f"-c{self.args.connections}",
                f"-d{duration:g}s",
                "-s",
                str(lua or self.lua),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
        result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
        return result

    def steady(self, url: str) -> dict[str, Any]:
        out = subprocess.run(
            [
                PYTHON,
                str(Path(__file__).with_name("loadgen.py")),
                url,
                "--rate",
                f"{self.round_rate:.1f}",
                "--duration",
                str(self.args.duration),
                "--connections",
                str(self.args.connections),
                "--body-file",
                str(self.body_file),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["rate"] = self.round_rate
        return result


# --------------------------------------------------------------------------- GET /tasks


def count_round_trips(
    db: Database, broker: RedisServer, repeat: int = 20
) -> tuple[str, dict[str, float]]:
    """SQL per request of GET /tasks/<id> (and POST /issues), in-process, through a proxy."""
    from sqlcount import PgCountingProxy

    proxy = PgCountingProxy(db.address())
    url = proxy.url(db.url)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": broker.url(0),
            "CELERY_RESULT_BACKEND": "",
            "ENRICH_PROVIDER": "noop",
        }
    )
    import warnings

    from sqlalchemy import event

    with warnings.catch_warnings():  # Starlette nudges TestClient users towards httpx2
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from app.config import Settings, get_settings
    from app.main import create_app

    get_settings.cache_clear()
    app = create_app(Settings(), sweep_outbox=False)
    statements: list[str] = []
    # The API's engines: the one of its transactions, and its autocommit one for reads.
    reads = getattr(app.state, "autocommit_session_factory", None)
    binds = [app.state.engine] + ([reads.kw["bind"]] if reads is not None else [])
    engines = {id(e): e for e in binds}
    for engine in engines.values():
        event.listen(
            engine,
            "before_cursor_execute",
            lambda conn, cursor, sql, params, context, many: statements.append(sql),
        )

    def measure(method: str, path: str, n: int, **kwargs: Any) -> tuple[float, float, Any]:
        statements.clear()
        wire_before = proxy.snapshot()
        response = None
        for _ in range(n):
            response = client.request(method, path, **kwargs)
        wire = proxy.snapshot() - wire_before
        return len(statements) / n, sum(wire.values()) / n, (response, wire)

    rows = []
    detail = []
    try:
        with TestClient(app) as client:
            created = client.post("/issues", json=ISSUE)
            assert created.status_code == 201, created.text
            task_id = created.json()["task_id"]
            client.get(f"/tasks/{task_id}")  # warm: connection in the pool
            with db.engine.connect() as conn:
                import sqlalchemy as sa

                stage_id = conn.execute(
                    sa.text(
                        "SELECT task_id FROM enrichment_stages WHERE run_id = :r AND position = 2"
                    ),
                    {"r": task_id},
                ).scalar_one()
            cases = [
                ("POST /issues", "POST", "/issues", 1, {"json": ISSUE}),
                ("GET /tasks/<root id>", "GET", f"/tasks/{task_id}", repeat, {}),
                ("GET /tasks/<stage id>", "GET", f"/tasks/{stage_id}", repeat, {}),
                ("GET /tasks/<unknown id> (404)", "GET", "/tasks/nope", repeat, {}),
            ]
            for name, method, path, n, kwargs in cases:
                sql, wire, (response, counts) = measure(method, path, n, **kwargs)
                rows.append([name, response.status_code, sql, wire])
                detail.append((name, {k: v / n for k, v in counts.items()}))
    finally:
        for engine in engines.values():
            engine.dispose()
        proxy.close()
    lines = [
        table(
            [
                "request",
                "status",
                "SQL statements (before_cursor_execute)",
                "round trips on the wire",
            ],
            rows,
        )
    ]
    for name, counts in detail:
        lines.append(f"\n  {name}, on the wire per request:")
        lines += [f"    {v:4.1f}  {k}" for k, v in counts.items()]
    return "\n".join(lines), {str(row[0]): float(row[3]) for row in rows}


# --------------------------------------------------------------------------- report


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by_app: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_app.setdefault(r["app"], []).append(r)

    def med(app: str, get: Any) -> float:
        return median([get(r) for r in by_app[app]])

    rates = [r["steady"]["rate"] for r in runs]
    rate = (
        f"{args.rate:g} req/s"
        if args.rate
        else "half the BackgroundTasks endpoint's req/s of the round ("
        + ", ".join(f"{x:.0f}" for x in rates[:: len(by_app)])
        + " req/s)"
    )
    lines = [
        f"load average before/after: {args.loadavg[0]} / {args.loadavg[1]} (2 cores, shared)",
        f"POST /issues, 1 uvicorn worker, PostgreSQL, {args.connections} connections; "
        f"throughput: wrk -t1 for {args.duration:g} s; latency: open loop at "
        f"{rate} for {args.duration:g} s"
        + (f"; median of {args.rounds} rounds" if args.rounds > 1 else ""),
        "",
    ]
    rows = []
    for app in by_app:
        cpu_keys = ("server", "postgres", "redis")
        rows.append(
            [
                APPS[app][0],
                med(app, lambda r: r["req_per_s"]),
                med(app, lambda r: r["wrk_p50_ms"]),
                med(app, lambda r: r["wrk_p99_ms"]),
                *[med(app, lambda r, k=k: r["cpu_ms_per_req"].get(k, 0.0)) for k in cpu_keys],
                med(app, lambda r: r["redis_cmds_per_req"]),
                med(app, lambda r: r["pg_sessions_per_req"]),
                med(app, lambda r: r["steady"]["rate"]),
                med(app, lambda r: r["steady"]["achieved_rate"]),
                med(app, lambda r: r["steady"]["p50_ms"]),
                med(app, lambda r: r["steady"]["p99_ms"]),
                med(app, lambda r: r["steady"]["max_ms"]),
                sum(
                    r["errors"]
                    + sum(
                        n for s, n in r["steady"]["statuses"].items() if not str(s).startswith("2")
                    )
                    for r in by_app[app]
                ),
            ]
        )
    lines.append(
        table(
            [
                "app",
                "req/s",
                "wrk p50 ms",
                "wrk p99 ms",
                "CPU ms/req: uvicorn",
                "postgres",
                "redis",
                "redis cmds/req",
                "new PG conns/req",
                "steady: target/s",
                "achieved/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
            ],
            rows,
        )
    )
    lines.append("")
    lines.append("Redis commands per request, by command (wrk phase):")
    for app, rs in by_app.items():
        cmds = rs[-1]["redis_cmds"]
        lines.append(
            f"  {app}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cmds.items(), key=lambda kv: -kv[1]))
        )
    if args.rounds > 1:
        lines.append("")
        lines.append(
            "req/s per round: "
            + "; ".join(
                f"{app} " + ", ".join(f"{r['req_per_s']:.0f}" for r in rs)
                for app, rs in by_app.items()
            )
        )
    if "issueflow" in by_app:
        lines.append("")
        lines.append(
            "Ratios (same run). Contract: POST /issues at least as fast as the "
            "BackgroundTasks endpoint (req/s ratio >= 1.00x); p99 <= 10 ms at "
            f"{rate}:"
        )
        pairs = [("issueflow", "background"), ("issueflow", "floor"), ("background", "floor")]
        pairs += [
            (app, "issueflow") for app in by_app if app.startswith("issueflow-")
        ]  # what a change would gain
        ratio_rows = []
        for a, b in pairs:
            if a not in by_app or b not in by_app:
                continue

            def ratio(get: Any, a: str = a, b: str = b) -> str:
                return f"{med(a, get) / med(b, get):.2f}x"

            ratio_rows.append(
                [
                    f"{a} / {b}",
                    ratio(lambda r: r["req_per_s"]),
                    ratio(lambda r: r["steady"]["p99_ms"]),
                    ratio(lambda r: r["cpu_ms_per_req"]["server"]),
                    ratio(lambda r: sum(r["cpu_ms_per_req"].values())),
                ]
            )
        lines.append(
            table(
                ["ratio", "req/s", "p99 steady", "CPU/req uvicorn", "CPU/req (all)"],
                ratio_rows,
            )
        )
        p99s = [r["steady"]["p99_ms"] for r in by_app["issueflow"]]
        p99 = median(p99s)
        lines.append(
            f"issueflow p99 at {rate}: {p99:.1f} ms (rounds: "
            + ", ".join(f"{x:.1f}" for x in p99s)
            + f"; {'meets' if p99 <= 10 else 'MISSES'} the 10 ms target)"
        )
    lines += get_report(by_app)
    return "\n".join(lines)


def get_report(by_app: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The GET phases: req/s and CPU per request, and GET /tasks/<id> against the PK GET."""
    phases = [(app, name) for app, runs in by_app.items() for name in (runs[0].get("gets") or {})]
    if not phases:
        return []

    def values(app: str, name: str, get: Any) -> list[float]:
        return [get(r["gets"][name]) for r in by_app[app]]

    rows = [
        [
            f"{app}: {name}",
            median(values(app, name, lambda g: g["req_per_s"])),
            median(values(app, name, lambda g: g["p50_ms"])),
            median(values(app, name, lambda g: g["p99_ms"])),
            median(values(app, name, lambda g: g["cpu_ms_per_req"]["server"])),
            median(values(app, name, lambda g: g["cpu_ms_per_req"].get("postgres", 0.0))),
            sum(values(app, name, lambda g: g["errors"])),
        ]
        for app, name in phases
    ]
    lines = [
        "",
        "GET phases (wrk -t1, same connections, one issue and its run, after the POST phases):",
        table(
            ["GET", "req/s", "p50 ms", "p99 ms", "CPU ms/req: uvicorn", "postgres", "errors"],
            rows,
        ),
    ]
    tasks = ("issueflow", "GET /tasks/<id>")
    yardsticks = [("background", "PK GET /issues/<id>"), ("issueflow", "GET /issues/<id>")]
    if tasks not in phases:
        return lines
    lines.append("Contract: GET /tasks/<id> at >= 1.00x a primary-key GET (req/s), same run:")
    for app, name in yardsticks:
        if (app, name) not in phases:
            continue
        per_round = [
            t["gets"][tasks[1]]["req_per_s"] / y["gets"][name]["req_per_s"]
            for t, y in zip(by_app[tasks[0]], by_app[app], strict=True)
        ]
        cpu = median(values(*tasks, lambda g: g["cpu_ms_per_req"]["server"])) / median(
            values(app, name, lambda g: g["cpu_ms_per_req"]["server"])
        )
        lines.append(
            f"  GET /tasks/<id> / {app} {name}: req/s {median(per_round):.2f}x (rounds: "
            + ", ".join(f"{x:.2f}" for x in per_round)
            + f"), uvicorn CPU/req {cpu:.2f}x"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="req/s of the latency phase; 0 (default): half the BackgroundTasks endpoint's "
        "req/s in the same round (it then runs first in each round)",
    )
    parser.add_argument("--get-duration", type=float, default=5, help="seconds per GET phase")
    parser.add_argument("--skip-gets", action="store_true", help="no GET phases")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pg",
        choices=["own", "shared"],
        default="own",
        help="own: a PostgreSQL server of the benchmark's own (CPU measured "
        "whole); shared: a database on the server at BENCH_POSTGRES_URL",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--apps",
        default="issueflow,issueflow-nobackend,floor,background",
        help=f"comma-separated, from {', '.join(APPS)}",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy (--gil) uvicorn during the wrk phase; raw stacks go here",
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/benchtools/bin/py-spy")
    parser.add_argument("--skip-round-trips", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keys = args.apps.split(",")
    if unknown := [k for k in keys if k not in APPS]:
        parser.error(f"unknown apps {unknown}")
    if not args.rate:
        if "background" not in keys:
            parser.error("--rate 0 (half the seed endpoint's rate) needs the background app")
        keys.sort(key=lambda k: k != "background")
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    bench = ApiBench(args, work)
    runs = []
    round_trips = None
    wire: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            for key in keys:
                runs.append(bench.run(key))
                time.sleep(1)
        if not args.skip_round_trips:
            bench.db.truncate()
            round_trips, wire = count_round_trips(bench.db, bench.broker)
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    args.loadavg = (load_before, " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(report(runs, args))
    if round_trips:
        print(
            "\nSQL per request, in-process through a counting proxy (expected for GET "
            "/tasks/<id>: 1 statement):"
        )
        print(round_trips)
    if args.json:
        dump_json(args.json, {"args": vars(args), "runs": runs, "round_trips": wire})


if __name__ == "__main__":
    main()
