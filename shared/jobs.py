"""The job runner: one code path for both ways to run.

`submit()` writes a `jobs` row, commits, then dispatches: with a broker it publishes the job id to the kind's
queue (Celery over RabbitMQ); without one (the embedded default) it runs the very same `execute()` in-process.
Handlers are plain functions ``handler(ctx: JobContext) -> dict`` in each service's domain module, named here
by import path so that shared/ never imports a service.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from db import job_store as jobs_db
from db.engine import get_engine
from shared.errors import InputError, is_transient
from shared.params import check_params
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    queue: str
    handler: str          # "module:function"
    max_attempts: int = 3
    # A kind that fans out (`fan_out`): shard_handler(ctx, shard_row) does one shard and marks it done;
    # shard_summary(ctx, shards) -> the job's result, once every shard has settled (it may call ctx.incomplete).
    shard_handler: str | None = None
    shard_summary: str | None = None
    # True: a shard that fails for good fails alone, the others run on and the job ends 'partial' (an ingest's
    # bad file). False: it fails the job at once (an inference shard would fail the same way everywhere).
    shards_fail_alone: bool = False


KINDS: dict[str, JobKind] = {
    "ingest": JobKind("ingest", "ingest.service:run_ingest_job", shard_handler="ingest.service:run_ingest_shard",
                      shard_summary="ingest.service:summarise_ingest_job", shards_fail_alone=True),
    "train": JobKind("trainer", "trainer.service:run_train_job"),
    "train_baseline": JobKind("trainer", "trainer.service:run_baseline_job"),
    "infer": JobKind("inferencer", "inferencer.service:run_infer_job",
                     shard_handler="inferencer.service:run_infer_shard",
                     shard_summary="inferencer.service:summarise_infer_job"),
    "analyze_alpha": JobKind("analysis", "analysis.service:run_alpha_job"),
    "analyze_alpha_catalogue": JobKind("analysis", "analysis.service:run_alpha_catalogue_job"),
    "analyze_reconstruction": JobKind("analysis", "analysis.service:run_reconstruction_job"),
}


class JobCancelled(Exception):
    """Raised inside a handler at a progress point after `xpvae job cancel`."""


class JobDeferred(Exception):
    """Raised by a fan-out handler: its shards are queued and the last one to finish completes the job."""


class BrokerUnavailable(RuntimeError):
    pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _resolve(path: str) -> Callable:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class JobContext:
    """What a handler gets: its parameters, the database, the settings, and progress/cancel hooks."""
    job_id: int
    kind: str
    params: dict
    attempt: int
    engine: Engine
    settings: Settings
    on_progress: Callable[[int, int | None, str], None] | None = None   # in-process UI (progress bar)
    outcome: tuple[str, str] | None = None     # (status, reason) set by `incomplete`
    _last_write: float = field(default=0.0, repr=False)
    _progress_engine: Engine | None = field(default=None, repr=False)

    def incomplete(self, reason: str, *, nothing_done: bool = False) -> None:
        """The handler finished but not all of its work did (an ingest whose files partly failed): its result
        is kept and the job ends 'partial' ('failed' when ``nothing_done``), never 'succeeded', and is not
        retried — what failed would fail again."""
        self.outcome = ("failed" if nothing_done else "partial", reason)

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


def retry_backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1-based): exponential, capped; XPVAE_RETRY_BACKOFF_S scales it."""
    return min(get_settings().retry_backoff_s * 2 ** (attempt - 1), 300.0)


def execute(job_id: int, *, engine: Engine | None = None, on_progress=None) -> str:
    """Run one attempt of a job. Returns the job's status afterwards: 'succeeded', 'failed', 'cancelled',
    'running' (deferred to shards) or 'retry' (failed this attempt, attempts left: the caller re-runs it later).
    Idempotent: a finished job is left alone, so a redelivered message does nothing twice."""
    settings = get_settings()
    engine = engine or get_engine()
    job = jobs_db.start_attempt(engine, job_id, worker_name())
    if job is None:
        current = jobs_db.get_job(engine, job_id)
        return current["status"] if current else "missing"
    kind = KINDS.get(job["kind"])
    if kind is None:
        jobs_db.finish_job(engine, job_id, "failed", error=f"unknown job kind {job['kind']!r}")
        return "failed"
    if job["attempts"] > job["max_attempts"]:
        # Only reached after a worker died mid-task on every attempt (a crash loop): stop redelivering.
        jobs_db.finish_job(engine, job_id, "failed", error=(job["error"] or "") +
                           f"\ngave up: {job['max_attempts']} attempts started and none finished (worker crashed?)")
        return "failed"
    ctx = JobContext(job_id, job["kind"], dict(job["params"]), job["attempts"], engine, settings, on_progress)
    try:
        check_params(job["kind"], ctx.params)      # again here: rows may come from anywhere, not only submit()
        result = _resolve(kind.handler)(ctx)
    except JobDeferred:
        return "running"
    except JobCancelled:
        jobs_db.finish_job(engine, job_id, "cancelled", error="cancelled by request")
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 — every failure is recorded on the job, then retried or failed
        retry = is_transient(exc) and job["attempts"] < job["max_attempts"]
        text = failure_line(exc)
        if retry:
            log.warning("job %s attempt %s failed, will retry: %s", job_id, job["attempts"], text)
            jobs_db.update_job(engine, job_id, status="queued", error=text)
            return "retry"
        jobs_db.finish_job(engine, job_id, "failed", error=failure_record(exc, text, job["attempts"]))
        return "failed"
    status, reason = ctx.outcome or ("succeeded", None)
    jobs_db.finish_job(engine, job_id, status, result=result or {}, error=reason)
    return status


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


def run_in_process(job_id: int, *, engine: Engine | None = None, on_progress=None) -> str:
    """The embedded default: execute with retries and backoff in this process until the job settles."""
    while True:
        status = execute(job_id, engine=engine, on_progress=on_progress)
        if status != "retry":
            return status
        job = jobs_db.get_job(engine or get_engine(), job_id)
        time.sleep(retry_backoff(job["attempts"]))


def submit(kind: str, params: dict, *, engine: Engine | None = None, on_progress=None,
           max_attempts: int | None = None) -> int:
    """Create a job and dispatch it: publish after commit (stack), or run it now in-process (embedded)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)}")
    check_params(kind, params)      # refused at the door: no job row for parameters that cannot work
    settings = get_settings()
    engine = engine or get_engine()
    job_id = jobs_db.create_job(engine, kind, KINDS[kind].queue, params,
                                max_attempts=max_attempts or KINDS[kind].max_attempts)
    dispatch(job_id, engine=engine, on_progress=on_progress, settings=settings)
    return job_id


def dispatch(job_id: int, *, engine: Engine | None = None, on_progress=None, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    engine = engine or get_engine()
    if settings.embedded:
        run_in_process(job_id, engine=engine, on_progress=on_progress)
        return
    job = jobs_db.get_job(engine, job_id)
    try:
        publish(f"{job['queue']}.run_job", [job_id], job["queue"])
    except BrokerUnavailable as exc:
        jobs_db.finish_job(engine, job_id, "failed",
                           error=f"not queued: {exc} (fix the broker, then `xpvae job retry {job_id}`)")
        raise


def publish(task_name: str, args: list[Any], queue: str, countdown: float | None = None) -> None:
    """Send one message; a clear BrokerUnavailable if RabbitMQ cannot be reached."""
    from kombu.exceptions import OperationalError

    from shared.celery_app import app
    try:
        app.send_task(task_name, args=args, queue=queue, countdown=countdown, retry=True,
                      retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1})
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach the message broker at {_safe_broker()}: {exc}") from None


def _safe_broker() -> str:
    from kombu.utils.url import maybe_sanitize_url
    return maybe_sanitize_url(get_settings().broker_url or "")


def check_broker(timeout: float = 3.0) -> None:
    from shared.celery_app import app
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise BrokerUnavailable(f"cannot reach the message broker at {_safe_broker()}: {exc}") from None


# --- fan-out (inference and ingest shards) -------------------------------------------------------------------

def execute_shard(job_id: int, shard: int, *, engine: Engine | None = None, on_progress=None) -> str:
    """Run one shard: the handler writes its rows idempotently and marks the shard done; the last shard to
    settle completes the job. Returns 'done', 'retry' (run it again later), 'failed' or 'cancelled'."""
    engine = engine or get_engine()
    job = jobs_db.get_job(engine, job_id)
    if job is None or job["status"] in jobs_db.TERMINAL:
        return job["status"] if job else "missing"
    kind = KINDS[job["kind"]]
    row = jobs_db.start_shard(engine, job_id, shard, worker_name())
    if row is None:       # already settled: a redelivery after the worker marked it but died before the ack
        _complete_if_last(engine, job_id)
        return "done"
    ctx = JobContext(job_id, job["kind"], dict(job["params"]), row["attempts"], engine, get_settings(), on_progress)
    if row["attempts"] > job["max_attempts"]:
        return _fail_shard(ctx, kind, shard, "worker crashed on every attempt",
                           f"shard {shard}: gave up after {job['max_attempts']} attempts")
    try:
        _resolve(kind.shard_handler or "")(ctx, row)
    except JobCancelled:
        jobs_db.finish_job(engine, job_id, "cancelled", error="cancelled by request")
        return "cancelled"
    except Exception as exc:  # noqa: BLE001
        text = f"shard {shard}: {failure_line(exc)}"
        if is_transient(exc) and row["attempts"] < job["max_attempts"]:
            with engine.begin() as conn:
                jobs_db.finish_shard(conn, job_id, shard, "queued", text)
            return "retry"
        return _fail_shard(ctx, kind, shard, text, failure_record(exc, text, row["attempts"]))
    _complete_if_last(engine, job_id)
    return "done"


def _fail_shard(ctx: JobContext, kind: JobKind, shard: int, line: str, record: str) -> str:
    """A shard that will not succeed: alone (its siblings run on, the job ends partial) or with its job."""
    with ctx.engine.begin() as conn:
        jobs_db.finish_shard(conn, ctx.job_id, shard, "failed", line)
    if kind.shards_fail_alone:
        _complete_if_last(ctx.engine, ctx.job_id)
    else:
        jobs_db.finish_job(ctx.engine, ctx.job_id, "failed", error=record)
    return "failed"


def _complete_if_last(engine: Engine, job_id: int) -> None:
    """Complete the job if every shard has settled. A shard that still saw a sibling running leaves the job
    alone: the sibling finishes after it, sees every shard settled and writes the whole result (completing here
    with a partial or empty result would win the race and lose the summary)."""
    shards = jobs_db.get_shards(engine, job_id)
    if any(s["status"] not in jobs_db.SHARD_SETTLED for s in shards):
        return
    job = jobs_db.get_job(engine, job_id)
    if job is None or job["status"] in jobs_db.TERMINAL:
        return
    ctx = JobContext(job_id, job["kind"], dict(job["params"]), job["attempts"], engine, get_settings())
    result = _resolve(KINDS[job["kind"]].shard_summary or "")(ctx, shards)
    status, reason = ctx.outcome or ("succeeded", None)
    jobs_db.complete_if_all_shards_settled(engine, job_id, status, result, reason)


def fan_out(ctx: JobContext, ranges: list[tuple[int, int, int]], work: list[dict] | None = None) -> None:
    """Create shards for `ctx`'s job and run them: in-process one after another, or one message per shard on
    the kind's queue. ``ranges``: (lo, hi, units of progress) per shard; ``work``: what each does beyond it."""
    shards = jobs_db.create_shards(ctx.engine, ctx.job_id, ranges, work)
    jobs_db.set_progress(ctx.engine, ctx.job_id, int(sum(s["n_stars"] for s in shards if s["status"] == "done")),
                         int(sum(s["n_stars"] for s in shards)), f"{len(shards)} shards")
    if not shards:
        return
    if ctx.settings.embedded:
        for s in shards:
            while execute_shard(ctx.job_id, s["shard"], engine=ctx.engine, on_progress=ctx.on_progress) == "retry":
                time.sleep(retry_backoff(s["attempts"] + 1))
        ctx.defer()   # the last shard has completed (or failed) the job already
    queue = KINDS[ctx.kind].queue
    for s in shards:
        if s["status"] not in jobs_db.SHARD_SETTLED:
            publish(f"{queue}.run_shard", [ctx.job_id, s["shard"]], queue)
    ctx.defer()
