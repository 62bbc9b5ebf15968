"""Celery tasks of the trainer service: thin wrappers over the job runner (see shared/tasks.py)."""
from shared.tasks import register

register("trainer")
