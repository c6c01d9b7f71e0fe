"""A real webhook receiver for the tests: a threaded ``http.server`` on a free port that
records every POST (path, headers, raw body) and answers as the test scripts it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import wait_until


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers["X-Issueflow-Event"]

    @property
    def delivery(self) -> str:
        return self.headers["X-Issueflow-Delivery"]


@dataclass
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Receiver:
    """Answers each POST with the next ``Answer`` scripted for its event (``scripts``), else
    the next of ``script``, else ``default``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.scripts: dict[str, list[Answer]] = {}
        self.default = Answer()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = Received(self.path, dict(self.headers), body)
                with outer._lock:
                    outer.received.append(received)
                    own = outer.scripts.get(received.event)
                    if own:
                        answer = own.pop(0)
                    else:
                        answer = outer.script.pop(0) if outer.script else outer.default
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, event: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.event == event]

    def wait_for(self, event: str, count: int = 1, *, timeout: float = 20) -> list[Received]:
        """At least ``count`` requests of ``event``; they are returned."""
        wait_until(
            lambda: len(self.events(event)) >= count,
            timeout=timeout,
            what=f"{count} {event} webhook(s)",
        )
        return self.events(event)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
