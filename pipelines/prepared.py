"""The stages' hot statements as PostgreSQL prepared statements.

psycopg2 sends every statement as text, and PostgreSQL parses and plans it anew each time:
for the short primary-key statements a stage runs that is most of their server CPU (a
stage's read: about 155 µs of backend CPU as text, 50 µs prepared; summarise's read with
its fingerprint lookup 280 µs and 75 µs). ``execute`` prepares a statement once per
database connection (``PREPARE``, remembered in the connection's ``info``, which lives
as long as the DBAPI connection: a new connection prepares again) and then sends only
``EXECUTE name(params)``, the parameters quoted by psycopg2 as before.

A prepared statement belongs to the server session, whatever happens to the transaction
that prepared it, so a rolled-back transaction leaves it usable. A pooler that hands one
server session to several clients (PgBouncer in transaction mode) would not keep it: set
the database URL to PostgreSQL itself, as ``deploy/`` does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

_PARAM = re.compile(r"%\((\w+)\)s")
_INFO_KEY = "issueflow_prepared"


@lru_cache(maxsize=64)
def statement_forms(sql: str) -> tuple[str, str]:
    """``PREPARE`` and ``EXECUTE`` text for ``sql`` (psycopg2's ``%(name)s`` parameters)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PARAM.sub(number, sql)
    name = "issueflow_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:16]
    # Sent through psycopg2's formatting like the statement itself: a literal % stays %%.
    prepare = f"PREPARE {name} AS {body}"
    arguments = ", ".join(f"%({n})s" for n in names)
    return prepare, f"EXECUTE {name}({arguments})" if names else f"EXECUTE {name}"


def execute(connection: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """``connection.exec_driver_sql(sql, params)``, with ``sql`` prepared on this
    connection's first use of it (PostgreSQL). Returns its ``CursorResult``."""
    prepare, run = statement_forms(sql)
    prepared: set[str] = connection.info.setdefault(_INFO_KEY, set())
    if prepare not in prepared:
        connection.exec_driver_sql(prepare)
        prepared.add(prepare)
    return connection.exec_driver_sql(run, dict(params))
