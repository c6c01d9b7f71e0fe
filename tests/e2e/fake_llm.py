"""A small, real OpenAI-compatible HTTP server whose behaviour a test switches at will.

Worker PROCESSES reach it with ``ENRICH_PROVIDER=openai`` and ``OPENAI_BASE_URL=fake.url``.
It speaks ``POST /chat/completions`` (as ``pipelines.providers.openai`` sends it) and answers
``{"summary": ...}`` to a summarise prompt and ``{"tags": [...]}`` to a tag prompt.

Modes, per operation (``summarise`` / ``tag``) and optionally per issue title:

* ``ok``     200 with a valid completion
* ``503``    503, optionally with ``Retry-After``
* ``429``    429 with ``Retry-After`` (``retry_after`` seconds, default 1)
* ``401``    401 (a permanent error)
* ``hang``   wait until :meth:`FakeLLM.release` (or ``hang_max`` seconds), then answer ``ok``

and ``delay`` seconds before any answer (a slow model).

Every call is recorded (monotonic and wall timestamps, the operation, the issue title, the
answer given) so a test can count calls per issue or per time window.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.chat_server import JsonHandler, completion

SUMMARY = "The reporter says the save button does nothing."
TAGS = ["bug", "ui"]
_ISSUE = re.compile(r"BEGIN UNTRUSTED ISSUE \w+\n(.*)\nEND UNTRUSTED ISSUE", re.DOTALL)


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the request arrived
    wall: float  # time.time() when the request arrived
    op: str  # "summarise" or "tag"
    title: str
    status: int  # what the server answered (0 while a hang is still pending)


@dataclass
class Rule:
    op: str | None  # None: both operations
    title: str | None  # None: every issue; else the exact issue title
    mode: str
    times: int | None = None  # answer like this this many times, then fall through
    used: int = 0
    retry_after: float | None = None
    delay: float = 0.0


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    hang_max: float = 60.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must never keep the test process alive
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed worker hangs up while a handler still waits: expected here.
        pass


class _Handler(JsonHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        arrived, wall = time.monotonic(), time.time()
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length))
            system = body["messages"][0]["content"]
            user = body["messages"][1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            self._send(400, {"error": {"message": "not a chat completion request"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        op = "tag" if '"tags"' in system else "summarise"
        match = _ISSUE.search(user)
        title = json.loads(match.group(1)).get("title", "") if match else ""
        state = self.server.state
        with state.lock:
            rule = _pick(state.rules, op, title)
            mode = rule.mode if rule else "ok"
            retry_after = rule.retry_after if rule else None
            delay = rule.delay if rule else 0.0
            index = len(state.calls)
            state.calls.append(Call(arrived, wall, op, title, 0))
        if delay:
            time.sleep(delay)
        status = self._answer(op, mode, retry_after)
        with state.lock:
            state.calls[index] = Call(arrived, wall, op, title, status)

    def _answer(self, op: str, mode: str, retry_after: float | None) -> int:
        if mode == "hang":
            self.server.state.released.wait(self.server.state.hang_max)
            mode = "ok"
        if mode == "503":
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return self._send(503, {"error": {"message": "The server is overloaded"}}, headers)
        if mode == "429":
            wait = 1.0 if retry_after is None else retry_after
            return self._send(
                429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": f"{wait:g}"}
            )
        if mode == "401":
            return self._send(401, {"error": {"message": "Incorrect API key provided"}})
        if mode != "ok":
            raise ValueError(f"unknown fake LLM mode {mode!r}")
        content = {"tags": TAGS} if op == "tag" else {"summary": SUMMARY}
        return self._send(200, completion(json.dumps(content)))


def _pick(rules: list[Rule], op: str, title: str) -> Rule | None:
    """The newest rule that matches and is not used up; counts the use."""
    for rule in reversed(rules):
        if rule.op not in (None, op) or rule.title not in (None, title):
            continue
        if rule.times is not None and rule.used >= rule.times:
            continue
        rule.used += 1
        return rule
    return None


class FakeLLM:
    """The server and the knobs a test turns; see the module docstring."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._state = server.state
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"

    def env(self) -> dict[str, str]:
        """What a worker process needs to use this server."""
        return {
            "ENRICH_PROVIDER": "openai",
            "OPENAI_BASE_URL": self.url,
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_MODEL": "fake-model",
        }

    def set_mode(
        self,
        mode: str,
        *,
        op: str | None = None,
        title: str | None = None,
        times: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer ``op`` calls (both if None) for ``title`` (all if None) with ``mode``.

        With ``times`` the rule is used that many times, then older rules apply again.
        A newer rule wins over an older one; the default is ``ok``.
        """
        if mode == "hang":
            self._state.released.clear()
        with self._state.lock:
            self._state.rules.append(
                Rule(op, title, mode, times, retry_after=retry_after, delay=delay)
            )

    def release(self) -> None:
        """End every hang now (they answer ``ok``), and make later ``hang`` calls not wait."""
        self._state.released.set()

    def calls(self, *, op: str | None = None, title: str | None = None) -> list[Call]:
        with self._state.lock:
            return [c for c in self._state.calls if op in (None, c.op) and title in (None, c.title)]


@contextmanager
def fake_llm(hang_max: float = 60.0) -> Iterator[FakeLLM]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = _State(hang_max=hang_max)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
    )
    thread.start()
    try:
        yield FakeLLM(server)
    finally:
        server.state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
