"""OpenAIProvider against a real HTTP server speaking the Chat Completions API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from pipelines.providers.base import PermanentError, TransientError
from pipelines.providers.openai import OpenAIProvider
from tests.chat_server import JsonHandler, completion

API_KEY = "sk-integration-secret-key"
TAXONOMY = ["documentation", "performance", "ui"]
TIMEOUT = 0.5


@dataclass
class Behaviour:
    """What the server does; the test flips ``mode`` and reads ``requests``."""

    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ChatServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: nothing outlives a test
    behaviour: Behaviour

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client may hang up first (the slow mode); that is expected, not a failure.
        pass


class ChatHandler(JsonHandler):
    server: ChatServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        behaviour = self.server.behaviour
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with behaviour.lock:
            behaviour.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
        mode = behaviour.mode
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
        elif mode == "slow":
            behaviour.release.wait(TIMEOUT * 6)
            self._send(200, completion('{"summary": "too late"}'))
        elif mode == "429":
            self._send(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "7"})
        elif mode == "500":
            self._send(500, {"error": {"message": "The server had an error"}})
        elif mode == "garbage":
            self._send(200, completion("<<< definitely not json >>>"))
        else:
            system = body["messages"][0]["content"]
            content = (
                {"tags": ["Bug", "ui", "pwned"], "why": "extra"}
                if '"tags"' in system
                else {"summary": "The save button does nothing."}
            )
            self._send(200, completion(json.dumps(content)))


@pytest.fixture
def server() -> Iterator[ChatServer]:
    httpd = ChatServer(("127.0.0.1", 0), ChatHandler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.behaviour.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def provider(server: ChatServer) -> Iterator[OpenAIProvider]:
    host, port = server.server_address[:2]
    with OpenAIProvider(
        base_url=f"http://{host!s}:{port}/v1",
        api_key=API_KEY,
        model="test-model",
        timeout=TIMEOUT,
        taxonomy=TAXONOMY,
    ) as instance:
        yield instance


def test_ok(server: ChatServer, provider: OpenAIProvider) -> None:
    assert provider.summarise("Save broken", "Nothing happens") == "The save button does nothing."
    assert provider.tag("Save broken", "Nothing happens", "x") == ["bug", "ui"]
    requests = server.behaviour.requests
    assert len(requests) == 2
    assert all(r["path"] == "/v1/chat/completions" for r in requests)
    assert all(r["auth"] == f"Bearer {API_KEY}" for r in requests)
    assert all(r["body"]["model"] == "test-model" for r in requests)
    assert all(r["body"]["response_format"] == {"type": "json_object"} for r in requests)


def test_slow_server_is_transient(server: ChatServer, provider: OpenAIProvider) -> None:
    server.behaviour.mode = "slow"
    with pytest.raises(TransientError, match="ReadTimeout") as caught:
        provider.summarise("t", "b")
    assert len(server.behaviour.requests) == 1
    assert API_KEY not in str(caught.value)


def test_429_carries_retry_after(server: ChatServer, provider: OpenAIProvider) -> None:
    server.behaviour.mode = "429"
    with pytest.raises(TransientError, match="HTTP 429") as caught:
        provider.tag("t", "b", "s")
    assert caught.value.retry_after == 7.0
    assert "Rate limit reached" in str(caught.value)
    assert len(server.behaviour.requests) == 1


def test_500_is_transient(server: ChatServer, provider: OpenAIProvider) -> None:
    server.behaviour.mode = "500"
    with pytest.raises(TransientError, match="HTTP 500") as caught:
        provider.summarise("t", "b")
    assert caught.value.retry_after is None
    assert len(server.behaviour.requests) == 1


def test_garbage_is_permanent_after_exactly_two_calls(
    server: ChatServer, provider: OpenAIProvider
) -> None:
    server.behaviour.mode = "garbage"
    with pytest.raises(PermanentError, match="unusable output twice"):
        provider.summarise("t", "b")
    requests = server.behaviour.requests
    assert len(requests) == 2
    assert requests[1]["body"]["messages"][-2] == {
        "role": "assistant",
        "content": "<<< definitely not json >>>",
    }


def test_wrong_path_is_permanent(server: ChatServer) -> None:
    host, port = server.server_address[:2]
    with (
        OpenAIProvider(
            base_url=f"http://{host!s}:{port}/wrong",
            api_key=API_KEY,
            model="m",
            timeout=TIMEOUT,
            taxonomy=TAXONOMY,
        ) as misconfigured,
        pytest.raises(PermanentError, match="HTTP 404"),
    ):
        misconfigured.summarise("t", "b")


def test_nothing_listening_is_transient(server: ChatServer) -> None:
    host, port = server.server_address[:2]
    server.shutdown()
    server.server_close()
    with (
        OpenAIProvider(
            base_url=f"http://{host!s}:{port}/v1",
            api_key=None,
            model="m",
            timeout=TIMEOUT,
            taxonomy=TAXONOMY,
        ) as orphan,
        pytest.raises(TransientError, match="ConnectError"),
    ):
        orphan.summarise("t", "b")
