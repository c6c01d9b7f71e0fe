"""Property-based tests of the whole HTTP API against its own OpenAPI schema (schemathesis).

In process, on the ASGI app, on a migrated SQLite file and on a PostgreSQL database of the
module's own (PostgreSQL refuses what SQLite takes, NUL for one); chains go to the tests'
Redis DB (no worker runs). Every response must be declared (status code, content type,
headers, body schema) and no input whatsoever may give a 5xx. Two deployments: open (no
API_KEYS) and locked (API_KEYS and API_READ_REQUIRES_KEY), where schemathesis also checks
that a missing or wrong key is refused.

Bounded and seeded, so CI runs the same cases every time in well under a minute.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.db import make_engine
from app.main import create_app
from tests.conftest import create_database, drop_database, flush_broker, migrate
from tests.support.services import require_redis

KEY = "schemathesis-key-1"
SEED = 20_240_601
CONFIG = f"""
seed = {SEED}

[auth.openapi.HTTPBearer]
bearer = "{KEY}"
"""


def _app(**settings: object) -> FastAPI:
    # The database is plugged in by the fixture below: the schema is loaded at import (lazy
    # loading with schemathesis.pytest.from_fixture fails on pytest 9: it sets Function._nodeid).
    return create_app(
        Settings(database_url="sqlite://", enrich_provider="noop", **settings),  # type: ignore[arg-type]
        sweep_outbox=False,
    )


open_app = _app()
locked_app = _app(api_keys=f"{KEY},second-key", api_read_requires_key=True)
open_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", open_app, config=schemathesis.Config.from_str(CONFIG)
)
locked_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", locked_app, config=schemathesis.Config.from_str(CONFIG)
)

BOUNDED = settings(
    # SCHEMATHESIS_MAX_EXAMPLES=500 for a deeper local run.
    max_examples=int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20")),
    deadline=5000,  # ms per example; generous, so a loaded CI machine does not flake
    derandomize=True,
    database=None,
    # Function-scoped fixtures are fine here: every example uses the same module database.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module", autouse=True, params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A migrated database of this module's own, shared by both apps."""
    require_redis()
    name = f"issueflow_schemathesis_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'issueflow.db'}"
    else:
        url = create_database(name)  # requires PostgreSQL
    migrate(url)
    engine = make_engine(url)
    for app in (open_app, locked_app):
        app.state.session_factory = sessionmaker(engine, expire_on_commit=False)
        app.state.autocommit_session_factory = app.state.session_factory
    yield
    engine.dispose()
    if request.param == "postgres":
        drop_database(name)
    flush_broker()


def _array_query_parameters(app: FastAPI) -> frozenset[str]:
    """Query parameters declared as arrays (repeated on the wire: ``?tag=a&tag=b``)."""
    names = set()
    for item in app.openapi()["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kinds = [schema, *schema.get("anyOf", [])]
                if parameter["in"] == "query" and any(k.get("type") == "array" for k in kinds):
                    names.add(parameter["name"])
    return frozenset(names)


ARRAY_QUERY = _array_query_parameters(open_app)


def _validate(case: schemathesis.Case) -> None:
    excluded = []
    if case.query and "cursor" in case.query:
        # A cursor is opaque: a schema-valid string the API did not make is a 400 by design.
        excluded.append(positive_data_acceptance)
    if case.query and any(isinstance(case.query.get(name), str) for name in ARRAY_QUERY):
        # A lone string for an array parameter is that array with one item on the wire
        # (``?tag=false`` is ["false"]), which the API rightly accepts; schemathesis counts
        # it as negative data (schemathesis#3056), when its generator happens to draw it.
        excluded.append(negative_data_rejection)
    case.call_and_validate(excluded_checks=excluded)


@open_schema.parametrize()
@BOUNDED
def test_open_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    _validate(case)


@locked_schema.parametrize()
@BOUNDED
def test_locked_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    _validate(case)


def test_schema_declares_the_errors_of_every_route() -> None:
    paths = open_app.openapi()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            declared = set(operation["responses"])
            expected = {"431"}  # headers too large: any request
            if path == "/readyz":
                expected.add("503")
            elif path != "/healthz":
                expected |= {"401", "403", "422", "503"}
            if method in ("post", "patch", "delete"):
                expected.add("413")
            if path in ("/issues", "/issues/{issue_id}") and method in ("post", "patch"):
                expected.add("400")  # a body that is not UTF-8
            if path in ("/issues", "/tasks") and method == "get":
                expected.add("400")  # a cursor this API did not make
            if "{issue_id}" in path or "{task_id}" in path:
                expected.add("404")
            assert expected <= declared, f"{method.upper()} {path} declares {sorted(declared)}"


def test_security_is_declared_where_keys_are_checked() -> None:
    open_paths = open_app.openapi()["paths"]
    locked_paths = locked_app.openapi()["paths"]
    assert all("security" not in op for item in open_paths.values() for op in item.values())
    for path, item in locked_paths.items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation, path
            else:
                assert operation["security"] == [{"HTTPBearer": []}], f"{method} {path}"
    reads_open = _app(api_keys=KEY).openapi()["paths"]
    assert "security" not in reads_open["/issues"]["get"]
    assert reads_open["/issues"]["post"]["security"] == [{"HTTPBearer": []}]


def test_405_lists_every_method_of_the_resource() -> None:
    with TestClient(open_app) as client:
        response = client.put("/issues/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PATCH, DELETE"
    assert response.json() == {"detail": "Method Not Allowed"}
