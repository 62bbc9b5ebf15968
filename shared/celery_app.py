"""The one Celery app. Queues: ingest, trainer, inferencer, analysis; task names are namespaced the same way
(`<queue>.run_job`). Messages carry only ids; the jobs table is the source of truth, so no result backend."""
from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.settings import get_settings

QUEUES = ("ingest", "trainer", "inferencer", "analysis")

app = Celery("xpvae", broker=get_settings().broker_url or "memory://")
app.conf.update(
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_ignore_result=True, result_backend=None,
    task_queues=[Queue(q, routing_key=q) for q in QUEUES],
    task_default_queue="ingest",
    task_routes={f"{q}.*": {"queue": q, "routing_key": q} for q in QUEUES},
    # At-least-once delivery: ack after the task body, redeliver if the worker dies; one message at a time.
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    # Workers keep trying to reach the broker rather than dying at start-up.
    broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
    broker_heartbeat=60,
    worker_hijack_root_logger=False, worker_send_task_events=False, task_send_sent_event=False,
)
