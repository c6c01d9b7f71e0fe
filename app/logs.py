"""Logs of the API and the workers: ``LOG_FORMAT=text`` (default) or ``json``.

Every record carries ``run_id``, ``issue_id``, ``stage`` and ``task_id`` where they apply:
inside a stage task they come from Celery's current task (its request's id and keyword
arguments, the task's stage), elsewhere from :func:`log_context` or a call's ``extra=``.
The text format shows the ones that are set after the message; the JSON format writes one
object per line, so one run's story is one filter (``run_id=...``) in any log store.

The API calls :func:`configure_logging` once at start (``app.main``); a worker hooks its
handlers through Celery's ``after_setup_logger`` and ``after_setup_task_logger`` signals.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery import signals
from celery._state import get_current_task

from app.config import Settings, get_settings

FIELDS = ("run_id", "issue_id", "stage", "task_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Celery's worker format; its task format names the task and its id, which are fields here.
WORKER_TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_context: ContextVar[dict[str, Any] | None] = ContextVar("issueflow_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Records logged inside carry these fields (``run_id=...``, ``issue_id=...``)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _task_fields() -> dict[str, Any]:
    task = get_current_task()
    if task is None:
        return {}
    request = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    if request is None or task_id is None:
        return {}
    kwargs = getattr(request, "kwargs", None) or {}
    stage = getattr(task, "stage", None)
    return {
        "task_id": task_id,
        "run_id": kwargs.get("run_id"),
        "issue_id": kwargs.get("issue_id"),
        "stage": str(stage) if stage is not None else None,
    }


class ContextFilter(logging.Filter):
    """Sets ``run_id``, ``issue_id``, ``stage``, ``task_id`` on every record (None if unknown);
    a value passed with ``extra=`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**_task_fields(), **(_context.get() or {})}
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, fields.get(name))
        return True


class TextFormatter(logging.Formatter):
    """A human line: the usual format, then ``run_id=... stage=...`` for the fields set."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(
            f"{name}={value}"
            for name in FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        if not fields:
            return line
        first, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{first} [{fields}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run fields, and
    ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        for name in FIELDS:
            entry[name] = getattr(record, name, None)
        for name, value in record.__dict__.items():  # extra= fields of the call
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                entry[name] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(log_format: str, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter(text_format)


def configure_logging(settings: Settings | None = None) -> None:
    """The API's logging: one stderr handler on the root logger, in ``LOG_FORMAT``; the
    server's own loggers (uvicorn's) go through it too, so JSON means every line.

    A root logger that already has handlers (``uvicorn --log-config``) keeps them and its
    level: they get the run fields (``%(run_id)s`` ... in their formats), and with
    ``LOG_FORMAT=json`` the JSON formatter.
    """
    settings = settings or get_settings()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_issueflow", False):
            root.removeHandler(handler)
    if root.handlers:
        for handler in root.handlers:
            if settings.log_format == "json":
                handler.setFormatter(JsonFormatter())
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(ContextFilter())
    else:
        root.addHandler(_our_handler(settings))
        root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_logger = logging.getLogger(name)
        if settings.log_format == "json":
            server_logger.handlers.clear()
            server_logger.propagate = True


def _our_handler(settings: Settings) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler._issueflow = True  # type: ignore[attr-defined]
    handler.setFormatter(make_formatter(settings.log_format))
    handler.addFilter(ContextFilter())
    return handler


def hook_handlers(logger: logging.Logger, log_format: str, text_format: str) -> None:
    """Give ``logger``'s handlers our formatter and the run fields."""
    for handler in logger.handlers:
        handler.setFormatter(make_formatter(log_format, text_format))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


@signals.after_setup_logger.connect
def _worker_logger(logger: logging.Logger, **_: Any) -> None:
    """Celery set up the worker's root handlers (its format, colours): they become ours."""
    hook_handlers(logger, get_settings().log_format, WORKER_TEXT_FORMAT)


@signals.after_setup_task_logger.connect
def _worker_task_logger(logger: logging.Logger, **_: Any) -> None:
    hook_handlers(logger, get_settings().log_format, WORKER_TEXT_FORMAT)
