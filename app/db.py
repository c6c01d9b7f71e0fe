"""Engines and sessions: one synchronous session factory for the API and the workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.tracing import trace_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(
    url: str, *, durable: bool = True, settings: Sequence[str] = (), **kwargs: Any
) -> Engine:
    """An engine for ``url``; SQLite is set up for several processes writing at once.

    No pre-ping: it costs a round trip per checkout, and a connection that died with its
    server fails its first statement instead, which the API answers with 503 and a stage
    retries. ``durable=False`` (PostgreSQL) commits without waiting for the WAL flush: for
    progress marks that a database crash may lose without harm, never for results.
    ``settings``: more PostgreSQL settings for its sessions (``name=value``).
    """
    if make_url(url).get_backend_name() != "sqlite":
        options = [*([] if durable else ["synchronous_commit=off"]), *settings]
        if options:
            kwargs.setdefault("connect_args", {"options": " ".join(f"-c {o}" for o in options)})
        # Room for every thread FastAPI runs sync routes in (40): none waits for a
        # connection, none is opened and closed per request. Connections open lazily.
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, **kwargs)
        trace_engine(engine)
        return engine

    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock up front and waits busy_timeout for it. A
        # deferred transaction that reads and then writes fails at once with "database is
        # locked" when another process committed in between, whatever the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    trace_engine(engine)
    return engine


def make_autocommit_engine(
    url: str, engine: Engine, *, durable: bool = True, settings: Sequence[str] = ()
) -> Engine:
    """An engine for single statements, each its own transaction: one round trip each.

    On PostgreSQL a pool of its own in autocommit, so a read or a one-row mark is sent
    alone, without BEGIN and COMMIT (or ROLLBACK) around it; ``durable`` and ``settings``
    as in ``make_engine``. SQLite has no round trips to save: ``engine`` itself, whose
    ``begin()`` blocks stay transactions.
    """
    if make_url(url).get_backend_name() == "sqlite":
        return engine
    autocommit = make_engine(url, durable=durable, settings=settings, isolation_level="AUTOCOMMIT")
    event.listen(autocommit, "before_cursor_execute", _send_begin_along, retval=True)
    return autocommit


# ``transaction`` on an autocommit PostgreSQL engine: the connection's next statement is
# sent after this, in the same query string. SET LOCAL: the commit waits for the WAL flush
# whatever the pool's synchronous_commit (``durable``).
_PENDING_BEGIN = "issueflow_pending_begin"
_BEGIN = "BEGIN; SET LOCAL synchronous_commit TO on; "


def _send_begin_along(
    connection: Connection,
    _cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    _executemany: bool,
) -> tuple[str, Any]:
    begin = connection.info.pop(_PENDING_BEGIN, None)
    if begin is None:
        return statement, parameters
    return begin + statement, parameters


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()``, durable, in two round trips fewer on an autocommit PostgreSQL
    engine (``make_autocommit_engine``): the BEGIN travels in the query string of the
    block's first statement, the COMMIT goes alone when the block ends without an error
    (ROLLBACK otherwise). A block of one statement costs two round trips, not four.

    Still a transaction: a client that dies before it sends the COMMIT, even while its
    statement waits for a lock, commits nothing. Its commit waits for the WAL flush, as a
    result's must. Any other engine: ``engine.begin()``.
    """
    if not event.contains(engine, "before_cursor_execute", _send_begin_along):
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        info = connection.info
        info[_PENDING_BEGIN] = _BEGIN
        try:
            yield connection
        except BaseException:
            # The BEGIN went out (the statement that carried it may have failed or broken
            # the connection).
            if info.pop(_PENDING_BEGIN, None) is None and not connection.invalidated:
                try:
                    connection.exec_driver_sql("ROLLBACK")
                except Exception:
                    connection.invalidate()  # never back to the pool inside a transaction
            raise
        else:
            if info.pop(_PENDING_BEGIN, None) is None:
                connection.exec_driver_sql("COMMIT")
        finally:
            info.pop(_PENDING_BEGIN, None)
            if not connection.invalidated and _in_transaction(connection):
                connection.invalidate()


def _in_transaction(connection: Connection) -> bool:
    """Whether the server session is inside a transaction block (libpq's own view)."""
    dbapi = connection.connection.dbapi_connection
    return dbapi is not None and bool(dbapi.info.transaction_status)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends, rolls back on error, and always closes."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
