"""Helpers shared by the CLI commands: database checks, submitting and following jobs, exit codes.

Exit codes: 0 done (or queued), 1 the job failed or was cancelled, 2 bad usage, 3 database or broker
unreachable / schema out of date, 4 no such job or model.
"""
from __future__ import annotations

import sys
import time

import click

from shared.settings import get_settings

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 1, 2, 3, 4


def _engine(check: bool = True):
    from db.engine import DatabaseError, check_schema, get_engine
    engine = get_engine()
    if check:
        try:
            check_schema(engine)
        except DatabaseError as exc:
            _die(str(exc), EXIT_UNAVAILABLE)
    return engine


def _die(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run_job(kind: str, params: dict, *, wait: bool = False, label: str | None = None) -> dict:
    """Submit a job; in-process it runs now with a progress line; in stack mode follow it if --wait."""
    from shared import jobs
    from xpvae.progress import ProgressLine
    engine = _engine()
    settings = get_settings()
    bar = ProgressLine(label or kind)
    try:
        if not settings.embedded:
            jobs.check_broker()
        job_id = jobs.submit(kind, params, engine=engine, on_progress=bar)
    except jobs.BrokerUnavailable as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    finally:
        bar.close()
    if not settings.embedded and not wait:
        click.echo(f"queued job {job_id} ({kind}); follow it with `xpvae job show {job_id}` or `xpvae job wait {job_id}`")
        return {"id": job_id, "status": "queued"}
    return follow(job_id, label=label or kind)


def follow(job_id: int, label: str = "job", poll: float = 1.0) -> dict:
    from db import jobs as jobs_db
    from xpvae.progress import ProgressLine
    engine = _engine(check=False)
    bar = ProgressLine(f"[job {job_id}] {label}")
    while True:
        job = jobs_db.get_job(engine, job_id)
        if job is None:
            _die(f"no job {job_id}", EXIT_NOT_FOUND)
        if job["status"] in jobs_db.TERMINAL:
            break
        bar(job["progress_done"], job["progress_total"], job["message"] or job["status"])
        time.sleep(poll)
    bar.close()
    if job["status"] != "succeeded":
        click.secho(f"job {job_id} {job['status']}: {(job['error'] or '').strip().splitlines()[0] if job['error'] else ''}",
                    fg="red", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"job {job_id} succeeded", err=True)
    return job
