"""The Celery app, built from the settings it is given (never at import time from the environment).

Queues: ingest, trainer, inferencer, analysis; task names are namespaced the same way (`<queue>.run_job`,
`<queue>.run_shard`). Messages carry only ids; the jobs table is the source of truth, so no result backend.
A worker builds its app with `make_celery_app(settings)` (xpvae/worker.py); a process that only publishes
uses `producer(broker_url)`.
"""
from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from jobqueue.registry import QUEUES
from shared.settings import Settings


def new_app(broker_url: str | None) -> Celery:
    """An app configured for the job queues, with no tasks: enough to publish."""
    app = Celery("xpvae", broker=broker_url or "memory://", set_as_current=False)
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
    return app


def make_celery_app(settings: Settings) -> Celery:
    """The worker's app: the queues of ``settings.broker_url`` and the task bodies, which run jobs with
    ``settings`` (jobqueue/tasks.py)."""
    from jobqueue.tasks import register_tasks
    app = new_app(settings.broker_url)
    register_tasks(app, settings)
    return app


@lru_cache(maxsize=4)
def producer(broker_url: str | None) -> Celery:
    """The app a process publishes with, one per broker URL (as one engine per database URL): it holds the
    broker connection pool, which a new app per message would open and close again."""
    return new_app(broker_url)
