"""Cheap container probes (standard library only, so a probe starts in a few milliseconds).

``python -m app.probes worker [--max-age S]``
    exit 0 when the worker's heartbeat file (``WORKER_HEARTBEAT_FILE``, written by
    ``app.heartbeat`` in a worker started with ``--include app.heartbeat``) was touched in
    the last S seconds; 1 otherwise, with the reason on stderr.
``python -m app.probes http URL [--timeout S]``
    exit 0 when URL answers 2xx (the API's /readyz, Flower's /healthcheck); 1 otherwise.
``python -m app.probes migrated``
    exit 0 when the database at ``DATABASE_URL`` is at the migrations' head revision; 1
    otherwise (an init container: pods start once the migration Job has run). This one
    loads SQLAlchemy and Alembic, so it is for one-off checks, not periodic probes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# The same names as app.heartbeat, which this module must not import (it loads Celery).
HEARTBEAT_FILE_ENV = "WORKER_HEARTBEAT_FILE"
DEFAULT_HEARTBEAT_FILE = "/tmp/issueflow-worker.heartbeat"
# Six heartbeats of 10 s may be missed before the worker counts as dead.
DEFAULT_MAX_AGE = 60.0


def check_worker(path: Path, max_age: float, now: float | None = None) -> str | None:
    """None when the heartbeat file is fresh, else why not."""
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat file at {path}: the worker is not consuming (yet)"
    except OSError as exc:
        return f"cannot read the heartbeat file {path}: {exc}"
    age = (time.time() if now is None else now) - touched
    if age > max_age:
        return f"heartbeat file {path} is {age:.0f}s old (more than {max_age:.0f}s)"
    return None


def check_http(url: str, timeout: float) -> str | None:
    """None when URL answers 2xx, else why not."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} does not answer: {exc}"
    if not 200 <= status < 300:
        return f"{url} answered {status}"
    return None


def check_migrated(database_url: str) -> str | None:
    """None when the database is at the head revision of the installed migrations."""
    # Imported here: the periodic probes above stay standard-library only.
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import make_engine

    config = Config()
    config.set_main_option("script_location", "app:migrations")
    heads = set(ScriptDirectory.from_config(config).get_heads())
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        return f"cannot read the schema revision: {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        engine.dispose()
    if current != heads:
        have = ", ".join(sorted(current)) or "none"
        return f"database at revision {have}, migrations at {', '.join(sorted(heads))}"
    return None


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.probes", description="Cheap container probes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="the worker's heartbeat file is fresh")
    worker.add_argument(
        "--file",
        type=Path,
        default=Path(os.environ.get(HEARTBEAT_FILE_ENV) or DEFAULT_HEARTBEAT_FILE),
        help=f"heartbeat file (default: ${HEARTBEAT_FILE_ENV} or {DEFAULT_HEARTBEAT_FILE})",
    )
    worker.add_argument("--max-age", type=_positive, default=DEFAULT_MAX_AGE, help="seconds")
    http = commands.add_parser("http", help="a URL answers 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=_positive, default=3.0, help="seconds")
    commands.add_parser("migrated", help="the database at DATABASE_URL is at the head revision")
    args = parser.parse_args(argv)

    if args.command == "worker":
        error = check_worker(args.file, args.max_age)
    elif args.command == "http":
        error = check_http(args.url, args.timeout)
    else:
        from app.config import get_settings

        error = check_migrated(get_settings().database_url)
    if error is not None:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
