"""Kombu's Redis transport, with one Redis client per channel instead of one per call.

Kombu's Redis channel builds a new ``redis.Redis`` client around its connection pool for
every publish, every message it receives and every ack (``Channel.conn_or_acquire``).
redis-py copies its table of some 170 response callbacks into each new client: about
0.06 ms of CPU, six times per chain (three publishes, three acks), in the processes that
also run the stages. A client is only a handle on the pool (each command takes a pooled
connection, so one client serves every thread), so the channel keeps one, and builds a new
one only when its pool was replaced (after a lost connection).

``use_channel_client()`` makes ``redis://`` URLs use this transport in this process
(kombu's transport aliases); ``rediss://``, ``sentinel://`` and ``amqp://`` are left as
they are.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

_ALIAS = "app.broker:Transport"


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's own client (BRPOP): as kombu builds it
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._sync_client
        # kombu-stubs declare neither ``_create_client`` nor ``_pool``.
        if client is None or client.connection_pool is not getattr(self, "_pool", None):
            client = self._sync_client = super()._create_client()  # type: ignore[misc]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def use_channel_client() -> None:
    """``redis://`` brokers use ``Transport`` in this process."""
    TRANSPORT_ALIASES["redis"] = _ALIAS
