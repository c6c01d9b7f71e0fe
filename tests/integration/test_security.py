"""Bad input, API keys, secrets and the webhook.

In process (on SQLite and PostgreSQL, like the ``client`` fixture) and against real
``uvicorn`` processes where only a real server shows the behaviour (header limits, the
stack depth at which JSON nesting breaks, what a process writes to its log).
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.celery_app import celery_config
from app.config import Settings
from app.main import create_app
from tests.conftest import flush_broker, migrate
from tests.support.processes import Processes, answers, free_port, processes, wait_until

JSON = {"content-type": "application/json"}
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(session_factory: sessionmaker[Session]) -> Iterator[ClientFactory]:
    """``make_client(api_keys="k1,k2", ...)``: the API with those settings on the test's DB."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            settings = Settings(database_url="sqlite://", enrich_provider="local", **overrides)
            app = create_app(settings, sweep_outbox=False)
            app.state.session_factory = session_factory
            app.state.autocommit_session_factory = session_factory  # the test's transaction
            return stack.enter_context(TestClient(app))

        yield make
    flush_broker()


def assert_json_4xx(response: httpx.Response, *allowed: int) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if allowed:
        assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()


def create(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/issues", json={"title": "Crash on save"}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --- bad input ------------------------------------------------------------------------

DEPTH = 10_000
DEEP_BODIES = {
    "arrays": "[" * DEPTH + "]" * DEPTH,
    "objects as title": '{"title": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
    "arrays as body": '{"title": "t", "body": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "unclosed": '{"title": ' + "[" * DEPTH,
    "100,000 levels": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("name", DEEP_BODIES)
def test_deeply_nested_json_is_a_4xx_json_error(client: TestClient, name: str) -> None:
    issue_id = create(client)["issue"]["id"]
    for method, url in [("POST", "/issues"), ("PATCH", f"/issues/{issue_id}")]:
        response = client.request(method, url, content=DEEP_BODIES[name], headers=JSON)
        assert_json_4xx(response, 400, 422)
    assert client.get(f"/issues/{issue_id}").json()["title"] == "Crash on save"


def test_nesting_just_below_the_parser_limit_is_a_4xx(client: TestClient) -> None:
    # Parsed, but its 422 echoes the input back: too deep to encode again was a 500.
    for depth in range(850, 1101, 10):
        for content in ('{"title": ' + "[" * depth + "]" * depth + "}", "[" * depth + "]" * depth):
            assert_json_4xx(client.post("/issues", content=content, headers=JSON), 400, 422)


@pytest.mark.parametrize(
    "content",
    [
        '{"title": NaN}',
        '{"title": Infinity}',
        '{"title": -Infinity}',
        '{"title": "t", "body": 1e999}',
        '{"title": "t", "extra": NaN}',
        '{"title": [NaN, {"x": -Infinity}]}',
    ],
)
def test_non_finite_numbers_are_422(client: TestClient, content: str) -> None:
    # json.loads takes them; echoing them back in the 422 was a 500 (not valid JSON).
    assert_json_4xx(client.post("/issues", content=content, headers=JSON), 422)
    issue_id = create(client)["issue"]["id"]
    response = client.patch(f"/issues/{issue_id}", content='{"status": NaN}', headers=JSON)
    assert_json_4xx(response, 422)


@pytest.mark.parametrize(
    "payload",
    [
        {"title": 1},
        {"title": True},
        {"title": None},
        {"title": {"a": "b"}},
        {"body": ["b"]},
        {"status": "OPEN"},
        {"status": 1},
        {"status": None},
        {"priority": "high"},
        [],
        "x",
        1,
        None,
        {},
    ],
)
def test_wrong_types_in_a_patch_are_422(client: TestClient, payload: object) -> None:
    issue_id = create(client)["issue"]["id"]
    response = client.patch(f"/issues/{issue_id}", content=json.dumps(payload), headers=JSON)
    if payload == {}:
        assert response.status_code == 200  # nothing to change is fine
        return
    assert_json_4xx(response, 422)


@pytest.mark.parametrize(
    "content",
    [
        b'{"title": "\xff\xfe"}',
        '{"title": "caf\u00e9"}'.encode("latin-1"),
        b'{"title": "\xc0\x80 overlong NUL"}',
        b'{"title": "ok", "body": "\x80"}',
    ],
)
def test_bodies_that_are_not_utf8_are_400_json(client: TestClient, content: bytes) -> None:
    assert_json_4xx(client.post("/issues", content=content, headers=JSON), 400)
    issue_id = create(client)["issue"]["id"]
    assert_json_4xx(client.patch(f"/issues/{issue_id}", content=content, headers=JSON), 400)


def test_a_utf8_encoded_surrogate_is_stored_as_a_replacement_character(
    client: TestClient,
) -> None:
    # json.loads decodes bytes with 'surrogatepass': ED A0 80 becomes a lone U+D800.
    response = client.post("/issues", content=b'{"title": "a\xed\xa0\x80b"}', headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["issue"]["title"] == "a\ufffdb"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        None,
    ],
)
def test_a_body_not_declared_json_is_4xx_and_creates_nothing(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/issues", content=b'{"title": "x"}', headers=headers)
    assert_json_4xx(response, 415, 422)
    assert client.get("/issues").json()["items"] == []


def test_oversized_bodies_are_413_on_every_write(client: TestClient) -> None:
    issue_id = create(client)["issue"]["id"]
    big = json.dumps({"title": "t", "body": "x" * (1024 * 1024)})

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    for method, url in [("POST", "/issues"), ("PATCH", f"/issues/{issue_id}")]:
        assert_json_4xx(client.request(method, url, content=big, headers=JSON), 413)
        assert_json_4xx(client.request(method, url, content=chunks(), headers=JSON), 413)
    assert client.get(f"/issues/{issue_id}").json()["body"] == ""
    # A declared size is refused before any route runs; enrich never reads a chunked body.
    assert_json_4xx(client.post(f"/issues/{issue_id}/enrich", content=big, headers=JSON), 413)


@pytest.mark.parametrize(
    "issue_id",
    [
        "0",
        "-1",
        "2147483648",
        "9223372036854775808",
        "1" * 400,
        "1.0",
        "1e3",
        "%201",
        "1%20",
        "1_0",
        "%2B1",
        "0x1",
        "abc",
        "%00",
        "%C2%A0",
    ],
)
def test_malformed_or_out_of_range_issue_ids_are_422(client: TestClient, issue_id: str) -> None:
    # Ids beyond the 32-bit column were a 500 (SQLite: OverflowError; PostgreSQL: DataError).
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/enrich")]:
        response = client.request(method, f"/issues/{issue_id}{suffix}", json={"status": "closed"})
        assert_json_4xx(response, 422)


def test_the_largest_id_is_merely_not_found(client: TestClient) -> None:
    assert_json_4xx(client.get(f"/issues/{2**31 - 1}"), 404)


@pytest.mark.parametrize(
    "url",
    [
        "/tasks/%00",
        "/tasks/a%00b",
        "/tasks/%ED%A0%80",
        "/issues?tag=%00",
        "/issues?tag=bug%00",
        "/issues?tag=%ED%A0%80",
        "/issues?tag=%F0%9F%90%9B",
    ],
)
def test_nul_and_bad_utf8_in_ids_and_filters_are_no_5xx(client: TestClient, url: str) -> None:
    # PostgreSQL refuses NUL even as a query parameter: this was a 500 there.
    response = client.get(url)
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert response.json()["items"] == []


def _cursor(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


FORGED_CURSORS = [
    ("/issues", {"id": 10**20}),
    ("/issues", {"id": -(10**20)}),
    ("/issues", {"id": 1.5}),
    ("/issues", [1, 2]),
    ("/tasks", {"created_at": "2024-01-01T00:00:00", "id": "x"}),
    ("/tasks", {"created_at": "9999-12-31T23:59:59-14:00", "id": "x"}),
    ("/tasks", {"created_at": "0001-01-01T00:00:00+14:00", "id": "x"}),
    ("/tasks", {"created_at": "2024-01-01T00:00:00+00:00", "id": "\x00"}),
    ("/tasks", {"created_at": "2024-01-01T00:00:00+00:00", "id": "\ud800"}),
    ("/tasks", {"created_at": "yesterday", "id": "x"}),
]


@pytest.mark.parametrize(
    "url",
    [f"{path}?cursor={_cursor(position)}" for path, position in FORGED_CURSORS]
    + ["/tasks?cursor=%00%00", "/issues?cursor=%ED%A0%80"],
)
def test_forged_cursors_are_400(client: TestClient, url: str) -> None:
    # A naive or out-of-range timestamp, a 65-bit id or NUL in a cursor were each a 500.
    assert_json_4xx(client.get(url), 400)


# --- a real server: header limits, parser depth -----------------------------------------


@pytest.fixture(scope="module", params=["auto", "h11"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``uvicorn app.main:app`` on a migrated SQLite file: its default HTTP implementation
    (httptools when installed, as with uvicorn[standard]) and h11."""
    log_dir = tmp_path_factory.mktemp(f"server-{request.param}")
    database_url = f"sqlite:///{log_dir / 'issueflow.db'}"
    migrate(database_url)
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        # No broker: issues wait in the outbox, which is all these tests need.
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    with processes(env, log_dir) as group:
        group.api(port, "--http", request.param, log_level=None)
        yield f"http://127.0.0.1:{port}"


def _raw_request(base: str, request: bytes) -> tuple[int | None, bool, bytes]:
    """Send raw bytes; the status (None if none came), whether the server closed the
    connection, and what came back."""
    host, port = base.removeprefix("http://").split(":")
    received = b""
    closed = True
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with suppress(OSError):  # the server may refuse and close before reading it all
            sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            closed = False
        except OSError:
            pass
    status = int(received[9:12]) if received.startswith(b"HTTP/1.1 ") else None
    return status, closed, received


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * (100 * 1024) + b"\r\n",
        b"Cookie: " + b"c=" + b"b" * (1024 * 1024) + b"\r\n",
        b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000)),
    ],
    ids=["one 100 KiB header", "one 1 MiB header", "1000 headers"],
)
def test_oversized_headers_are_refused_and_the_server_keeps_serving(
    server: str, headers: bytes
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: keep-alive\r\n\r\n"
    status, closed, received = _raw_request(server, request)
    # Refused (431 from the app, or 400 from h11 when the header arrives in pieces), and the
    # connection closed.
    assert status is None or 400 <= status < 500, received[:300]
    assert closed, received[:300]
    if status == 431:
        assert received.split(b"\r\n\r\n", 1)[1].startswith(b'{"detail":')
    assert answers(f"{server}/healthz", timeout=2)
    # Headers of ordinary size still work.
    response = httpx.get(f"{server}/issues", headers={"X-Fine": "a" * 8000}, timeout=5)
    assert response.status_code == 200


def test_deep_nesting_over_a_real_server_is_4xx(server: str) -> None:
    # The stack depth at which parsing and re-encoding fail differs from the test client's.
    with httpx.Client(base_url=server, headers=JSON, timeout=10) as http:
        for content in DEEP_BODIES.values():
            assert_json_4xx(http.post("/issues", content=content), 400, 422)
        for depth in range(900, 1050, 5):
            for content in (
                '{"title": ' + "[" * depth + "]" * depth + "}",
                '{"title": "t", "body": ' + '{"a": ' * depth + "1" + "}" * depth + "}",
            ):
                assert_json_4xx(http.post("/issues", content=content), 400, 422)
        assert http.get("/healthz").status_code == 200


def test_oversized_bodies_over_a_real_server_are_413(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"title": "big", "body": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    with httpx.Client(base_url=server, headers=JSON, timeout=10) as http:
        assert_json_4xx(http.post("/issues", content=b"x" * (2 * 1024 * 1024)), 413)
        assert_json_4xx(http.post("/issues", content=chunks()), 413)
        assert http.post("/issues", json={"title": "after"}).status_code == 201


# --- API keys -----------------------------------------------------------------------------

KEYS = "key-one,key-two"


def _writes(issue_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/issues", {"title": "t"}),
        ("PATCH", f"/issues/{issue_id}", {"status": "closed"}),
        ("POST", f"/issues/{issue_id}/enrich", None),
        ("DELETE", f"/issues/{issue_id}", None),
    ]


def _reads(created: dict[str, Any]) -> list[str]:
    return [
        "/issues",
        f"/issues/{created['issue']['id']}",
        "/tasks",
        f"/tasks/{created['task_id']}",
        "/tasks?state=FAILURE",
    ]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("which", [0, 1, 2, 3], ids=["POST", "PATCH", "enrich", "DELETE"])
def test_writes_need_one_of_the_keys(make_client: ClientFactory, which: int) -> None:
    client = make_client(api_keys=KEYS)
    issue_id = create(client, _bearer("key-one"))["issue"]["id"]
    method, url, payload = _writes(issue_id)[which]

    def send(headers: dict[str, str], url: str = url) -> httpx.Response:
        return client.request(method, url, json=payload, headers=headers)

    for headers in (
        {},
        {"Authorization": "Basic a2V5LW9uZTo="},
        {"Authorization": "Bearer"},
        {"Authorization": "key-one"},
    ):
        response = send(headers)
        assert_json_4xx(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    for wrong in ("key-three", "KEY-ONE", "key-one,key-two", "key", "key-one2"):
        assert_json_4xx(send(_bearer(wrong)), 403)
    # Nothing refused had an effect.
    assert len(client.get("/issues").json()["items"]) == 1
    assert client.get(f"/issues/{issue_id}").json()["status"] == "open"

    for headers in (_bearer("key-one"), _bearer("key-two"), {"Authorization": "bearer key-two"}):
        if method == "DELETE":  # a fresh issue for each
            url = f"/issues/{create(client, _bearer('key-one'))['issue']['id']}"
        response = send(headers, url)
        assert 200 <= response.status_code < 300, response.text


def test_an_unauthenticated_write_learns_nothing_about_its_body(
    make_client: ClientFactory,
) -> None:
    client = make_client(api_keys=KEYS)
    invalid = {"title": "", "surprise": 1}
    assert_json_4xx(client.post("/issues", json=invalid), 401)
    assert_json_4xx(client.post("/issues", json=invalid, headers=_bearer("nope")), 403)
    assert_json_4xx(client.post("/issues", json=invalid, headers=_bearer("key-two")), 422)


def test_reads_stay_open_unless_configured(make_client: ClientFactory) -> None:
    client = make_client(api_keys=KEYS)
    created = create(client, _bearer("key-one"))
    for url in _reads(created):
        assert client.get(url).status_code == 200, url


def test_reads_need_a_key_when_configured_but_health_checks_do_not(
    make_client: ClientFactory,
) -> None:
    client = make_client(api_keys=KEYS, api_read_requires_key=True)
    created = create(client, _bearer("key-two"))
    for url in _reads(created):
        response = client.get(url)
        assert_json_4xx(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert_json_4xx(client.get(url, headers=_bearer("wrong")), 403)
        assert client.get(url, headers=_bearer("key-one")).status_code == 200
        assert client.get(url, headers=_bearer("key-two")).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # no key asked; 503: no Redis


def test_without_keys_everything_is_open(make_client: ClientFactory) -> None:
    client = make_client()
    issue_id = create(client)["issue"]["id"]
    assert (
        client.patch(
            f"/issues/{issue_id}", json={"status": "closed"}, headers=_bearer("anything")
        ).status_code
        == 200
    )
    assert client.delete(f"/issues/{issue_id}").status_code == 204


# --- no secrets in logs or error responses ----------------------------------------------

SECRETS = {
    "api key": "key-SECRET-alpha",
    "second api key": "key-SECRET-beta",
    "offered key": "offered-SECRET-gamma",
    "openai key": "sk-SECRET-openai-delta",
    "database password": "db-SECRET-epsilon",
    "broker password": "broker-SECRET-zeta",
    "webhook password": "hook-SECRET-eta",
    "webhook token": "hook-SECRET-theta",
}


def _secret_env() -> dict[str, str]:
    closed_port = free_port()  # nothing listens: the database and the broker are down
    return {
        "API_KEYS": f"{SECRETS['api key']},{SECRETS['second api key']}",
        "OPENAI_API_KEY": SECRETS["openai key"],
        "DATABASE_URL": (
            f"postgresql+psycopg2://issueflow:{SECRETS['database password']}"
            f"@127.0.0.1:{closed_port}/issueflow"
        ),
        "CELERY_BROKER_URL": f"redis://:{SECRETS['broker password']}@127.0.0.1:{closed_port}/0",
        "CELERY_RESULT_BACKEND": (
            f"redis://:{SECRETS['broker password']}@127.0.0.1:{closed_port}/1"
        ),
        "NOTIFY_WEBHOOK_URL": (
            f"http://hook:{SECRETS['webhook password']}@127.0.0.1:"
            f"{closed_port}/hooks/{SECRETS['webhook token']}"
            f"?token={SECRETS['webhook token']}"
        ),
    }


def _failing_requests(http: httpx.Client | TestClient) -> list[httpx.Response]:
    """Requests that fail in every way we can think of; all their responses."""
    key = _bearer(SECRETS["api key"])
    issue = {"title": "t", "body": "b"}
    responses = [
        http.post("/issues", json=issue),  # 401
        http.post("/issues", json=issue, headers=_bearer(SECRETS["offered key"])),  # 403
        http.post("/issues", json={"title": ""}, headers=key),  # 422
        http.post("/issues", content=b"{nope", headers={**key, **JSON}),  # 422
        http.post("/issues", content=b'{"title": "\xff"}', headers={**key, **JSON}),  # 400
        http.post("/issues", json=issue, headers=key),  # 503: database down
        http.patch("/issues/1", json={"status": "closed"}, headers=key),  # 503
        http.get("/issues"),  # 503
        http.get("/tasks/abc"),  # 503
        http.get("/issues?cursor=garbage"),  # 400 or 503
        http.get("/readyz"),  # 503, database and broker down
    ]
    by_status = [response.status_code for response in responses]
    assert by_status[:5] == [401, 403, 422, 422, 400], by_status
    assert by_status[5:9] == [503, 503, 503, 503], by_status
    assert by_status[-1] == 503
    return responses


def _assert_no_secrets(text: str, where: str) -> None:
    leaked = [name for name, secret in SECRETS.items() if secret in text]
    assert not leaked, f"{where} shows the {', '.join(leaked)}"


def test_no_secrets_in_logs_or_responses_in_process(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _secret_env()
    settings = Settings(
        database_url=env["DATABASE_URL"],
        api_keys=env["API_KEYS"],
        openai_api_key=env["OPENAI_API_KEY"],
        celery_broker_url=env["CELERY_BROKER_URL"],
        celery_result_backend=env["CELERY_RESULT_BACKEND"],
        notify_webhook_url=env["NOTIFY_WEBHOOK_URL"],
    )
    # /readyz asks the process's Celery app; give it the broker URL with the password (Celery
    # prefers CELERY_BROKER_URL from the environment to its configuration).
    import app.api.health

    monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
    monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
    celery = Celery("issueflow-secrets", set_as_current=False)
    celery.conf.update(celery_config(settings))
    monkeypatch.setattr(app.api.health, "celery_app", celery)
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings, sweep_outbox=False)) as client:
        responses = _failing_requests(client)
    ready = responses[-1].json()
    assert ready["checks"]["database"].startswith("unreachable"), ready
    assert ready["checks"]["broker"].startswith("unreachable"), ready
    for response in responses:
        _assert_no_secrets(response.text, f"{response.request.url} answered with a body that")
        _assert_no_secrets(str(response.headers), "a response header")
    assert "database error" in caplog.text  # the failures were logged, without secrets
    _assert_no_secrets(caplog.text, "the log")


@pytest.mark.parametrize("log_format", ["log-config", "json"])
def test_no_secrets_in_a_real_api_process_output(tmp_path: Path, log_format: str) -> None:
    """With a logging configuration of the operator's own, and with LOG_FORMAT=json."""
    log_config = tmp_path / "logging.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
                "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain"}},
                "root": {"level": "DEBUG", "handlers": ["out"]},
            }
        )
    )
    env = {**_secret_env(), "OUTBOX_SWEEP_INTERVAL": "0.2"}
    logging_options = ["--log-config", str(log_config)]
    if log_format == "json":
        env.update(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
        logging_options = []
    port = free_port()
    with processes(env, tmp_path) as group:
        group.api(port, *logging_options, log_level=None)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=15) as http:
            responses = _failing_requests(http)
        time.sleep(0.5)  # a few outbox sweeps fail against the database meanwhile
        _stop(group)
    output = group.log("api")
    if log_format == "json":
        records = [json.loads(line) for line in output.splitlines() if line.strip()]
        assert all(isinstance(record, dict) for record in records)
        messages = {(r["level"], r["logger"], r["message"].split(":")[0]) for r in records}
        assert ("ERROR", "app.api.errors", "database error on POST /issues") in messages, output[
            -2000:
        ]
        assert any(r["logger"] == "uvicorn.access" for r in records), output[-2000:]
        assert any(r["logger"] == "pipelines.dispatch" for r in records), output[-2000:]
    else:
        assert "ERROR app.api.errors database error on POST /issues" in output, output[-2000:]
        assert "pipelines.dispatch" in output, output[-2000:]  # the sweeper failed as well
    _assert_no_secrets(output, "the API's output")
    for response in responses:
        _assert_no_secrets(response.text, f"{response.request.url} answered with a body that")


def _stop(group: Processes) -> None:
    for process in group.started:
        group.kill(process, signal.SIGTERM)


# --- the webhook --------------------------------------------------------------------------


class WebhookServer:
    """A real HTTP server that records each POST and answers 204, 500, or not at all."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.mode = "ok"
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.events.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                if outer.mode == "hang":
                    outer.release.wait(30)
                try:
                    self.send_response(500 if outer.mode == "fail" else 204)
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return (
            f"http://hook:{SECRETS['webhook password']}@127.0.0.1:{port}"
            f"/hooks/{SECRETS['webhook token']}?token={SECRETS['webhook token']}"
        )

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


def test_the_webhook_receives_issue_created(
    make_client: ClientFactory, webhook: WebhookServer
) -> None:
    client = make_client(notify_webhook_url=webhook.url)
    created = create(client)
    wait_until(lambda: webhook.events, timeout=10, what="the webhook call")
    [event] = webhook.events
    assert event["json"] == {"event": "issue.created", "issue": created["issue"]}
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["path"] == (f"/hooks/{SECRETS['webhook token']}?token={SECRETS['webhook token']}")
    # The URL's user and password become Basic auth.
    expected = base64.b64encode(f"hook:{SECRETS['webhook password']}".encode()).decode()
    assert event["headers"]["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize("mode", ["hang", "fail", "refuse"])
def test_a_broken_webhook_never_breaks_the_request(
    make_client: ClientFactory,
    webhook: WebhookServer,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    webhook.mode = mode
    url = webhook.url
    if mode == "refuse":
        url = url.replace(f":{webhook.server.server_address[1]}/", f":{free_port()}/")
    timeout = 0.5
    client = make_client(notify_webhook_url=url, notify_timeout=timeout)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    response = client.post("/issues", json={"title": "Webhook down"})
    elapsed = time.monotonic() - started  # the test client waits for background tasks too
    assert response.status_code == 201, response.text
    issue_id = response.json()["issue"]["id"]
    assert client.get(f"/issues/{issue_id}").status_code == 200
    assert elapsed < timeout + 5
    warnings = [
        record
        for record in caplog.records
        if record.name == "app.notify" and record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, caplog.text
    message = warnings[0].getMessage()
    assert f"issue {issue_id}" in message
    assert {"hang": "Timeout", "fail": "answered 500", "refuse": "ConnectError"}[mode] in message
    _assert_no_secrets(caplog.text, "the log")


def test_webhook_url_secrets_stay_out_of_the_log_when_it_works(
    make_client: ClientFactory, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs each request's URL at INFO
    create(make_client(notify_webhook_url=webhook.url))
    wait_until(lambda: webhook.events, timeout=10, what="the webhook call")
    assert "HTTP Request: POST" in caplog.text
    _assert_no_secrets(caplog.text, "the log")
