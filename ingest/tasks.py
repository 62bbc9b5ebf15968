"""Celery tasks of the ingest service: thin wrappers over the job runner (see shared/tasks.py)."""
from shared.tasks import register

register("ingest")
