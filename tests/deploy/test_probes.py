"""The probes the deployment files use: ``python -m app.probes worker | http | migrated``,
and the heartbeat that real ``celery worker`` processes touch (``--include app.heartbeat``)
on the tests' Redis, with both pools the deployment runs (prefork and threads)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.probes import check_http, check_migrated, check_worker, main
from tests.conftest import BROKER_URL, ROOT, migrate
from tests.support.processes import free_port, processes, wait_until
from tests.support.servers import RedisServer
from tests.support.services import require_redis


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The probe as a container runs it: a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "app.probes", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- worker heartbeat file -----------------------------------------------------------------


def test_fresh_stale_and_missing_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert "no heartbeat file" in str(check_worker(path, 60))
    path.touch()
    touched = path.stat().st_mtime
    assert check_worker(path, 60, now=touched + 59) is None
    assert "61s old" in str(check_worker(path, 60, now=touched + 61))


def test_worker_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "heartbeat"
    assert main(["worker", "--file", str(path)]) == 1
    assert "unhealthy: no heartbeat file" in capsys.readouterr().err
    path.touch()
    assert main(["worker", "--file", str(path), "--max-age", "30"]) == 0
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 31))
    assert main(["worker", "--file", str(path), "--max-age", "30"]) == 1
    assert "old (more than 30s)" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_bad_max_age_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--max-age", bad])
    assert exit_info.value.code == 2
    assert "--max-age" in capsys.readouterr().err


# --- http ----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_probe(http_server: str) -> None:
    assert check_http(f"{http_server}/ok", timeout=5) is None
    assert check_http(f"{http_server}/readyz", timeout=5) == f"{http_server}/readyz answered 503"
    assert "does not answer" in str(check_http(f"http://127.0.0.1:{free_port()}/", timeout=5))
    assert "not an http(s) URL" in str(check_http("file:///etc/passwd", timeout=5))
    assert main(["http", f"{http_server}/ok"]) == 0
    assert main(["http", f"{http_server}/no"]) == 1


# --- migrated ------------------------------------------------------------------------------


def test_migrated_probe(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'issueflow.db'}"
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    assert check_migrated(url) == f"database at revision none, migrations at {head}"
    down = check_migrated(f"postgresql+psycopg2://x@127.0.0.1:{free_port()}/x")
    assert str(down).startswith("cannot read the schema revision: OperationalError")
    migrate(url)
    assert check_migrated(url) is None
    # The command an init container runs, on the same database.
    result = probe("migrated", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    result = probe("migrated", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode == 1
    assert "unhealthy: database at revision none" in result.stderr


# --- real workers and Flower ---------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(("queue", "pool"), [("summarise", "prefork"), ("persist", "threads")])
def test_a_real_worker_beats_while_it_consumes(tmp_path: Path, queue: str, pool: str) -> None:
    """Fresh while consuming; gone while the broker is unreachable and back after; gone once
    the worker stopped. The worker has a redis-server of its own, stopped mid-test."""
    heartbeat = tmp_path / "run" / "worker.heartbeat"
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {"CELERY_BROKER_URL": broker, "WORKER_HEARTBEAT_FILE": str(heartbeat)}
    log = tmp_path / f"worker-{queue}.log"

    def wait_for(check: Callable[[], bool], what: str) -> None:
        wait_until(check, timeout=60, what=what, process=worker, log=log)

    with processes(env, tmp_path) as group:
        redis = RedisServer(group, port=port, workdir=tmp_path).start()
        worker = group.worker(
            queue, "--include", "app.heartbeat", "--pool", pool, "--concurrency", "1"
        )
        wait_for(heartbeat.exists, "the heartbeat file")
        alive = probe("worker", env={"WORKER_HEARTBEAT_FILE": str(heartbeat)})
        assert alive.returncode == 0, alive.stderr

        redis.stop(signal.SIGKILL)
        wait_for(lambda: not heartbeat.exists(), "the heartbeat to stop with the broker down")
        assert probe("worker", env={"WORKER_HEARTBEAT_FILE": str(heartbeat)}).returncode == 1
        redis.start()
        wait_for(heartbeat.exists, "the heartbeat once the broker is back")
        assert probe("worker", env={"WORKER_HEARTBEAT_FILE": str(heartbeat)}).returncode == 0

        group.terminate(worker)
        assert worker.returncode == 0, group.log(f"worker-{queue}")
        assert "Warm shutdown" in group.log(f"worker-{queue}")
    assert not heartbeat.exists(), "a stopped worker leaves no heartbeat behind"
    dead = probe("worker", env={"WORKER_HEARTBEAT_FILE": str(heartbeat)})
    assert dead.returncode == 1
    assert "no heartbeat file" in dead.stderr


@pytest.mark.redis
@pytest.mark.e2e
def test_flower_healthcheck_answers_and_everything_else_needs_auth(tmp_path: Path) -> None:
    """What the Flower healthchecks of compose.yaml and flower.yaml rely on."""
    require_redis()
    port = free_port()
    env = {"CELERY_BROKER_URL": BROKER_URL, "FLOWER_BASIC_AUTH": "admin:s3cret"}
    with processes(env, tmp_path) as group:
        flower = group.start(
            "flower",
            str(Path(sys.executable).parent / "celery"),
            *("-A", "app.celery_app", "flower", "--address=127.0.0.1", f"--port={port}"),
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: check_http(f"{base}/healthcheck", timeout=2) is None,
            timeout=60,
            what="Flower's /healthcheck",
            process=flower,
            log=tmp_path / "flower.log",
        )
        assert probe("http", f"{base}/healthcheck").returncode == 0
        assert httpx.get(f"{base}/workers").status_code == 401
        assert httpx.get(f"{base}/workers", auth=("admin", "wrong")).status_code == 401
        assert httpx.get(f"{base}/workers", auth=("admin", "s3cret")).status_code == 200
