"""A new user's first minute: migrate a fresh SQLite file, start the API, create an issue."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.support.processes import BIN, ROOT, free_port, processes


def test_migrate_start_create_and_read_over_http(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'smoke.db'}",
        # No broker here on purpose: the issue must still be created (kept in the outbox).
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    migrated = subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    with processes(env, tmp_path) as group:
        group.api(port)
        base = f"http://127.0.0.1:{port}"
        created = httpx.post(
            f"{base}/issues", json={"title": "Smoke", "body": "Körper 🐛"}, timeout=10
        )
        assert created.status_code == 201, created.text
        issue = created.json()["issue"]
        fetched = httpx.get(f"{base}{created.headers['location']}", timeout=5).json()
        assert fetched["title"] == "Smoke"
        assert fetched["body"] == "Körper 🐛"
        assert fetched["enrichment"]["status"] == "pending"
        assert "waiting for the broker" in fetched["enrichment"]["error"]
        assert httpx.get(f"{base}/issues", timeout=5).json()["items"][0]["id"] == issue["id"]
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["broker"].startswith("unreachable")
