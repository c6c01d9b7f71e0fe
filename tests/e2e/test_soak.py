"""Chaos soak: issues from 20 clients while a fixed-seed scheduler injects faults.

The faults: ``kill -9`` of a whole stage worker (main process and pool) at random, each
restarted at once; one restart of the test's own Redis (append-only file on, as a broker
that must keep its queues needs); one restart of the test's own PostgreSQL (fast shutdown:
every connection is cut); one brief partition of the tag worker's host (its cable out for
``PARTITION_SECONDS``). Workers run on simulated hosts (``netns.py``), the API on the host.

At the end every issue has exactly one run, SUCCESS, and its enrichment; no delivery
persisted a result twice; the clients saw only 201, or 503 while the database was down
(documented: "database unavailable, try again"), retried. The report prints each fault and
when it happened.

Size: ``SOAK_ISSUES`` (300 in CI); the full soak is ``scripts/soak`` (5,000 issues).
``SOAK_SEED`` picks another schedule of faults.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.hosts import HostsStack, hosts_stack
from tests.support.processes import BIN, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 20
QUEUES = ("summarise", "tag", "persist")
KILLS = 6
# Idle time after which `issueflow recover` looks for a run's message: above the
# visibility timeout plus a time limit, so the test would see a message the transport
# still holds, were it not in Redis.
RECOVER_GRACE = 20
PARTITION_SECONDS = 2.0  # below the stage time limit: the stage in flight finishes after it
# A stage's time limit: the partition, plus TCP's retransmission backoff after it (a
# statement sent as the cable went out is resent 0.2, 0.6, 1.4 and 3.0 s later: the first
# resend after the 2 s outage comes about 1 s late), plus the stage's own work on a loaded
# machine. At 4 s, a tag stage in flight during the partition was once killed by its time
# limit (a permanent failure, so the run never succeeded). Below the visibility timeout, as
# in production.
STAGE_TIME_LIMIT = 6
ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "12",
    **{f"{stage}_TIME_LIMIT": str(STAGE_TIME_LIMIT) for stage in ("SUMMARISE", "TAG", "PERSIST")},
    # Enough retries (0.2 s .. 1 s apart) to outlast a database restart.
    **{f"{stage}_MAX_RETRIES": "40" for stage in ("SUMMARISE", "TAG", "PERSIST")},
}


@dataclass
class Fault:
    at: float  # progress (posted + succeeded over twice the total) that triggers it
    kind: str
    target: str = ""


def unfinished_runs(stack: HostsStack) -> str:
    """The runs that have not succeeded, stage by stage: what a failed soak reports."""
    with stack.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT r.id, r.state, r.dispatched, r.error,"
                " string_agg(s.name || ':' || s.state || ':' || s.retries"
                "   || coalesce(':' || s.error, ''), ' | ' ORDER BY s.position)"
                " FROM enrichment_runs r JOIN enrichment_stages s ON s.run_id = r.id"
                " WHERE r.state <> 'SUCCESS' GROUP BY r.id ORDER BY r.created_at LIMIT 20"
            )
        ).all()
    return f"states {stack.states()}; not SUCCESS (first 20):\n" + "\n".join(
        f"  {run_id} {state} dispatched={dispatched} {error or ''}: {stages}"
        for run_id, state, dispatched, error, stages in rows
    )


def plan(seed: int) -> list[Fault]:
    rng = random.Random(seed)
    faults = [Fault(rng.uniform(0.05, 0.95), "kill -9", rng.choice(QUEUES)) for _ in range(KILLS)]
    faults += [
        Fault(rng.uniform(0.15, 0.35), "restart postgres"),
        Fault(rng.uniform(0.45, 0.6), "restart redis"),
        Fault(rng.uniform(0.65, 0.85), "partition", "tag"),
    ]
    return sorted(faults, key=lambda fault: fault.at)


class Clients:
    """CLIENTS threads posting ``total`` issues at ``rate`` per second in all; a 503 is
    retried (what a client of a documented 503 does), anything else but 201 is recorded."""

    def __init__(self, stack: HostsStack, total: int, rate: float) -> None:
        self.stack, self.total, self.rate = stack, total, rate
        self.statuses: Counter[int] = Counter()
        self.posted = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        start = time.monotonic()

        def one(n: int) -> None:
            time.sleep(max(0.0, start + n / self.rate - time.monotonic()))  # pacing the load
            with httpx.Client(timeout=60) as client:
                for attempt in range(200):
                    response = client.post(
                        f"{self.stack.base}/issues",
                        json={"title": f"Soak issue {n}: crash on save", "body": f"Number {n}."},
                    )
                    with self.lock:
                        self.statuses[response.status_code] += 1
                    if response.status_code != 503:
                        break
                    time.sleep(min(1.0, 0.05 * 2**attempt))  # a client's backoff
            with self.lock:
                self.posted += 1

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(one, range(self.total)))


def test_chaos_soak_every_issue_enriched_once(tmp_path: Path) -> None:
    total = int(os.environ.get("SOAK_ISSUES", "300"))
    rate = float(os.environ.get("SOAK_RATE", "30"))
    seed = int(os.environ.get("SOAK_SEED", "1414"))
    faults = plan(seed)
    hosts = list(QUEUES)
    with hosts_stack(tmp_path, ENV, hosts, appendonly=True) as stack:
        stack.api()
        for queue in QUEUES:
            stack.worker(queue, stack.net.hosts[queue], queue, wait=False)
        for queue in QUEUES:
            stack.group.wait_for_log(queue, " ready.", timeout=90, process=stack.workers[queue])

        succeeded = [0]

        def progress() -> float:
            # While the database restarts, the last count stands.
            with contextlib.suppress(sa.exc.OperationalError):
                succeeded[0] = stack.states().get("SUCCESS", 0)
            return (clients.posted + succeeded[0]) / (2 * total)

        clients = Clients(stack, total, rate)
        loader = threading.Thread(target=clients.run, name="clients")
        started = time.monotonic()
        loader.start()
        report: list[str] = []
        try:
            for fault in faults:
                wait_until(
                    lambda fault=fault: progress() >= fault.at,  # type: ignore[misc]
                    timeout=120 + total,
                    interval=0.2,
                    what=f"progress {fault.at:.2f} for the fault {fault.kind}",
                )
                at = time.monotonic() - started
                inject(stack, fault)
                report.append(
                    f"{at:7.1f}s  progress {fault.at:.2f}  {fault.kind} {fault.target}".rstrip()
                    + f"  (took {time.monotonic() - started - at:.1f}s)"
                )
        finally:
            loader.join(timeout=600)
        print(f"\nchaos soak, seed {seed}, {total} issues from {CLIENTS} clients:")
        print("\n".join(report))

        # What an operator's cron does: `issueflow recover` sends again the runs whose
        # message the broker lost (see pipelines/recovery.py), here every few seconds.
        recovered: list[str] = []

        def settled() -> bool:
            if stack.states() == {"SUCCESS": total}:
                return True
            done = subprocess.run(
                [str(BIN / "issueflow"), "recover", "--stalled-after", str(RECOVER_GRACE)],
                env=stack.group.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            at = time.monotonic() - started
            recovered.extend(
                f"{at:7.1f}s  resumed {line.removeprefix('stalled: ')}"
                for line in done.stdout.splitlines()
                if line.startswith("stalled: ")
            )
            return False

        try:
            wait_until(
                settled,
                timeout=180 + total * 0.2,
                interval=3,
                what=f"all {total} runs to succeed",
            )
        except AssertionError as exc:
            details = f"{unfinished_runs(stack)}\n" + "\n".join(recovered)
            raise AssertionError(f"{exc}\n{details}") from exc
        report += recovered
        print("\n".join(recovered) or "no run needed `issueflow recover`")
        elapsed = time.monotonic() - started
        with stack.engine.connect() as connection:
            issues, runs_per_issue, enriched = connection.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM issues),"
                    " (SELECT array_agg(DISTINCT n) FROM (SELECT count(*) AS n FROM"
                    "   enrichment_runs GROUP BY issue_id) AS per_issue),"
                    " (SELECT count(*) FROM issues WHERE enrichment_status = 'succeeded'"
                    "   AND ai_summary IS NOT NULL AND enrichment_error IS NULL)"
                )
            ).one()
            persist_ids = connection.execute(
                sa.text("SELECT task_id FROM enrichment_stages WHERE name = 'persist'")
            ).scalars()
            persist_ids = list(persist_ids)
        writes = Counter(
            task_id
            for task_id, wrote in re.findall(
                r"enrichment\.persist\[(\S+)\] succeeded in [\d.]+s: (\w+)",
                stack.group.log("persist"),
            )
            if wrote == "True"
        )
        statuses = dict(clients.statuses)
        print(
            f"all {total} runs SUCCESS {elapsed:.0f}s after the first POST; client answers "
            f"{statuses}; persist writes logged for {sum(writes.values())} runs; "
            f"{len(recovered)} runs sent again by `issueflow recover`"
        )
        (tmp_path / "soak-report.txt").write_text("\n".join(report) + "\n")

        assert issues == total
        assert runs_per_issue == [1], runs_per_issue  # exactly one run per issue
        assert enriched == total
        assert set(statuses) <= {201, 503}, statuses
        assert statuses[201] == total
        assert max(writes.values()) == 1, "a delivery persisted a result twice"
        # A worker killed after its commit and before its log line hides one write at most.
        assert sum(writes[task_id] for task_id in persist_ids) >= total - KILLS


def inject(stack: HostsStack, fault: Fault) -> None:
    group = stack.group
    if fault.kind == "kill -9":
        group.kill(stack.workers[fault.target])  # SIGKILL to the group: main process and pool
        host = stack.net.hosts[fault.target]
        stack.worker(fault.target, host, fault.target, wait=False)
    elif fault.kind == "restart redis":
        assert stack.redis_server is not None
        stack.redis_server.stop(signal.SIGTERM)  # SIGTERM: the append-only file is complete
        stack.redis_server.start()
    elif fault.kind == "restart postgres":
        stack.cluster.stop()
        stack.cluster.start()
    elif fault.kind == "partition":
        host = stack.net.hosts[fault.target]
        stack.net.cut(host)
        time.sleep(PARTITION_SECONDS)  # the length of the outage, not a wait for anything
        stack.net.restore(host)
    else:
        raise ValueError(fault.kind)
