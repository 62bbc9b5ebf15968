"""The jobs table is the source of truth for every job; these are its only writers.

Status moves queued → running → succeeded | partial | failed | cancelled ('partial': the job ran to its end
but part of its work failed, e.g. some files of an ingest). A message on the queue carries only a job id
(and a shard number for a fan-out job's shards) and is published after the row commits.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.job_status import SHARD_SETTLED, TERMINAL, JobStatus, ShardStatus
from db.schema import job_shards, jobs


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_job(engine: Engine, kind: str, queue: str, params: dict, max_attempts: int = 3) -> int:
    with engine.begin() as conn:
        return int(conn.execute(jobs.insert().values(
            kind=kind, queue=queue, params=params, max_attempts=max_attempts, status=JobStatus.QUEUED,
            created_at=now(), updated_at=now()).returning(jobs.c.id)).scalar_one())


def get_job(engine_or_conn: Engine | Connection, job_id: int) -> dict | None:
    def q(conn):
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return dict(row) if row else None
    if isinstance(engine_or_conn, Connection):
        return q(engine_or_conn)
    with engine_or_conn.connect() as conn:
        return q(conn)


def list_jobs(engine: Engine, status: JobStatus | None = None, kind: str | None = None, limit: int = 50) -> list[dict]:
    stmt = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(jobs.c.status == status)
    if kind:
        stmt = stmt.where(jobs.c.kind == kind)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def update_job(engine: Engine, job_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=now(), **values))


def start_attempt(engine: Engine, job_id: int, worker: str) -> dict | None:
    """Count an attempt and mark the job running. Returns the job after the update, or None if it must not run
    (already finished, or cancelled). Attempts are counted *before* running, so a worker killed mid-task still
    uses up an attempt and a crash-looping job stops after max_attempts."""
    with engine.begin() as conn:
        job = get_job(conn, job_id)
        if job is None or job["status"] in TERMINAL:
            return None
        if job["cancel_requested"]:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                status=JobStatus.CANCELLED, finished_at=now(), updated_at=now()))
            return None
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(
            status=JobStatus.RUNNING, attempts=jobs.c.attempts + 1, worker=worker, error=None,
            started_at=sa.func.coalesce(jobs.c.started_at, now()), updated_at=now()))
        return get_job(conn, job_id)


def finish_job(engine: Engine, job_id: int, status: JobStatus, *, result: dict | None = None,
               error: str | None = None) -> None:
    values: dict[str, Any] = {"status": status, "finished_at": now(), "updated_at": now()}
    if result is not None:
        values["result"] = result
    if error is not None:
        values["error"] = error
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).where(jobs.c.status.notin_(TERMINAL)).values(**values))


def set_progress(engine: Engine, job_id: int, done: int, total: int | None, message: str | None = None) -> None:
    values: dict[str, Any] = {"progress_done": int(done), "updated_at": now()}
    if total is not None:
        values["progress_total"] = int(total)
    if message is not None:
        values["message"] = message[:500]
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


def add_progress(conn: Connection, job_id: int, n: int) -> None:
    conn.execute(jobs.update().where(jobs.c.id == job_id).values(
        progress_done=jobs.c.progress_done + int(n), updated_at=now()))


def request_cancel(engine: Engine, job_id: int) -> dict | None:
    """Queued jobs are cancelled at once; running ones stop at their next progress point."""
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).where(jobs.c.status.notin_(TERMINAL))
                     .values(cancel_requested=True, updated_at=now()))
        conn.execute(jobs.update().where(jobs.c.id == job_id).where(jobs.c.status == JobStatus.QUEUED)
                     .values(status=JobStatus.CANCELLED, finished_at=now(), updated_at=now()))
        return get_job(conn, job_id)


def reset_for_retry(engine: Engine, job_id: int) -> dict | None:
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(
            status=JobStatus.QUEUED, attempts=0, error=None, result=None, cancel_requested=False, finished_at=None,
            progress_done=0, updated_at=now()))
        conn.execute(job_shards.update().where(job_shards.c.job_id == job_id)
                     .where(job_shards.c.status != ShardStatus.DONE)
                     .values(status=ShardStatus.QUEUED, attempts=0, error=None))
        return get_job(conn, job_id)


def is_cancel_requested(engine: Engine, job_id: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())


# --- shards (fan-out of inference and ingest) ------------------------------------------------------------------

def create_shards(engine: Engine, job_id: int, ranges: list[tuple[int, int, int]],
                  work: list[dict] | None = None) -> list[dict]:
    """Create the shard rows once; a redelivered parent finds them and reuses them. ``work``, one per range,
    is what a shard does beyond its range (an ingest shard's files)."""
    with engine.begin() as conn:
        existing = conn.execute(sa.select(job_shards).where(job_shards.c.job_id == job_id)
                                .order_by(job_shards.c.shard)).mappings().all()
        if not existing and ranges:
            conn.execute(job_shards.insert(), [
                {"job_id": job_id, "shard": i, "source_id_lo": int(lo), "source_id_hi": int(hi), "n_stars": int(n),
                 "status": ShardStatus.QUEUED, "attempts": 0, "updated_at": now(), "work": work[i] if work else None}
                for i, (lo, hi, n) in enumerate(ranges)])
            existing = conn.execute(sa.select(job_shards).where(job_shards.c.job_id == job_id)
                                    .order_by(job_shards.c.shard)).mappings().all()
        return [dict(r) for r in existing]


def get_shards(engine: Engine, job_id: int) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(job_shards).where(job_shards.c.job_id == job_id)
                                             .order_by(job_shards.c.shard)).mappings()]


def start_shard(engine: Engine, job_id: int, shard: int, worker: str) -> dict | None:
    with engine.begin() as conn:
        row = conn.execute(sa.select(job_shards).where(job_shards.c.job_id == job_id)
                           .where(job_shards.c.shard == shard)).mappings().first()
        if row is None or row["status"] in SHARD_SETTLED:    # a redelivery of a shard that already ended
            return None
        conn.execute(job_shards.update().where(job_shards.c.job_id == job_id).where(job_shards.c.shard == shard)
                     .values(status=ShardStatus.RUNNING, attempts=job_shards.c.attempts + 1, worker=worker,
                             updated_at=now()))
        return dict(row, attempts=row["attempts"] + 1)


def finish_shard(conn: Connection, job_id: int, shard: int, status: ShardStatus, error: str | None = None,
                 **values: Any) -> None:
    """End (or requeue) a shard; ``values``: its timings, its ``result``."""
    conn.execute(job_shards.update().where(job_shards.c.job_id == job_id).where(job_shards.c.shard == shard)
                 .values(status=status, error=error, updated_at=now(), **values))


def complete_if_all_shards_settled(engine: Engine, job_id: int, status: JobStatus = JobStatus.SUCCEEDED,
                                   result: dict | None = None, error: str | None = None) -> bool:
    """End the parent job once its last shard has settled (done, or failed in a job whose shards fail alone);
    atomic, so two shards finishing together agree on one ending."""
    pending = (sa.select(job_shards.c.shard).where(job_shards.c.job_id == job_id)
               .where(job_shards.c.status.notin_(SHARD_SETTLED)))
    with engine.begin() as conn:
        res = conn.execute(jobs.update().where(jobs.c.id == job_id).where(jobs.c.status == JobStatus.RUNNING)
                           .where(~sa.exists(pending)).values(status=status, result=result, error=error,
                                                              finished_at=now(), updated_at=now()))
        return res.rowcount == 1
