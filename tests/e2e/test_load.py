"""Load: many clients post at once against per-queue workers; every issue ends enriched.

``LOAD_ISSUES`` sets how many (default 300 so CI stays short; the promise is about 5,000:
``LOAD_ISSUES=5000 scripts/test -m slow -k load``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import StackFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 20


def test_concurrent_clients_every_issue_enriched_no_5xx(make_stack: StackFactory) -> None:
    total = int(os.environ.get("LOAD_ISSUES", "300"))
    stack = make_stack(database="postgres")
    stack.api()
    stack.stage_workers()

    def post(n: int) -> tuple[int, str]:
        with httpx.Client(timeout=30) as client:
            response = client.post(
                f"{stack.base}/issues",
                json={
                    "title": f"Load issue {n}: crash when saving",
                    "body": f"Issue number {n}. Clicking save crashes the app.",
                },
            )
        return response.status_code, response.json().get("task_id", "")

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(post, range(total)))

    statuses = [status for status, _ in results]
    assert statuses.count(201) == total, {s: statuses.count(s) for s in set(statuses)}
    task_ids = [task_id for _, task_id in results]
    assert len(set(task_ids)) == total
    stack.wait_all_succeeded(task_ids, timeout=60 + total * 0.2)

    succeeded = stack.runs_in("SUCCESS")
    assert set(task_ids) <= set(succeeded)
    assert len(succeeded) == total  # exactly one run per issue, none extra
    assert stack.runs_in("FAILURE") == {}
    enriched = httpx.get(
        f"{stack.base}/issues", params={"enrichment_status": "succeeded", "limit": 200}, timeout=10
    ).json()
    assert len(enriched["items"]) == min(total, 200)
    assert all(item["ai_summary"] and item["tags"] for item in enriched["items"])
