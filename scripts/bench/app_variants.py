"""issueflow's API with one setting changed, to measure what a change would gain.

    uvicorn app_variants:no_sent_event  task_send_sent_event=False: no PUBLISH per POST
    uvicorn app_variants:no_sweeper     no outbox sweeper thread in the API process

No product file is changed: the variant patches the imported Celery app, then builds a new
app with ``app.main.create_app``. Diagnostics for scripts/bench/api.py (``--apps``).
"""

from __future__ import annotations

import os

import app.main
from app.celery_app import celery_app

if os.environ.get("BENCH_APP_VARIANT", "") == "no_sent_event":
    celery_app.conf.task_send_sent_event = False
    no_sent_event = app.main.create_app()
elif os.environ.get("BENCH_APP_VARIANT", "") == "no_sweeper":
    no_sweeper = app.main.create_app(sweep_outbox=False)
