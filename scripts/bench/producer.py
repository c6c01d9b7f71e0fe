"""The benchmark's producer: a long-lived process that publishes chains when told to.

    python producer.py tracked|bare

reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"cmd": "run", "n": 2000, "rate": 0, "tag": "throughput"}   rate 0: as fast as it can
    -> {"n": 2000, "first": <time>, "last": <time>, "ids": [first issue id, last issue id]}
    {"cmd": "quit"}

``tracked`` does what ``POST /issues`` does, minus HTTP: per issue, one transaction that
inserts the issue and calls ``pipelines.enrichment.start_enrichment`` (run + stages
recorded, chain published). ``bare`` publishes ``bare_tasks``' stock chain.

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
    from sqlalchemy.orm import Session

    from app.config import get_settings
    from app.db import make_engine
    from app.schemas import IssueCreate
    from app.services.issues import create_issue
    from pipelines.dispatch import start_enrichment

    engine = make_engine(get_settings().database_url)

    def publish(tag: str, i: int) -> int:
        data = IssueCreate(title=f"bench {tag} {i}: settings page hangs on save", body=ISSUE_BODY)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            issue = create_issue(session=session, data=data)
            start_enrichment(session=session, issue=issue)
        return issue.id

    return publish


def bare_publisher() -> Callable[[str, int], int]:
    import bare_tasks

    def publish(tag: str, i: int) -> int:
        bare_tasks.send(time.time())
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
