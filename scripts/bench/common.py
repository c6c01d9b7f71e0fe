"""What the benchmarks share beyond tests.support: a database of their own, CPU, Redis and
SQL accounting, tables.

Processes, free ports, the wait loop, a redis-server and a PostgreSQL server of one's own
come from ``tests.support`` (shared with the tests); a benchmark's database is a PostgreSQL
database created for the run (on a server of its own by default) or a SQLite file in a
temporary directory, and it stops exactly what it started, by PID.

CPU is read from /proc/<pid>/stat (utime + stime, plus cutime + cstime for the children a
process reaped) over whole process trees, so a figure covers a Celery worker and its pool
children, uvicorn, redis-server, and every process of the benchmark's own PostgreSQL
server, backends that came and went included.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The one place that puts the repository root (tests.support, app, pipelines) and this
# directory on sys.path: a bench script imports common before anything of the project's.
# Every process a benchmark starts finds them on PYTHONPATH (BENCH_ENV).
PYTHONPATH = os.pathsep.join([str(ROOT), str(BENCH)])
BENCH_ENV = {"PYTHONPATH": PYTHONPATH}
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tests.support.processes import Processes  # noqa: E402 (needs the sys.path above)
from tests.support.servers import PostgresServer  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)

# A realistic issue: the same text on every side of every comparison.
ISSUE_BODY = (
    "Steps to reproduce: open the settings page, change the theme, press save. "
    "Expected: the theme changes. Actual: the page hangs for ten seconds and the "
    "console shows 'TypeError: cannot read properties of undefined'. Happens on "
    "Firefox 128 and Chrome 126, not on Safari. Started after the 2.3 upgrade."
)


# --------------------------------------------------------------------------- CPU


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def pid_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks; 0 if gone."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def _process_table() -> dict[int, list[str]]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                table[int(entry.name)] = fields
    return table


def tree_pids(root: int, processes: dict[int, list[str]] | None = None) -> list[int]:
    """``root`` and all its live descendants (by parent PID: PostgreSQL's children start
    sessions of their own, so process groups would miss them)."""
    processes = processes if processes is not None else _process_table()
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return sorted(found)


def tree_ticks(root: int) -> int:
    """CPU of a process tree: every live member's own time plus the time of the children
    each member has reaped (a prefork pool's old children, PostgreSQL's closed backends)."""
    processes = _process_table()
    return sum(sum(int(x) for x in processes[pid][11:15]) for pid in tree_pids(root, processes))


@dataclass
class CpuMeter:
    """CPU seconds of named process trees, single PIDs and PID sets, between two readings."""

    trees: dict[str, int] = field(default_factory=dict)  # name -> root pid of a process tree
    pids: dict[str, int] = field(default_factory=dict)  # name -> single pid
    pid_sets: dict[str, Callable[[], Iterable[int]]] = field(default_factory=dict)
    _start: dict[str, dict[int, int]] = field(default_factory=dict)

    def _read(self) -> dict[str, dict[int, int]]:
        reading: dict[str, dict[int, int]] = {}
        for name, root in self.trees.items():
            reading[name] = {root: tree_ticks(root)}
        for name, pid in self.pids.items():
            reading[name] = {pid: pid_ticks(pid)}
        for name, pids in self.pid_sets.items():
            reading[name] = {pid: pid_ticks(pid) for pid in pids()}
        return reading

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds per name since ``start``. A PID set counts processes new since then
        from zero; one that ended in between is lost (pooled connections do not end)."""
        end = self._read()
        used = {}
        for name, ticks in end.items():
            before = self._start.get(name, {})
            used[name] = sum(t - before.get(pid, 0) for pid, t in ticks.items()) / CLK_TCK
        return used


def py_spy(
    procs: Processes, binary: str, name: str, pid: int, out: Path, *flags: str
) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` (raw stacks, 200 Hz, without pausing it) into ``out``,
    which it writes on SIGINT; ``flags`` such as --gil, --idle, --subprocesses."""
    return procs.start(
        name,
        binary,
        "record",
        "-p",
        str(pid),
        "--format",
        "raw",
        "--nolineno",
        "--rate",
        "200",
        "--nonblocking",
        "-o",
        str(out),
        *flags,
    )


# --------------------------------------------------------------------------- Redis


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return {name: calls for name, calls in delta.items() if calls}


# --------------------------------------------------------------------------- database


# The machine server's settings, so that database CPU compares with production's.
PG_SETTINGS = (
    "shared_buffers=128MB",
    "autovacuum=off",
    "fsync=on",
    "synchronous_commit=on",
    "max_connections=100",
    "TimeZone=UTC",
)
PG_STAT_STATEMENTS = ("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=top")


def postgres_server(procs: Processes, stat_statements: bool = False) -> PostgresServer:
    """A PostgreSQL server of the benchmark's own (initdb in a temporary directory, a free
    port, ``PG_SETTINGS``), started. Its whole CPU is the postmaster's process tree,
    backends that came and went included (the postmaster reaps them), and nobody else's
    work is in it."""
    server = PostgresServer(
        procs, settings=PG_SETTINGS + (PG_STAT_STATEMENTS if stat_statements else ())
    )
    server.init()
    server.start()
    return server


class Database:
    """A database of the benchmark's own: PostgreSQL (created, migrated, dropped) or SQLite.

    ``pg="own"`` (the default) starts a PostgreSQL server of the benchmark's own, so its CPU
    is measured whole; ``pg="shared"`` creates a database on the machine's server
    (BENCH_POSTGRES_URL), where only the backends that live through a measurement count.
    """

    def __init__(
        self, kind: str, procs: Processes, pg: str = "own", stat_statements: bool = False
    ) -> None:
        import sqlalchemy as sa

        self.kind = kind
        self._tmp: Path | None = None
        self.server: PostgresServer | None = None
        if kind == "postgres":
            self.server = postgres_server(procs, stat_statements) if pg == "own" else None
            admin_url = self.server.url if self.server else POSTGRES_ADMIN_URL
            self._admin_url = admin_url
            self.name = f"issueflow_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            base = sa.engine.make_url(admin_url)
            self.url = base.set(database=self.name).render_as_string(hide_password=False)
        elif kind == "sqlite":
            self._tmp = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
            self.name = str(self._tmp / "bench.db")
            self.url = f"sqlite:///{self.name}"
        else:
            raise ValueError(f"unknown database {kind!r}")
        result = subprocess.run(
            [str(VENV_BIN / "alembic"), "upgrade", "head"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": self.url, "PYTHONPATH": PYTHONPATH},
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"alembic upgrade head failed:\n{result.stderr[-3000:]}")
        # The benchmark's own connection (for polling): excluded from the backends' CPU.
        from app.db import make_engine

        # No pre-ping and no transactions: the benchmark's own reads add no BEGIN, SELECT 1
        # or ROLLBACK to what pg_stat_statements counts.
        self.engine = make_engine(self.url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
        self.stat_statements = False
        if self.server is not None and stat_statements:
            with self.engine.connect() as conn:
                conn.execute(sa.text("CREATE EXTENSION pg_stat_statements"))
            self.stat_statements = True

    def statement_counts(self) -> dict[str, int]:
        """Calls per statement in this database since the server started (pg_stat_statements:
        exact, and unlike a proxy it adds no latency), without the benchmark's own reads."""
        import sqlalchemy as sa
        from sqlcount import normalise

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d "
                    "ON d.oid = s.dbid WHERE d.datname = current_database()"
                )
            ).all()
        counts: dict[str, int] = {}
        for query, calls in rows:
            if any(mark in query for mark in ("/* bench */", "pg_stat", "TRUNCATE")):
                continue  # the benchmark's own
            key = normalise(query)
            counts[key] = counts.get(key, 0) + int(calls)
        return counts

    def address(self) -> tuple[str, int]:
        """host and port of the PostgreSQL server."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        return url.host or "127.0.0.1", url.port or 5432

    def meter_args(self) -> dict[str, Any]:
        """How a CpuMeter reads this database's CPU: the own server's whole process group,
        else the backends connected to our database."""
        if self.server is not None:
            return {"trees": {"postgres": self.server.pid}}
        if self.kind == "postgres":
            return {"pid_sets": {"postgres": self.backend_pids}}
        return {}

    def backend_pids(self) -> list[int]:
        """PIDs of the PostgreSQL backends connected to this database, but ours."""
        if self.kind != "postgres":
            return []
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                )
                .scalars()
                .all()
            )
        return [int(pid) for pid in rows]

    def sessions(self) -> int | None:
        """Connections ever opened to this database (pg_stat_database.sessions, PG 14+):
        its growth shows connection churn, whose backends' CPU /proc cannot follow."""
        if self.kind != "postgres":
            return None
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            value = conn.execute(
                sa.text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
        return int(value or 0)

    def truncate(self) -> None:
        import sqlalchemy as sa

        from app.models import Base

        # Every table of the model (webhook deliveries too), children before parents.
        tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
        with self.engine.begin() as conn:
            if self.kind == "postgres":
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
            else:
                for table in tables:
                    conn.execute(sa.text(f"DELETE FROM {table}"))

    def drop(self) -> None:
        self.engine.dispose()
        if self.server is not None:
            self.server.remove()
        elif self.kind == "postgres":
            import sqlalchemy as sa

            admin = sa.create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": self.name},
                )
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}"'))
            admin.dispose()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


# --------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str], header: bool = False) -> str:
        out = []
        for i, value in enumerate(values):
            left = header or i == 0 or not _numeric(value)
            out.append(value.ljust(widths[i]) if left else value.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers, header=True), sep, *(line(r) for r in cells)])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.") and text != "-"


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
