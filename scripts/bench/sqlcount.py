"""Counting what really goes over the wire to PostgreSQL: a small counting TCP proxy.

SQLAlchemy's ``before_cursor_execute`` event sees the statements the ORM runs, but not the
round trips the driver adds on its own: psycopg2 sends ``BEGIN`` before the first statement
of a transaction, and ``pool_pre_ping`` sends ``SELECT 1`` at every checkout without any
event. ``PgCountingProxy`` sits between the clients and the server and counts every
simple-protocol Query message (what psycopg2 sends; each is one round trip), by statement.

Diagnostics only: relaying in Python threads adds latency, so never time through it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections import Counter

from sqlalchemy.engine import make_url

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_LITERALS = re.compile(r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b")
_SPACES = re.compile(r"\s+")


def normalise(sql: str) -> str:
    """The statement's shape: literals (and pg_stat_statements' $n) replaced by ``?``,
    whitespace squeezed, case of BEGIN/COMMIT/ROLLBACK unified, shortened."""
    text = _SPACES.sub(" ", _LITERALS.sub("?", sql)).strip()
    if text.lower() in ("begin", "commit", "rollback"):
        text = text.upper()
    return text if len(text) <= 110 else text[:107] + "..."


class PgCountingProxy:
    """Listens on a free port of 127.0.0.1 and relays to ``upstream``, counting queries."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self.statements: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="pgproxy").start()

    def url(self, database_url: str) -> str:
        """``database_url`` pointed at the proxy (without TLS, so the proxy can read it)."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        url = url.update_query_dict({"sslmode": "disable", "gssencmode": "disable"})
        return url.render_as_string(hide_password=False)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.statements)

    def total(self) -> int:
        with self._lock:
            return sum(self.statements.values())

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._from_client, args=(client, server), daemon=True).start()
            threading.Thread(target=self._copy, args=(server, client), daemon=True).start()

    def _from_client(self, client: socket.socket, server: socket.socket) -> None:
        reader = client.makefile("rb")
        try:
            while True:  # untyped start-up messages: SSL/GSS requests, then the start-up
                head = reader.read(8)
                if len(head) < 8:
                    return
                length, code = struct.unpack("!ii", head)
                server.sendall(head + reader.read(length - 8))
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    break
            while True:
                head = reader.read(5)
                if len(head) < 5:
                    return
                kind, length = head[:1], struct.unpack("!i", head[1:])[0]
                body = reader.read(length - 4)
                if kind == b"Q":
                    statement = normalise(body.rstrip(b"\0").decode(errors="replace"))
                    with self._lock:
                        self.statements[statement] += 1
                server.sendall(head + body)
        except OSError:
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_RDWR)
