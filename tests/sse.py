"""Reading a Server-Sent Events stream in tests: events (id, data) and comment lines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    id: int | None
    data: dict[str, Any]


@dataclass
class Comment:
    text: str


def parse(lines: Iterable[str], *, deadline: float) -> Iterator[Event | Comment]:
    """Events and comments as they arrive; fails once ``deadline`` (monotonic) has passed.

    The stream's heartbeat comments keep lines coming, so the deadline is checked often.
    """
    event_id: int | None = None
    data: list[str] = []
    for raw in lines:
        if time.monotonic() > deadline:
            raise AssertionError("the event stream did not end in time")
        line = raw.rstrip("\r")
        if line.startswith(":"):
            yield Comment(line[1:].strip())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield Event(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
