"""``pipelines.prepared``: the stages' hot statements prepared once per connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.db import make_engine
from pipelines import prepared

SQL = "SELECT '100%%' || %(word)s || %(number)s::int, %(word)s"


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def statements(connection: object) -> list[str]:
    return [
        row[0]
        for row in connection.exec_driver_sql(  # type: ignore[attr-defined]
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'issueflow_%%'"
        )
    ]


def test_a_statement_is_prepared_once_per_connection_and_gives_the_same_rows(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        plain = connection.exec_driver_sql(SQL, {"word": "a'b", "number": 7}).one()
        first = prepared.execute(connection, SQL, {"word": "a'b", "number": 7}).one()
        again = prepared.execute(connection, SQL, {"number": 8, "word": None}).one()
        assert tuple(first) == tuple(plain) == ("100%a'b7", "a'b")
        assert tuple(again) == (None, None)
        assert len(statements(connection)) == 1


def test_a_rolled_back_transaction_keeps_it_and_a_new_connection_prepares_again(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        transaction = connection.begin()
        prepared.execute(connection, SQL, {"word": "x", "number": 1})
        transaction.rollback()
        assert prepared.execute(connection, SQL, {"word": "y", "number": 2}).one()[0] == "100%y2"
    engine.dispose()  # the pool's connections replaced, as after a lost one
    with engine.connect() as connection:
        assert statements(connection) == []
        assert prepared.execute(connection, SQL, {"word": "z", "number": 3}).one()[0] == "100%z3"
        assert len(statements(connection)) == 1
