"""Moved to ``tests.support.processes``; this re-export goes once every branch imports that."""

from tests.support.processes import (
    BIN,
    ROOT,
    Processes,
    answers,
    child_pids,
    free_port,
    processes,
    wait_until,
)
from tests.support.servers import redis_server_binary

__all__ = [
    "BIN",
    "ROOT",
    "Processes",
    "answers",
    "child_pids",
    "free_port",
    "processes",
    "redis_server_binary",
    "wait_until",
]
