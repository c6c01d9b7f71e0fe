"""One test's own stack: a redis-server, a database, the API and worker processes.

Everything here belongs to the test that built it: a redis-server on a free port (no
persistence, files in the test's tmp_path), a SQLite file in tmp_path or a PostgreSQL
database / cluster of its own, a RabbitMQ vhost of its own, and processes killed by PID.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.processes import Processes, free_port, wait_until
from tests.support.servers import RedisServer
from tests.support.services import unique_prefix

# The names the tests import from here; a cluster is a PostgreSQL server of the test's own.

QUEUES = ("summarise", "tag", "persist")
FINISHED = ("SUCCESS", "FAILURE", "REVOKED")

# Small policies so retries take fractions of a second; every time limit + 6 s stays below
# the visibility timeout (pipelines.policies validates that at import).
BASE_ENV = {
    "ENRICH_PROVIDER": "local",
    "OUTBOX_SWEEP_INTERVAL": "1",
    "CELERY_VISIBILITY_TIMEOUT": "60",
    **{f"{stage}_RETRY_BACKOFF": "0.2" for stage in ("SUMMARISE", "TAG", "PERSIST")},
    **{f"{stage}_RETRY_BACKOFF_MAX": "1" for stage in ("SUMMARISE", "TAG", "PERSIST")},
    **{f"{stage}_TIME_LIMIT": "20" for stage in ("SUMMARISE", "TAG", "PERSIST")},
}


class Stack:
    """Services and processes of one test; ``close()`` stops and removes all of them."""

    def __init__(
        self,
        *,
        tmp_path: Path,
        database_url: str,
        broker: str = "redis",
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.redis_port = free_port()
        self.redis_dir = tmp_path / "redis"
        self.redis_dir.mkdir(exist_ok=True)
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.database_url = database_url
        self.vhost: str | None = None
        self._cleanups: list[Any] = []
        self._before_stop: list[Any] = []
        if broker == "redis":
            self.broker_url = f"{self.redis_url}/0"
        elif broker == "amqp":
            self.vhost = rabbitmq_vhost()
            self._cleanups.append(lambda: delete_vhost(self.vhost or ""))
            self.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        else:
            raise ValueError(broker)
        self.broker = broker
        self.env = {
            **BASE_ENV,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": f"{self.redis_url}/1",
            "REDIS_KEY_PREFIX": unique_prefix(),
            **(env or {}),
        }
        self.group = Processes(self.env, tmp_path)
        self.redis_server = RedisServer(self.group, port=self.redis_port, workdir=self.redis_dir)
        self.api_process: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.http = httpx.Client(timeout=15)
        self.workers: list[subprocess.Popen[bytes]] = []

    # -- services ---------------------------------------------------------------------------

    def start_redis(self) -> None:
        self.redis_server.start()

    def stop_redis(self, sig: int = signal.SIGKILL) -> None:
        assert self.redis_server.process is not None, "the stack's redis-server is not running"
        self.redis_server.stop(sig)

    def redis(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, db=db, socket_timeout=5)

    def queue_length(self, queue: str) -> int:
        """Messages waiting in ``queue`` (LLEN on Redis; a passive declare on RabbitMQ)."""
        if self.broker == "redis":
            with self.redis() as client:
                return int(client.llen(queue))
        from kombu import Connection

        with Connection(self.broker_url, connect_timeout=5) as connection:
            return int(connection.default_channel.queue_declare(queue, passive=True).message_count)

    # -- processes --------------------------------------------------------------------------

    def api(self, name: str = "api") -> subprocess.Popen[bytes]:
        """An API process; the first one is the one ``self.base`` talks to."""
        port = free_port()
        process = self.group.api(port, name=name)
        if not self.base:
            self.api_process = process
            self.base = f"http://127.0.0.1:{port}"
        return process

    def worker(
        self,
        queue: str | None,
        name: str | None = None,
        *,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> subprocess.Popen[bytes]:
        process = self.group.worker(
            queue,
            "--concurrency",
            str(concurrency),
            name=name or f"worker-{queue or 'all'}",
            env=env,
            wait_ready=60 if wait else None,
        )
        self.workers.append(process)
        return process

    def stage_workers(self, *, env: dict[str, str] | None = None) -> dict[str, Any]:
        """One worker per queue, named after it; all started before any is waited for."""
        started = {q: self.worker(q, f"worker-{q}", env=env, wait=False) for q in QUEUES}
        for queue, process in started.items():
            self.group.wait_for_log(f"worker-{queue}", " ready.", timeout=60, process=process)
        return started

    def log(self, name: str) -> str:
        return self.group.log(name)

    def worker_logs(self) -> dict[str, str]:
        return {
            path.stem: path.read_text(errors="replace")
            for path in self.tmp_path.glob("worker-*.log")
        }

    def received(self, stage: str, task_id: str) -> int:
        """How often any worker logged receiving this stage task."""
        needle = f"Task enrichment.{stage}[{task_id}] received"
        return sum(text.count(needle) for text in self.worker_logs().values())

    # -- the API ----------------------------------------------------------------------------

    def create(self, title: str, body: str = "The save button does nothing.") -> dict[str, Any]:
        response = self.http.post(f"{self.base}/issues", json={"title": title, "body": body})
        assert response.status_code == 201, response.text
        return response.json()

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def issue(self, issue_id: int) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/issues/{issue_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_task(self, task_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        """Poll GET /tasks/<id> until its state is one of ``states``; fail on another end."""

        def check() -> dict[str, Any] | None:
            status = self.task(task_id)
            if status["state"] in states:
                return status
            assert status["state"] not in FINISHED, f"run ended otherwise: {status}"
            return None

        return wait_until(
            check,
            timeout=timeout,
            interval=0.1,  # type: ignore[return-value]
            what=f"task {task_id} to reach {states}",
            process=self.api_process,
            log=self.tmp_path / "api.log",
        )

    def runs_in(self, state: str) -> dict[str, dict[str, Any]]:
        """Every run that ended in ``state`` (GET /tasks?state=, all pages), by task id."""
        found: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"state": state, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get(f"{self.base}/tasks", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            found.update({item["task_id"]: item for item in page["items"]})
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def wait_all_succeeded(self, task_ids: Iterable[str], *, timeout: float) -> None:
        """Every run in ``task_ids`` reaches SUCCESS; fail at once if one fails for good."""
        wanted = set(task_ids)

        def check() -> bool:
            failed = wanted & set(self.runs_in("FAILURE")) | wanted & set(self.runs_in("REVOKED"))
            assert not failed, f"runs ended without success: {sorted(failed)}"
            return wanted <= set(self.runs_in("SUCCESS"))

        try:
            wait_until(
                check, timeout=timeout, interval=0.5, what=f"{len(wanted)} runs to reach SUCCESS"
            )
        except AssertionError:
            done = wanted & set(self.runs_in("SUCCESS"))
            print(
                f"{len(done)}/{len(wanted)} runs succeeded; queues:",
                {q: self._safe_queue_length(q) for q in QUEUES},
            )
            raise

    def _safe_queue_length(self, queue: str) -> object:
        try:
            return self.queue_length(queue)
        except Exception as exc:  # only for a failure message
            return repr(exc)

    # -- the end ----------------------------------------------------------------------------

    def add_cleanup(self, cleanup: Any) -> None:
        """Run after the processes are stopped (drop a database, delete a vhost)."""
        self._cleanups.append(cleanup)

    def before_stop(self, hook: Any) -> None:
        """Run before the processes are stopped (release a hanging fake LLM)."""
        self._before_stop.append(hook)

    def close(self) -> None:
        self.http.close()
        self.redis_server.client.close()
        for hook in self._before_stop:
            hook()
        try:
            # The test is over and its broker and database go away: no warm shutdown needed.
            for process in self.workers:
                if process.poll() is None:
                    self.group.kill(process, signal.SIGKILL)
            self.group.stop_all()
        finally:
            for cleanup in reversed(self._cleanups):
                cleanup()


# -- RabbitMQ: a vhost of the test's own ----------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    done = subprocess.run([binary, "--quiet", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}"


def rabbitmq_vhost() -> str:
    name = f"issueflow-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name


def delete_vhost(name: str) -> None:
    _rabbitmqctl("delete_vhost", name)


def rabbitmqctl_available() -> bool:
    return bool(shutil.which("rabbitmqctl") or Path("/usr/sbin/rabbitmqctl").exists())
