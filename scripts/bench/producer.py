"""The benchmark's producer: a long-lived process that publishes chains when told to.

    python producer.py tracked|bare

reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"cmd": "run", "n": 2000, "rate": 0, "tag": "throughput"}   rate 0: as fast as it can
    -> {"n": 2000, "first": <time>, "last": <time>, "ids": [first issue id, last issue id]}
    {"cmd": "quit"}

``tracked`` does what ``POST /issues`` does, minus HTTP: per issue,
``pipelines.dispatch.create_and_start`` on an autocommit session (issue, run and stages in
one statement, then the chain published). ``bare`` publishes ``bare_tasks``' stock chain
(with ``BENCH_FLOOR_DSN``, the floor: a row INSERTed per run first).

Imports and connections happen once, before the first command, so a measurement never
includes them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from common import ISSUE_BODY


def tracked_publisher() -> Callable[[str, int], int]:
    from app.config import get_settings
    from app.db import make_autocommit_engine, make_engine, make_session_factory
    from app.schemas import IssueCreate
    from pipelines.dispatch import create_and_start

    url = get_settings().database_url
    # The API's own session for POST /issues: autocommit on PostgreSQL.
    sessions = make_session_factory(make_autocommit_engine(url, make_engine(url)))

    def publish(tag: str, i: int) -> int:
        data = IssueCreate(title=f"bench {tag} {i}: settings page hangs on save", body=ISSUE_BODY)
        with sessions() as session:
            issue, _run_id = create_and_start(session=session, data=data)
        return issue.id

    return publish


def bare_publisher() -> Callable[[str, int], int]:
    import bare_tasks

    if bare_tasks.FLOOR_DSN is not None:
        bare_tasks.reset_floor()

    def publish(tag: str, i: int) -> int:
        bare_tasks.send(time.time(), f"bench {tag} {i}: settings page hangs on save", ISSUE_BODY)
        return i

    return publish


def main() -> None:
    publish = tracked_publisher() if sys.argv[1] == "tracked" else bare_publisher()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        n, rate, tag = int(command["n"]), float(command["rate"]), str(command["tag"])
        ids = []
        took = []
        first = time.time()
        start = time.monotonic()
        for i in range(n):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            began = time.perf_counter()
            ids.append(publish(tag, i))
            took.append(time.perf_counter() - began)
        last = time.time()
        took.sort()
        # How long one publish took (a POST's transaction and message, without HTTP).
        publish_ms = {
            q: took[min(len(took) - 1, int(len(took) * q / 100))] * 1000 for q in (50, 99)
        }
        answer = {"n": n, "first": first, "last": last, "ids": [ids[0], ids[-1]]}
        print(json.dumps({**answer, "publish_ms": publish_ms}), flush=True)


if __name__ == "__main__":
    main()
