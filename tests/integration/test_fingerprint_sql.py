"""summarise's begin computes the fingerprint in PostgreSQL (``pipelines.cache.pg_fingerprint``):
it must be the digest ``fingerprint()`` computes in Python, for any text PostgreSQL stores,
or results stored before (and on SQLite) would never be found again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine

from app.db import make_engine
from pipelines.cache import fingerprint, fingerprint_prefix, pg_fingerprint
from pipelines.providers import NoopProvider

# Text PostgreSQL stores: no NUL, no lone surrogates (the API replaces both).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
SQL = f"SELECT {pg_fingerprint('%(title)s::text', '%(body)s::text')}"


class Taxonomy(NoopProvider):
    """Prompt version and taxonomy in the identity, quotes and non-ASCII included."""

    prompt_version = "v\u00e9 2"
    taxonomy = ("bug", 'say "hi"', "\u00fcber")


@pytest.fixture(scope="module")
def connection(postgres_url: str) -> Iterator[Connection]:
    engine: Engine = make_engine(postgres_url)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def in_sql(connection: Connection, provider: NoopProvider, title: str, body: str) -> str:
    digest: str = connection.exec_driver_sql(
        SQL, {"fingerprint_prefix": fingerprint_prefix(provider), "title": title, "body": body}
    ).scalar_one()
    return digest


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Crash on save", ""),
        ('quote " backslash \\ slash /', "tab\tnewline\ncr\rbell\x07 ff\x0c bs\x08 us\x1f del\x7f"),
        ("\u00e9\u4e2d\U0001f600 \u2028\u2029 \ufffd", "\ufeffBOM " * 50),
    ],
)
def test_the_sql_fingerprint_is_pythons(connection: Connection, title: str, body: str) -> None:
    for provider in (NoopProvider(), Taxonomy()):
        assert in_sql(connection, provider, title, body) == fingerprint(provider, title, body)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=TEXT, body=TEXT)
def test_the_sql_fingerprint_is_pythons_for_any_text(
    connection: Connection, title: str, body: str
) -> None:
    provider = Taxonomy()
    assert in_sql(connection, provider, title, body) == fingerprint(provider, title, body)
