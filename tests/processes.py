"""Starting the API and workers as real processes, and stopping exactly those (by PID)."""

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
            args, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def api(self, port: int) -> subprocess.Popen[bytes]:
        process = self.start(
            "api", str(BIN / "uvicorn"), "app.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning",
        )
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30,
                   what=f"the API on port {port}", process=process, log=self.log_dir / "api.log")
        return process

    def worker(
        self,
        queue: str | None,
        *extra: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        name = name or f"worker-{queue or 'all'}"
        args = [str(BIN / "celery"), "-A", "app.celery_app", "worker", "-n", f"{name}@%h",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle", *extra]
        if queue:
            args += ["-Q", queue]
        return self.start(name, *args, env=env)

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

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)
            # A worker's pool children share its process group, which we created.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def processes(env: dict[str, str], log_dir: Path) -> Iterator[Processes]:
    group = Processes(env, log_dir)
    try:
        yield group
    finally:
        group.stop_all()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
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
