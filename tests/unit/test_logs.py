"""Log records carry the run's fields; LOG_FORMAT=json writes one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.logs import ContextFilter, JsonFormatter, TextFormatter, configure_logging, log_context

Capture = tuple[logging.Logger, io.StringIO, "logging.StreamHandler[io.StringIO]"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("issueflow-test-logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_lines_carry_the_run_fields_and_the_traceback(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())
    with log_context(run_id="run-1", issue_id=7, stage="tag", task_id="task-9"):
        logger.warning("retry %d/%d", 1, 3)
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("it failed")
    logger.info("outside", extra={"attempt": 2})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # a multi-line traceback stays inside its one JSON line
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "retry 1/3"
    assert first["level"] == "WARNING"
    assert first["logger"] == "issueflow-test-logs"
    assert (first["run_id"], first["issue_id"], first["stage"], first["task_id"]) == (
        "run-1",
        7,
        "tag",
        "task-9",
    )
    assert "ValueError: bad\nthing" in second["exception"]
    assert third["run_id"] is None
    assert third["attempt"] == 2


def test_text_lines_show_the_fields_that_are_set(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    with log_context(run_id="run-1", stage="summarise"):
        logger.info("started")
    logger.info("plain")
    logger.info("explicit", extra={"run_id": "run-2"})
    assert stream.getvalue().splitlines() == [
        "INFO started [run_id=run-1 stage=summarise]",
        "INFO plain",
        "INFO explicit [run_id=run-2]",
    ]


def test_configure_logging_installs_one_handler_in_the_chosen_format() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging(Settings(log_format="json", log_level="warning"))
        configure_logging(Settings(log_format="JSON", log_level="WARNING"))
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="yaml")
