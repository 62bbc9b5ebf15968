"""Helpers shared by the CLI commands: database checks, submitting and following jobs, exit codes.

Exit codes: 0 done (or queued), 1 the job failed, was cancelled or only partly succeeded, 2 bad usage,
3 database or broker unreachable / schema out of date, 4 no such job or model.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import click

from db.job_status import TERMINAL, JobStatus
from shared.errors import InputError
from shared.settings import get_settings

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 1, 2, 3, 4


class Spec(click.ParamType):
    """A click type from a shared.params spec: the CLI refuses exactly what the services refuse (exit 2)."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.name = spec.describe()

    def get_metavar(self, *args, **kwargs) -> str:
        return getattr(self.spec, "metavar", "VALUE")

    def convert(self, value, param, ctx):
        if not isinstance(value, str):       # a default, already a value
            return value
        try:
            return self.spec.parse(value)
        except InputError as exc:
            self.fail(getattr(exc, "reason", str(exc)), param, ctx)


def _engine(check: bool = True):
    """The process's engine for the settings' database (checked to be at the newest migration)."""
    from db.engine import DatabaseError, check_schema, get_engine
    engine = get_engine(get_settings().database_url)
    if check:
        try:
            check_schema(engine)
        except DatabaseError as exc:
            _die(str(exc), EXIT_UNAVAILABLE)
    return engine


def _die(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run_job(kind: str, params: dict, *, wait: bool = False, label: str | None = None,
            show_result: bool = True) -> dict:
    """Submit a job; in-process it runs now with a progress line; in stack mode follow it if --wait. Exits 1
    unless it succeeds (see `follow`)."""
    from jobqueue import runner
    from xpvae.progress import ProgressLine
    from xpvae.services import load_service_of
    load_service_of(kind)
    engine = _engine()
    settings = get_settings()
    bar = ProgressLine(label or kind)
    try:
        if not settings.embedded:
            runner.check_broker(settings)
        job_id = runner.submit(kind, params, settings=settings, engine=engine, on_progress=bar)
    except runner.BrokerUnavailable as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    except InputError as exc:        # what the CLI's own checks let through, the runner refuses
        _die(str(exc), EXIT_USAGE)
    finally:
        bar.close()
    if not settings.embedded and not wait:
        click.echo(f"queued job {job_id} ({kind}); follow it with `xpvae job show {job_id}` "
                   f"or `xpvae job wait {job_id}`")
        return {"id": job_id, "status": JobStatus.QUEUED}
    return follow(job_id, label=label or kind, show_result=show_result)


def follow(job_id: int, label: str = "job", poll: float = 1.0, show_result: bool = True) -> dict:
    """Wait for a job to end, print its result summary (``show_result``) and return it if it succeeded;
    otherwise say why in one line and exit 1 (a partial job's summary is printed first: it lists what failed)."""
    from db import job_store as jobs_db
    from xpvae.progress import ProgressLine
    engine = _engine(check=False)
    bar = ProgressLine(f"[job {job_id}] {label}")
    while True:
        job = jobs_db.get_job(engine, job_id)
        if job is None:
            _die(f"no job {job_id}", EXIT_NOT_FOUND)
        if job["status"] in TERMINAL:
            break
        bar(job["progress_done"], job["progress_total"], job["message"] or job["status"])
        time.sleep(poll)
    bar.close()
    if job["result"] and show_result:
        from xpvae.summaries import describe_result
        click.echo(describe_result(job["kind"], job["result"]))
    if job["status"] != JobStatus.SUCCEEDED:
        reason = (job["error"] or "").strip().splitlines()
        click.secho(f"job {job_id} {job['status']}: {reason[0] if reason else ''}", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"job {job_id} succeeded", err=True)
    return job
