"""``app.db.transaction``: a transaction on an autocommit PostgreSQL pool whose BEGIN goes
out with its first statement (persist's: two round trips, not four).

What they prove: it is a real transaction (nothing is seen, or kept, before its COMMIT; a
client gone before the COMMIT commits nothing), its commit is durable on a pool that is
not, an error rolls it back, and its connection always goes back to the pool outside any
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc

from app.db import make_autocommit_engine, make_engine, transaction

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS tx_probe (n int)")
        connection.exec_driver_sql("TRUNCATE tx_probe")
    yield engine
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE tx_probe")
    engine.dispose()


@pytest.fixture
def single(engine: Engine, postgres_url: str) -> Iterator[Engine]:
    """The workers' pool: autocommit, commits not waiting for the disk."""
    single = make_autocommit_engine(postgres_url, engine, durable=False)
    yield single
    single.dispose()


def probe(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return [row[0] for row in connection.exec_driver_sql("SELECT n FROM tx_probe ORDER BY n")]


def outside_any_transaction(connection: Connection) -> bool:
    """In autocommit each statement is a transaction of its own: it began with it."""
    return bool(connection.exec_driver_sql("SELECT now() = statement_timestamp()").scalar())


def test_its_statements_are_one_transaction_seen_only_once_committed(
    engine: Engine, single: Engine
) -> None:
    sent: list[str] = []
    event.listen(single, "after_cursor_execute", lambda *args: sent.append(args[2]))
    with transaction(single) as connection:
        connection.exec_driver_sql("INSERT INTO tx_probe VALUES (1)")
        assert probe(engine) == []  # not committed yet
        xact = "SELECT pg_current_xact_id_if_assigned()::text"
        first = connection.exec_driver_sql(xact).scalar()
        second = connection.exec_driver_sql(xact).scalar()
        assert first is not None
        assert first == second
        # The pool commits without waiting for the disk; this transaction does wait.
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert probe(engine) == [1]
    assert sent[0].startswith("BEGIN;")
    assert sent[0].endswith("INSERT INTO tx_probe VALUES (1)")
    assert sent[-1] == "COMMIT"
    assert sum(statement.startswith("BEGIN") for statement in sent) == 1
    with single.connect() as connection:  # the pool's one connection, as it was before
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        assert connection.exec_driver_sql("SELECT 2").scalar() == 2
        assert probe(engine) == [1]  # a statement outside the block: no BEGIN with it


def test_one_statement_costs_two_round_trips(single: Engine) -> None:
    sent: list[str] = []
    event.listen(single, "after_cursor_execute", lambda *args: sent.append(args[2]))
    with transaction(single) as connection:
        connection.exec_driver_sql("INSERT INTO tx_probe VALUES (1)")
    assert len(sent) == 2


def run_in_transaction(engine: Engine, *statements: str, fail: bool = False) -> None:
    with transaction(engine) as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
        if fail:
            raise RuntimeError("the block failed")


def test_an_error_rolls_it_back_and_the_connection_goes_back_idle(
    engine: Engine, single: Engine
) -> None:
    with pytest.raises(RuntimeError):
        run_in_transaction(single, "INSERT INTO tx_probe VALUES (1)", fail=True)
    with pytest.raises(sa_exc.DataError):  # the first statement fails
        run_in_transaction(single, "INSERT INTO tx_probe VALUES (2 / 0)")
    with pytest.raises(sa_exc.DataError):
        run_in_transaction(
            single, "INSERT INTO tx_probe VALUES (3)", "INSERT INTO tx_probe VALUES (3 / 0)"
        )
    assert probe(engine) == []
    with single.connect() as connection:
        assert outside_any_transaction(connection)
    run_in_transaction(single, "INSERT INTO tx_probe VALUES (4)")  # the same connection
    assert probe(engine) == [4]


def end_own_session_mid_transaction(engine: Engine, single: Engine) -> None:
    """A block whose server session ends (as a killed worker's) before its COMMIT."""
    with transaction(single) as connection:
        connection.exec_driver_sql("INSERT INTO tx_probe VALUES (1)")
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as other:
            state = other.exec_driver_sql(
                f"SELECT state FROM pg_stat_activity WHERE pid = {pid}"
            ).scalar()
            assert state == "idle in transaction"  # the BEGIN went out, the COMMIT did not
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")


def test_a_client_gone_before_its_commit_commits_nothing(engine: Engine, single: Engine) -> None:
    with pytest.raises(sa_exc.OperationalError):
        end_own_session_mid_transaction(engine, single)
    assert probe(engine) == []
    run_in_transaction(single, "INSERT INTO tx_probe VALUES (2)")  # a new connection
    assert probe(engine) == [2]


def test_an_engine_that_is_not_autocommit_uses_its_own_transactions(engine: Engine) -> None:
    with pytest.raises(RuntimeError):
        run_in_transaction(engine, "INSERT INTO tx_probe VALUES (1)", fail=True)
    run_in_transaction(engine, "INSERT INTO tx_probe VALUES (2)")
    assert probe(engine) == [2]
