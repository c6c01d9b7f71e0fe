"""Operating a real stack: a prefork worker's metrics port, the API's /metrics, JSON logs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import StackFactory
from tests.support.processes import free_port

RUNS = 4


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _total(samples: list[tuple[str, dict[str, str], float]], metric: str, **labels: str) -> float:
    return sum(
        value
        for name, series, value in samples
        if name == metric and all(series.get(k) == v for k, v in labels.items())
    )


def test_a_prefork_worker_serves_its_pool_processes_counts_and_logs_json(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    port = free_port()
    stack = make_stack(env={"LOG_FORMAT": "json"})
    stack.api()
    stack.worker(
        None,
        "worker-all",
        concurrency=2,
        env={
            "WORKER_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        },
    )
    task_ids = [stack.create(f"Crash number {n}")["task_id"] for n in range(RUNS)]
    for task_id in task_ids:
        stack.wait_task(task_id, "SUCCESS")

    worker = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    # The tasks ran in two pool processes; the port serves their sum.
    for stage in ("summarise", "tag", "persist"):
        name = f"enrichment.{stage}"
        assert _total(worker, "celery_task_received_total", name=name) == RUNS, stage
        assert _total(worker, "celery_task_started_total", name=name) == RUNS, stage
        assert _total(worker, "celery_task_succeeded_total", name=name) == RUNS, stage
        assert _total(worker, "celery_task_runtime_count", name=name, queue_name=stage) == RUNS
    # The worker sent the tag and persist hops of each chain; the API sent summarise.
    assert _total(worker, "celery_task_sent_total", name="enrichment.persist") == RUNS
    assert _total(worker, "celery_worker_up") == 1

    api = _samples(httpx.get(f"{stack.base}/metrics", timeout=10).text)
    assert _total(api, "issueflow_runs_total", state="SUCCESS") == RUNS
    assert _total(api, "celery_task_sent_total", name="enrichment.summarise") == RUNS
    assert _total(api, "celery_queue_length") == 0
    assert _total(api, "http_requests_total", handler="/issues", status="201") == RUNS

    # One JSON object per log line (the banner is printed, not logged), each task's
    # lines carry its run.
    records = [
        json.loads(line) for line in stack.log("worker-all").splitlines() if line.startswith("{")
    ]
    succeeded = [r for r in records if " succeeded in " in r["message"]]
    assert {r["run_id"] for r in succeeded} == set(task_ids)
    assert {r["stage"] for r in succeeded} == {"summarise", "tag", "persist"}
    # The API's lines (at --log-level warning) are JSON too; tests/integration/test_security.py
    # reads a whole JSON log of an API process.
    for line in stack.log("api").splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line
