"""The Celery task bodies: thin wrappers that hand a job id (and a shard number) to the job runner.

A database outage is retried by Celery (with backoff) instead of being recorded, because it cannot be
recorded; any other failure is recorded on the job by `execute`: retried with backoff when transient, failed
at once otherwise (shared.errors).
"""
from __future__ import annotations

import sqlalchemy as sa
from celery import Celery, Task

from jobqueue import runner
from jobqueue.registry import QUEUES
from shared.settings import Settings


def _db_outage_countdown(task: Task) -> float:
    return float(min(2 ** task.request.retries, 60))


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register `<queue>.run_job` and `<queue>.run_shard` for every queue on ``app``; they run with ``settings``."""
    for queue in QUEUES:
        _register_queue(app, settings, queue)


def _register_queue(app: Celery, settings: Settings, queue: str) -> None:
    # shared=False: Celery would otherwise add these tasks, with this app's settings, to every app made later
    @app.task(name=f"{queue}.run_job", bind=True, max_retries=None, shared=False)
    def run_job(task: Task, job_id: int) -> str:
        try:
            return str(runner.run_job_message(settings, job_id))
        except sa.exc.OperationalError as exc:
            raise task.retry(exc=exc, countdown=_db_outage_countdown(task)) from exc

    @app.task(name=f"{queue}.run_shard", bind=True, max_retries=None, shared=False)
    def run_shard(task: Task, job_id: int, shard: int) -> str:
        try:
            return str(runner.run_shard_message(settings, job_id, shard))
        except sa.exc.OperationalError as exc:
            raise task.retry(exc=exc, countdown=_db_outage_countdown(task)) from exc
