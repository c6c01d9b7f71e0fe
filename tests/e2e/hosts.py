"""A stack whose workers run on simulated hosts (see ``netns.py``).

The test's own PostgreSQL cluster and redis-server run on the host and listen on
127.0.0.1 (for the API and the test) and on the bridge's address (for the workers); each
worker runs in the namespace of its host and reaches both only over its veth.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa

from tests.conftest import migrate
from tests.e2e.netns import Host, Network, require_netns
from tests.e2e.stack import BASE_ENV
from tests.support.processes import BIN, Processes, free_port
from tests.support.servers import PostgresServer, RedisServer
from tests.support.services import require_own_postgres, unique_prefix

_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): ", re.MULTILINE)


class HostsStack:
    def __init__(self, net: Network, group: Processes, cluster: PostgresServer) -> None:
        self.net = net
        self.group = group
        self.cluster = cluster
        self.redis_port = free_port()
        self.redis_server: RedisServer | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.base = ""
        self.engine = sa.create_engine(cluster.url, pool_pre_ping=True)
        self.http = httpx.Client(timeout=30)

    def urls(self, address: str) -> dict[str, str]:
        return {
            "DATABASE_URL": f"postgresql+psycopg2://postgres@{address}:{self.cluster.port}/postgres",
            "CELERY_BROKER_URL": f"redis://{address}:{self.redis_port}/0",
            "CELERY_RESULT_BACKEND": f"redis://{address}:{self.redis_port}/1",
        }

    def start_redis(self, *, appendonly: bool = False) -> None:
        self.redis_server = RedisServer(
            self.group,
            port=self.redis_port,
            workdir=self.group.log_dir,
            bind=("127.0.0.1", self.net.gateway),
            appendonly=appendonly,
        ).start()

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5)

    def api(self) -> None:
        port = free_port()
        self.group.api(port)
        self.base = f"http://127.0.0.1:{port}"

    def worker(self, name: str, host: Host, queue: str, *, wait: bool = True) -> None:
        """A ``celery worker`` for ``queue`` inside ``host``'s namespace, named ``name``."""
        args = host.command(
            str(BIN / "celery"),
            "-A",
            "app.celery_app",
            "worker",
            "-Q",
            queue,
            "-n",
            f"{name}@{host.name}",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        )
        since = self.group.log_size(name)
        self.workers[name] = process = self.group.start(
            name, *args, env=self.urls(self.net.gateway)
        )
        if wait:
            self.group.wait_for_log(name, " ready.", since=since, timeout=60, process=process)

    def states(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT state, count(*) FROM enrichment_runs GROUP BY state")
            ).all()
        return {str(state): int(count) for state, count in rows}

    def received_at(self, name: str, stage: str, task_id: str) -> list[datetime]:
        """When worker ``name`` logged receiving this task (its log's clock: UTC here)."""
        needle = f"Task enrichment.{stage}[{task_id}] received"
        found = []
        for line in self.group.log(name).splitlines():
            if needle in line:
                match = _LOG_TIME.match(line)
                assert match, line
                found.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
        return found

    def held(self, name: str, stage: str) -> dict[str, float]:
        """The ``stage`` messages worker ``name`` holds unacknowledged: task id -> the Unix
        time Redis handed it over (kombu's ``unacked_index`` score)."""
        import json

        with self.redis() as client, client.pipeline(transaction=True) as both:
            both.hgetall("unacked").zrange("unacked_index", 0, -1, withscores=True)
            unacked, index = both.execute()  # one snapshot of both (MULTI/EXEC)
        delivered = dict(index)
        log = self.group.log(name)
        held = {}
        for tag, raw in unacked.items():
            if tag not in delivered:  # being acknowledged between the two writes of kombu
                continue
            task_id = json.loads(raw)[0]["headers"]["id"]
            if f"Task enrichment.{stage}[{task_id}] received" in log:
                held[task_id] = float(delivered[tag])
        return held

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()


@contextmanager
def hosts_stack(
    tmp_path: Path, env: dict[str, str], hosts: list[str], *, appendonly: bool = False
) -> Iterator[HostsStack]:
    """A bridge with one namespace per name in ``hosts``, PostgreSQL and Redis of the test's
    own on the host, the API on 127.0.0.1. Every process, namespace and interface is
    removed at the end, also after a failure."""
    require_netns()
    require_own_postgres()
    net = Network()
    group = Processes(
        {**BASE_ENV, "REDIS_KEY_PREFIX": unique_prefix(), **env}, tmp_path
    )  # the API's URLs are set below, once the ports are known
    cluster: PostgresServer | None = None
    stack: HostsStack | None = None
    try:
        for name in hosts:
            net.add_host(name)
        cluster = PostgresServer(
            group, tmp_path, listen=("127.0.0.1", net.gateway), trust=(f"{net.subnet}.0/24",)
        )
        cluster.init()
        cluster.start()
        migrate(cluster.url)
        stack = HostsStack(net, group, cluster)
        group.env.update(stack.urls("127.0.0.1"))
        stack.start_redis(appendonly=appendonly)
        yield stack
    finally:
        started = time.monotonic()
        for process in group.started:  # workers and the API first, then the servers
            if process.poll() is None and cluster is not None and process is not cluster.process:
                group.kill(process)
        if stack is not None:
            stack.close()
        if cluster is not None:
            cluster.remove()
        group.stop_all()
        net.close()
        print(f"hosts stack removed in {time.monotonic() - started:.1f}s")
