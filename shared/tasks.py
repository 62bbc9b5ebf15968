"""The task bodies every service registers: thin wrappers that hand a job id to the job runner.

A database outage is retried by Celery (with backoff) instead of being recorded, because it cannot be
recorded; any other failure is recorded on the job by `execute`: retried with backoff when transient, failed
at once otherwise (shared.errors).
"""
from __future__ import annotations

import sqlalchemy as sa

from shared import jobs
from shared.celery_app import app


def register(queue: str) -> None:
    """Register `<queue>.run_job`, and `<queue>.run_shard` where a job kind of that queue fans out."""

    @app.task(name=f"{queue}.run_job", bind=True, max_retries=None)
    def run_job(self, job_id: int) -> str:
        try:
            status = jobs.execute(job_id)
        except sa.exc.OperationalError as exc:
            raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from exc
        if status == "retry":
            from db.engine import get_engine
            attempts = jobs.jobs_db.get_job(get_engine(), job_id)["attempts"]
            # A new message rather than self.retry: the job row, not Celery, counts the attempts.
            jobs.publish(f"{queue}.run_job", [job_id], queue, countdown=jobs.retry_backoff(attempts))
        return status

    if any(k.queue == queue and k.shard_handler for k in jobs.KINDS.values()):
        @app.task(name=f"{queue}.run_shard", bind=True, max_retries=None)
        def run_shard(self, job_id: int, shard: int) -> str:
            try:
                status = jobs.execute_shard(job_id, shard)
            except sa.exc.OperationalError as exc:
                raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from exc
            if status == "retry":
                jobs.publish(f"{queue}.run_shard", [job_id, shard], queue, countdown=jobs.retry_backoff(1))
            return status
