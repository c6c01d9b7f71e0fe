"""What a worker process needs to run stages, built once per process from its Settings.

Settings, the engines, the provider, the cluster-wide rate-limit bucket and the stage
policies. A forked pool process starts without one (``worker_process_init``) and builds its
own on its first task, so no connection is ever shared across a fork. Tests build a context
of their own and install it with :func:`use_context`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import redis
from sqlalchemy import Connection, Engine

from app.config import Settings, get_settings
from app.db import make_autocommit_engine, make_engine, transaction
from app.progress import ProgressPublisher
from pipelines.marks import MarkBuffer
from pipelines.policies import StagePolicy, policies_for
from pipelines.providers import Provider, make_provider
from pipelines.queues import Stage
from pipelines.ratelimit import TokenBucket
from pipelines.stopwatch import StopWatch

# The mark buffer's flush (its own pool: one connection, its thread's) looks its rows up
# by primary key, never by a sequential scan. Its statement is prepared once per connection
# and PostgreSQL plans it once, for the tables as they were then: a connection that
# prepared it while they were nearly empty would otherwise keep scanning them whole as they
# grow, as long as no ANALYZE comes to replan it (autovacuum off, as on this machine's
# server). Only the flush runs on this pool.
FLUSH_SETTINGS = ("enable_seqscan=off",)


@dataclass
class WorkerContext:
    settings: Settings
    # Results and failures: commits wait until they are durable.
    engine: Engine
    # Progress marks (STARTED, SUCCESS of summarise and tag, RETRY, REVOKED): commits do not
    # wait for the disk. A database crash can lose the last marks, never a result.
    marks_engine: Engine
    # Marks and reads that need no transaction around them (a stage's begin and finish,
    # "has the run ended?"): on PostgreSQL in autocommit, one round trip per statement,
    # commits not waiting for the disk either. SQLite: ``marks_engine`` itself.
    single_engine: Engine
    provider: Provider
    policies: Mapping[Stage, StagePolicy]
    bucket: TokenBucket | None = None
    # Run-progress notifications (``app.progress``), published after each committed mark.
    progress: ProgressPublisher | None = None
    # Provider calls that end when their run is stopped (network-bound providers only).
    stopwatch: StopWatch | None = None
    # summarise's and tag's progress marks, written behind (``pipelines.marks``), on
    # PostgreSQL; None (SQLite): marks are written as they happen.
    marks: MarkBuffer | None = None
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        provider: Provider | None = None,
        policies: Mapping[Stage, StagePolicy] | None = None,
    ) -> WorkerContext:
        engine = make_engine(settings.database_url)
        marks_engine = make_engine(settings.database_url, durable=False)
        single_engine = make_autocommit_engine(settings.database_url, marks_engine, durable=False)
        progress = ProgressPublisher.from_settings(settings)
        marks = None
        if single_engine is not marks_engine:  # PostgreSQL: a round trip per mark to save
            marks = MarkBuffer(
                make_autocommit_engine(
                    settings.database_url, marks_engine, durable=False, settings=FLUSH_SETTINGS
                ),
                on_written=progress.changed_many,
            )
        return cls(
            settings=settings,
            engine=engine,
            marks_engine=marks_engine,
            single_engine=single_engine,
            provider=provider if provider is not None else make_provider(settings),
            policies=policies if policies is not None else policies_for(settings),
            bucket=provider_bucket(settings),
            progress=progress,
            stopwatch=provider_stopwatch(settings),
            marks=marks,
        )

    def result_transaction(self) -> AbstractContextManager[Connection]:
        """A transaction for a result (persist), its commit durable: on PostgreSQL on the
        autocommit pool, its BEGIN sent with its first statement (``app.db.transaction``:
        two round trips for one statement); SQLite: ``engine.begin()``."""
        if self.single_engine is self.marks_engine:
            return self.engine.begin()
        return transaction(self.single_engine)

    def close(self, *, close_connections: bool = True) -> None:
        """Release the engines. ``close_connections=False`` after a fork: the parent's
        connections are left alone, only forgotten."""
        if not self._closed:
            if self.marks is not None and close_connections:
                self.marks.close()  # after a fork the parent's marks are left to it
            self.engine.dispose(close=close_connections)
            self.marks_engine.dispose(close=close_connections)
            if self.marks is not None:
                self.marks.engine.dispose(close=close_connections)
            if self.single_engine is not self.marks_engine:
                self.single_engine.dispose(close=close_connections)
            if close_connections:
                if self.progress is not None:
                    self.progress.close()
                if self.stopwatch is not None:
                    self.stopwatch.close()
            self._closed = True


def provider_bucket(settings: Settings) -> TokenBucket | None:
    """The cluster-wide bucket for ``PROVIDER_RATE_LIMIT``, or None when no limit is set."""
    if not settings.provider_rate_limit:
        return None
    url = settings.coordination_redis_url
    if url is None:
        raise RuntimeError(
            "PROVIDER_RATE_LIMIT needs a Redis: set REDIS_URL=redis://... (the broker is not one)"
        )
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return TokenBucket(
        client, f"{settings.redis_key_prefix}ratelimit:provider", settings.provider_rate_limit
    )


def provider_stopwatch(settings: Settings) -> StopWatch | None:
    """For a provider that waits on the network (``openai``) and a Redis to listen on."""
    url = settings.coordination_redis_url
    if settings.enrich_provider != "openai" or url is None:
        return None
    return StopWatch(url, settings.redis_key_prefix)


_context: WorkerContext | None = None
_lock = threading.Lock()


def get_context() -> WorkerContext:
    """This process's context, built from ``get_settings()`` on first use."""
    global _context
    with _lock:
        if _context is None:
            _context = WorkerContext.build(get_settings())
        return _context


def use_context(context: WorkerContext | None) -> WorkerContext | None:
    """Install ``context`` (None: build one on next use); returns the one it replaces."""
    global _context
    with _lock:
        previous, _context = _context, context
        return previous


def current_context() -> WorkerContext | None:
    """This process's context if one was built (never builds one)."""
    with _lock:
        return _context


def forget_context_after_fork() -> None:
    """A forked pool process drops its parent's context without closing its connections."""
    previous = use_context(None)
    if previous is not None:
        previous.close(close_connections=False)
