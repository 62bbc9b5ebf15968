"""The statuses of jobs and of their shards, as stored in jobs.status and job_shards.status.

Own module, free of SQLAlchemy, so the CLI can name them (`xpvae jobs --status`) without importing the database
layer. Members compare equal to the stored text.
"""
from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """A job's status as stored in jobs.status (compares equal to the stored text)."""
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"          # ran to its end, but part of its work failed (e.g. some files of an ingest)
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:    # the stored text, also in f-strings and messages
        return self.value


class ShardStatus(str, Enum):
    """A shard's status as stored in job_shards.status."""
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


TERMINAL = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)
RETRYABLE = (JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)     # what `xpvae job retry` may run again
SHARD_SETTLED = (ShardStatus.DONE, ShardStatus.FAILED)   # a shard that will not run again (until `xpvae job retry`)
