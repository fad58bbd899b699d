"""The raw-Celery baseline of bench/e2e.py: the same matmul and digest as a `depin.execute` task,
as a plain Celery task with no chain, no artifact store and no encryption.

The app is configured like the provider's (`provider.worker.make_celery`: Redis broker and
backend, acks_late, prefetch 1, JSON), from BENCH_RAW_BROKER_URL and BENCH_RAW_QUEUE. Its worker
is started by bench/e2e.py as

    python -m celery -A bench.rawcelery worker --queues $BENCH_RAW_QUEUE \
        --concurrency 1 --pool prefork
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

TASK_NAME = "bench.raw_matmul"
QUEUE = os.environ.get("BENCH_RAW_QUEUE", "bench-raw")

app = Celery(
    "bench-raw",
    broker=os.environ.get("BENCH_RAW_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("BENCH_RAW_BROKER_URL", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name=TASK_NAME, acks_late=True)  # type: ignore[untyped-decorator]
def raw_matmul(n: int, seed: int) -> dict[str, Any]:
    """matmul(n, seed) and its digest under the worker's profile, as `execute` computes them."""
    from marketplace.protocol.digest import digest
    from provider.runtime.device import profile_name
    from provider.runtime.matmul import matmul

    profile = profile_name()
    return {"digest": "0x" + digest(profile, matmul(n, seed)).hex()}
