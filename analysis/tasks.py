"""Celery tasks of the analysis service: thin wrappers over the job runner (see shared/tasks.py)."""
from shared.tasks import register

register("analysis")
