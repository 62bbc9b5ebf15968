"""The job runner: one code path for both ways to run.

`submit()` writes a `jobs` row, commits, then dispatches: with a broker it publishes the job id to the kind's
queue (Celery over RabbitMQ); without one (the embedded default) it runs the very same `execute()` in-process.
Handlers are plain functions ``handler(ctx: JobContext) -> dict`` in each service's domain module, registered
by the service itself (jobqueue/registry.py). The settings are passed in by the caller (the CLI, the worker)
and reach the handler as ``ctx.settings``.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from db import job_store as jobs_db
from db.engine import get_engine
from db.job_status import SHARD_SETTLED, TERMINAL, JobStatus, ShardStatus
from jobqueue import registry
from jobqueue.registry import JobKind, ShardHandler, Summariser
from shared.errors import InputError, is_transient
from shared.params import check_params
from shared.settings import Settings

log = logging.getLogger(__name__)

ProgressHook = Callable[[int, "int | None", str], None]


class Outcome(str, Enum):
    """What a run of a job or shard ends in when that is not a status of the job itself."""
    RETRY = "retry"          # failed this attempt, attempts left: the caller runs it again after a backoff
    MISSING = "missing"      # no such job (or shard)

    def __str__(self) -> str:
        return self.value


RunResult = JobStatus | ShardStatus | Outcome


class JobCancelled(Exception):
    """Raised inside a handler at a progress point after `xpvae job cancel`."""


class JobDeferred(Exception):
    """Raised by a fan-out handler: its shards are queued and the last one to finish completes the job."""


class BrokerUnavailable(RuntimeError):
    pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobContext:
    """What a handler gets: its parameters, the database, the settings, and progress/cancel hooks."""
    job_id: int
    kind: str
    params: dict
    attempt: int
    engine: Engine
    settings: Settings
    on_progress: ProgressHook | None = None   # in-process UI (progress bar)
    outcome: tuple[JobStatus, str] | None = None     # (status, reason) set by `incomplete`
    _last_write: float = field(default=0.0, repr=False)
    _progress_engine: Engine | None = field(default=None, repr=False)

    def incomplete(self, reason: str, *, nothing_done: bool = False) -> None:
        """The handler finished but not all of its work did (an ingest whose files partly failed): its result
        is kept and the job ends 'partial' ('failed' when ``nothing_done``), never 'succeeded', and is not
        retried — what failed would fail again."""
        self.outcome = (JobStatus.FAILED if nothing_done else JobStatus.PARTIAL, reason)

    def progress(self, done: int, total: int | None = None, message: str = "") -> None:
        """Record progress (throttled to a few writes a second) and honour cancellation."""
        if self.on_progress:
            self.on_progress(done, total, message)
        t = time.monotonic()
        if t - self._last_write >= 0.5 or (total is not None and done >= total):
            self._last_write = t
            self._write_progress(done, total, message or None)
            self.check_cancelled()

    def say(self, message: str) -> None:
        """A progress message without counts, throttled like `progress` and a cancellation point: a shard's
        (the job's count is the sum of its finished shards, which a running shard must not overwrite)."""
        t = time.monotonic()
        if t - self._last_write >= 0.5:
            self._last_write = t
            self._write(lambda engine: jobs_db.update_job(engine, self.job_id, message=message[:500]))
            self.check_cancelled()

    def _write_progress(self, done: int, total: int | None, message: str | None) -> None:
        self._write(lambda engine: jobs_db.set_progress(engine, self.job_id, done, total, message))

    def _write(self, write: Callable[[Engine], None]) -> None:
        """Progress is advisory. On SQLite the handler may itself hold the database's single write lock (an
        ingest writes a whole file in one transaction), so progress goes through a connection that gives up
        at once instead of waiting for a lock this very thread holds."""
        if self.engine.dialect.name != "sqlite":
            write(self.engine)
            return
        if self._progress_engine is None:
            from db.engine import create_engine
            self._progress_engine = create_engine(self.engine.url.render_as_string(hide_password=False),
                                                  busy_timeout_ms=20)
        try:
            write(self._progress_engine)
        except OperationalError:
            pass

    def check_cancelled(self) -> None:
        if jobs_db.is_cancel_requested(self.engine, self.job_id):
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def defer(self) -> None:
        raise JobDeferred()


def retry_backoff(settings: Settings, attempt: int) -> float:
    """Seconds before retry `attempt` (1-based): exponential, capped; XPVAE_RETRY_BACKOFF_S scales it."""
    return min(settings.retry_backoff_s * 2 ** (attempt - 1), 300.0)


def execute(job_id: int, *, settings: Settings, engine: Engine | None = None,
            on_progress: ProgressHook | None = None) -> RunResult:
    """Run one attempt of a job. Returns the job's status afterwards (succeeded, partial, failed, cancelled, or
    running when deferred to shards), or Outcome.RETRY (failed this attempt, attempts left: the caller re-runs
    it later). Idempotent: a finished job is left alone, so a redelivered message does nothing twice."""
    engine = engine or get_engine(settings.database_url)
    job = jobs_db.start_attempt(engine, job_id, worker_name())
    if job is None:
        current = jobs_db.get_job(engine, job_id)
        return JobStatus(current["status"]) if current else Outcome.MISSING
    kind = registry.get(job["kind"])
    if kind is None:
        jobs_db.finish_job(engine, job_id, JobStatus.FAILED, error=registry.unknown_kind(job["kind"]))
        return JobStatus.FAILED
    if job["attempts"] > job["max_attempts"]:
        # Only reached after a worker died mid-task on every attempt (a crash loop): stop redelivering.
        jobs_db.finish_job(engine, job_id, JobStatus.FAILED, error=(job["error"] or "") + (
            f"\ngave up: {job['max_attempts']} attempts started and none finished (worker crashed?)"))
        return JobStatus.FAILED
    ctx = JobContext(job_id, job["kind"], dict(job["params"]), job["attempts"], engine, settings, on_progress)
    try:
        check_params(job["kind"], ctx.params)      # again here: rows may come from anywhere, not only submit()
        result = kind.handler(ctx)
    except JobDeferred:
        return JobStatus.RUNNING
    except JobCancelled:
        jobs_db.finish_job(engine, job_id, JobStatus.CANCELLED, error="cancelled by request")
        return JobStatus.CANCELLED
    except Exception as exc:  # every failure is recorded on the job, then retried or failed
        return _attempt_failed(engine, job, exc)
    status, reason = ctx.outcome or (JobStatus.SUCCEEDED, None)
    jobs_db.finish_job(engine, job_id, status, result=result or {}, error=reason)
    return status


def _attempt_failed(engine: Engine, job: dict, exc: Exception) -> RunResult:
    """Record a failed attempt: queued again for a transient failure with attempts left, else failed."""
    text = failure_line(exc)
    if is_transient(exc) and job["attempts"] < job["max_attempts"]:
        log.warning("job %s attempt %s failed, will retry: %s", job["id"], job["attempts"], text)
        jobs_db.update_job(engine, job["id"], status=JobStatus.QUEUED, error=text)
        return Outcome.RETRY
    jobs_db.finish_job(engine, job["id"], JobStatus.FAILED, error=failure_record(exc, text, job["attempts"]))
    return JobStatus.FAILED


def failure_line(exc: BaseException) -> str:
    """What a user sees of a failure: one line. An InputError says itself (it names the flag to change);
    anything else is unexpected and keeps its type for the bug report."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if isinstance(exc, InputError) and line else f"{type(exc).__name__}: {line}".rstrip(": ")


def failure_record(exc: BaseException, line: str, attempts: int) -> str:
    """The job's error: the one line, why it ends here, and the traceback for `xpvae job show`."""
    why = (f"(failed on each of {attempts} attempts)" if is_transient(exc) else
           "(not retried: the same job would fail the same way; change what the line says and submit again)")
    return f"{line}\n{why}\n{traceback.format_exc(limit=8)}"


def run_in_process(job_id: int, *, settings: Settings, engine: Engine | None = None,
                   on_progress: ProgressHook | None = None) -> RunResult:
    """The embedded default: execute with retries and backoff in this process until the job settles."""
    engine = engine or get_engine(settings.database_url)
    while True:
        status = execute(job_id, settings=settings, engine=engine, on_progress=on_progress)
        if status is not Outcome.RETRY:
            return status
        job = jobs_db.get_job(engine, job_id) or {"attempts": 1}
        time.sleep(retry_backoff(settings, job["attempts"]))


def submit(kind: str, params: dict, *, settings: Settings, engine: Engine | None = None,
           on_progress: ProgressHook | None = None, max_attempts: int | None = None) -> int:
    """Create a job and dispatch it: publish after commit (stack), or run it now in-process (embedded)."""
    job_kind = registry.get(kind)
    if job_kind is None:
        raise ValueError(registry.unknown_kind(kind))
    check_params(kind, params)      # refused at the door: no job row for parameters that cannot work
    engine = engine or get_engine(settings.database_url)
    job_id = jobs_db.create_job(engine, kind, job_kind.queue, params,
                                max_attempts=max_attempts or job_kind.max_attempts)
    dispatch(job_id, settings=settings, engine=engine, on_progress=on_progress)
    return job_id


def dispatch(job_id: int, *, settings: Settings, engine: Engine | None = None,
             on_progress: ProgressHook | None = None) -> None:
    engine = engine or get_engine(settings.database_url)
    if settings.embedded:
        run_in_process(job_id, settings=settings, engine=engine, on_progress=on_progress)
        return
    job = jobs_db.get_job(engine, job_id)
    if job is None:
        raise ValueError(f"no job {job_id}")
    try:
        publish(settings, f"{job['queue']}.run_job", [job_id], job["queue"])
    except BrokerUnavailable as exc:
        jobs_db.finish_job(engine, job_id, JobStatus.FAILED,
                           error=f"not queued: {exc} (fix the broker, then `xpvae job retry {job_id}`)")
        raise


def publish(settings: Settings, task_name: str, args: list[Any], queue: str, countdown: float | None = None) -> None:
    """Send one message; a clear BrokerUnavailable if RabbitMQ cannot be reached."""
    from kombu.exceptions import OperationalError as BrokerError

    from jobqueue.celery_app import producer
    try:
        producer(settings.broker_url).send_task(
            task_name, args=args, queue=queue, countdown=countdown, retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1})
    except (BrokerError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach the message broker at {_safe_broker(settings)}: {exc}") from None


def _safe_broker(settings: Settings) -> str:
    from kombu.utils.url import maybe_sanitize_url
    return str(maybe_sanitize_url(settings.broker_url or ""))


def check_broker(settings: Settings, timeout: float = 3.0) -> None:
    from jobqueue.celery_app import producer
    try:
        with producer(settings.broker_url).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # whatever kombu raises, the user needs one line
        raise BrokerUnavailable(f"cannot reach the message broker at {_safe_broker(settings)}: {exc}") from None


# --- the worker's side of a message ---------------------------------------------------------------------------

def run_job_message(settings: Settings, job_id: int) -> RunResult:
    """A worker's turn at `<queue>.run_job`: execute; on a retry publish a new message after the backoff (a new
    message rather than a Celery retry: the job row, not Celery, counts the attempts)."""
    engine = get_engine(settings.database_url)
    outcome = execute(job_id, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    if outcome is Outcome.RETRY and job is not None:
        publish(settings, f"{job['queue']}.run_job", [job_id], job["queue"],
                countdown=retry_backoff(settings, job["attempts"]))
    return outcome


def run_shard_message(settings: Settings, job_id: int, shard: int) -> RunResult:
    """A worker's turn at `<queue>.run_shard`: run the shard; on a retry publish it again after the backoff."""
    engine = get_engine(settings.database_url)
    outcome = execute_shard(job_id, shard, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    if outcome is Outcome.RETRY and job is not None:
        publish(settings, f"{job['queue']}.run_shard", [job_id, shard], job["queue"],
                countdown=retry_backoff(settings, 1))
    return outcome


# --- fan-out (shards) -----------------------------------------------------------------------------------------

def _shard_parts(kind_name: str) -> tuple[JobKind, ShardHandler, Summariser]:
    kind = registry.get(kind_name)
    if kind is None or kind.shard_handler is None or kind.summarise is None:
        raise ValueError(f"job kind {kind_name!r} has no shard handler registered")
    return kind, kind.shard_handler, kind.summarise


def execute_shard(job_id: int, shard: int, *, settings: Settings, engine: Engine | None = None,
                  on_progress: ProgressHook | None = None) -> RunResult:
    """Run one shard: the handler writes its rows idempotently and marks the shard done; the last shard to
    settle completes the job. Returns ShardStatus.DONE, Outcome.RETRY (run it again later), ShardStatus.FAILED
    or the job's status when it ended (failed, cancelled, ...)."""
    engine = engine or get_engine(settings.database_url)
    job = jobs_db.get_job(engine, job_id)
    if job is None or job["status"] in TERMINAL:
        return JobStatus(job["status"]) if job else Outcome.MISSING
    kind, handler, _ = _shard_parts(job["kind"])
    row = jobs_db.start_shard(engine, job_id, shard, worker_name())
    ctx = JobContext(job_id, job["kind"], dict(job["params"]), row["attempts"] if row else job["attempts"],
                     engine, settings, on_progress)
    if row is None:       # already settled: a redelivery after the worker marked it but died before the ack
        _complete_if_last(ctx)
        return ShardStatus.DONE
    if row["attempts"] > job["max_attempts"]:
        return _fail_shard(ctx, kind, shard, "worker crashed on every attempt",
                           f"shard {shard}: gave up after {job['max_attempts']} attempts")
    try:
        handler(ctx, row)
    except JobCancelled:
        jobs_db.finish_job(engine, job_id, JobStatus.CANCELLED, error="cancelled by request")
        return JobStatus.CANCELLED
    except Exception as exc:  # recorded on the shard (and on the job when it ends here)
        text = f"shard {shard}: {failure_line(exc)}"
        if is_transient(exc) and row["attempts"] < job["max_attempts"]:
            with engine.begin() as conn:
                jobs_db.finish_shard(conn, job_id, shard, ShardStatus.QUEUED, text)
            return Outcome.RETRY
        return _fail_shard(ctx, kind, shard, text, failure_record(exc, text, row["attempts"]))
    _complete_if_last(ctx)
    return ShardStatus.DONE


def _fail_shard(ctx: JobContext, kind: JobKind, shard: int, line: str, record: str) -> RunResult:
    """A shard that will not succeed: alone (its siblings run on, the job ends partial) or with its job."""
    with ctx.engine.begin() as conn:
        jobs_db.finish_shard(conn, ctx.job_id, shard, ShardStatus.FAILED, line)
    if kind.shards_fail_alone:
        _complete_if_last(ctx)
        return ShardStatus.FAILED
    jobs_db.finish_job(ctx.engine, ctx.job_id, JobStatus.FAILED, error=record)
    return JobStatus.FAILED


def _complete_if_last(ctx: JobContext) -> None:
    """Complete the job if every shard has settled. A shard that still saw a sibling running leaves the job
    alone: the sibling finishes after it, sees every shard settled and writes the whole result (completing here
    with a partial or empty result would win the race and lose the summary)."""
    shards = jobs_db.get_shards(ctx.engine, ctx.job_id)
    if any(s["status"] not in SHARD_SETTLED for s in shards):
        return
    job = jobs_db.get_job(ctx.engine, ctx.job_id)
    if job is None or job["status"] in TERMINAL:
        return
    result = _shard_parts(ctx.kind)[2](ctx, shards)
    status, reason = ctx.outcome or (JobStatus.SUCCEEDED, None)
    jobs_db.complete_if_all_shards_settled(ctx.engine, ctx.job_id, status, result, reason)


def fan_out(ctx: JobContext, ranges: list[tuple[int, int, int]], work: list[dict] | None = None) -> None:
    """Create shards for `ctx`'s job and run them: in-process one after another, or one message per shard on
    the kind's queue. ``ranges``: (lo, hi, units of progress) per shard; ``work``: what each does beyond it.
    Does not return: the last shard to settle completes the job."""
    queue = _shard_parts(ctx.kind)[0].queue       # fails before any shard row if the kind cannot run shards
    shards = jobs_db.create_shards(ctx.engine, ctx.job_id, ranges, work)
    jobs_db.set_progress(ctx.engine, ctx.job_id,
                         int(sum(s["n_stars"] for s in shards if s["status"] == ShardStatus.DONE)),
                         int(sum(s["n_stars"] for s in shards)), f"{len(shards)} shards")
    if not shards:
        return
    if ctx.settings.embedded:
        for s in shards:
            while execute_shard(ctx.job_id, s["shard"], settings=ctx.settings, engine=ctx.engine,
                                on_progress=ctx.on_progress) is Outcome.RETRY:
                time.sleep(retry_backoff(ctx.settings, s["attempts"] + 1))
        ctx.defer()   # the last shard has completed (or failed) the job already
    for s in shards:
        if s["status"] not in SHARD_SETTLED:
            publish(ctx.settings, f"{queue}.run_shard", [ctx.job_id, s["shard"]], queue)
    ctx.defer()
