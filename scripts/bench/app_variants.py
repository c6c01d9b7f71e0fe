"""issueflow's API with one setting changed, to measure what a change would gain.

    uvicorn app_variants:big_pool       SQLAlchemy pool of 40 (anyio's thread limit), not 5+10
    uvicorn app_variants:no_sent_event  task_send_sent_event=False: no PUBLISH per POST
    uvicorn app_variants:no_pre_ping    pool_pre_ping=False: no SELECT 1 per request

No product file is changed: each variant patches the imported modules, then builds a new
app with ``app.main.create_app``. Diagnostics for scripts/bench/api.py (``--apps``).
"""

from __future__ import annotations

import functools
import os

import app.main
from app.celery_app import celery_app
from app.db import make_engine

variant = os.environ.get("BENCH_APP_VARIANT", "")


def _with_engine(**kwargs: object) -> object:
    app.main.make_engine = functools.partial(make_engine, **kwargs)  # type: ignore[assignment]
    return app.main.create_app()


if variant == "big_pool":
    big_pool = _with_engine(pool_size=40, max_overflow=0)
elif variant == "no_pre_ping":
    no_pre_ping = _with_engine(pool_pre_ping=False)
elif variant == "no_sent_event":
    celery_app.conf.task_send_sent_event = False
    no_sent_event = app.main.create_app()
