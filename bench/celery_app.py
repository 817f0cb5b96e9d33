"""The end-to-end baseline: Celery with Redis (broker and result backend) running a no-op task.

    python -m celery -A bench.celery_app worker -c 2 --loglevel warning

The task does what `genmill/echo` does with `sleep_ms` 0: it returns its payload and the time it started, and
Celery stores that result in Redis. The bench uses Redis database 15 (`GENMILL_BENCH_REDIS` to change it) and
empties it before each run.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

REDIS_URL = os.environ.get("GENMILL_BENCH_REDIS", "redis://127.0.0.1:6379/15")

app = Celery("genmill_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(payload: Any) -> dict[str, Any]:
    return {"echo": payload, "started_at": time.time()}
