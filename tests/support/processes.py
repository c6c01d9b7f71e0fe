"""Starting processes of one's own (the API, workers, servers) and stopping exactly those.

Every process leads a process group of its own (a worker's pool children are in it), logs to
``<log_dir>/<name>.log`` and is signalled by PID, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1", timeout: float = 1) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
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
    """Poll ``check`` until it returns something truthy, and return that; fail with ``what``
    after ``timeout`` seconds, or at once (with ``log``'s tail) when ``process`` exits."""
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


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (a prefork worker's pool processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(OSError):
            children += [int(child) for child in task.read_text().split()]
    return sorted(set(children))


class Processes:
    """The processes one test or benchmark started; ``stop_all`` ends them, and only them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` as ``name``: its output (stderr only, if ``stdout`` is given) goes
        to ``name``'s log."""
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env={**self.env, **(env or {})},
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=subprocess.STDOUT if stdout is None else log,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def ready(
        self,
        name: str,
        process: subprocess.Popen[bytes] | None,
        check: Callable[[], object],
        *,
        what: str,
        timeout: float = 30,
    ) -> None:
        """Wait until ``check`` passes; fail with the tail of ``name``'s log if ``process``
        exits first."""
        wait_until(
            check, timeout=timeout, what=what, process=process, log=self.log_dir / f"{name}.log"
        )

    def api(
        self, port: int, *extra: str, name: str = "api", log_level: str | None = "warning"
    ) -> subprocess.Popen[bytes]:
        """The API (uvicorn app.main:app, ``extra`` options) on ``port``, once /healthz
        answers; ``log_level=None`` leaves uvicorn's own (or a ``--log-config``'s)."""
        levels = ("--log-level", log_level) if log_level else ()
        host = ("--host", "127.0.0.1", "--port", str(port))
        process = self.start(name, str(BIN / "uvicorn"), "app.main:app", *host, *levels, *extra)
        health = f"http://127.0.0.1:{port}/healthz"
        self.ready(
            name, process, lambda: answers(health, timeout=2), what=f"the API on port {port}"
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

    # -- logs -------------------------------------------------------------------------------

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return self.log(name)[-chars:]

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
        self.ready(
            name,
            process,
            lambda: text in self.log(name)[since:],
            what=f"{text!r} in {name}.log",
            timeout=timeout,
        )

    # -- signals ----------------------------------------------------------------------------

    def stop(
        self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
    ) -> None:
        """Signal the process (SIGKILL: its whole group, a worker and its pool) and wait;
        SIGKILL the group if it outlives ``timeout``, and whatever is left of it after."""
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, sig) if sig == signal.SIGKILL else process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # pool children left behind, if any

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """``stop`` with SIGKILL by default: a crash."""
        self.stop(process, sig)

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
