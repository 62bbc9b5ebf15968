"""The `xpvae` command line. The same commands work in both modes: with XPVAE_BROKER_URL set they enqueue jobs
for the workers (add --wait to follow one); without it they run the job in this process.

Exit codes: 0 done (or queued), 1 the job failed, was cancelled or only partly succeeded, 2 bad usage,
3 database or broker unreachable / schema out of date, 4 no such job or model.
"""
from __future__ import annotations

import json

import click

from db.job_status import RETRYABLE, JobStatus
from shared.settings import get_settings
from xpvae.jobrun import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, _die, _engine, follow


class _Main(click.Group):
    """Every failure a user can meet ends in one line and its exit code, never a traceback (XPVAE_DEBUG=1
    shows the traceback of an unexpected error)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 — the last line of defence against tracebacks
            code, message = _one_line(exc)
            if code == EXIT_FAILED and _debug():
                raise
            _die(message, code)


def _one_line(exc: Exception) -> tuple[int, str]:
    """(exit code, message) for an error that escaped a command. Imports here: `xpvae --help` stays light."""
    import sqlalchemy as sa

    from db.engine import DatabaseError
    from db.models_registry import ModelNotFound
    from jobqueue.runner import BrokerUnavailable
    from shared.errors import InputError
    from shared.settings import SettingsError
    if isinstance(exc, ModelNotFound):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, (SettingsError, InputError)):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, (DatabaseError, BrokerUnavailable)):
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        detail = str(exc.orig) if exc.orig else str(exc)
        return EXIT_UNAVAILABLE, "lost the database: " + detail.strip().split("\n")[0]
    line = (str(exc).strip().splitlines() or [""])[0]
    return EXIT_FAILED, f"unexpected {type(exc).__name__}: {line} (XPVAE_DEBUG=1 shows the traceback)"


def _debug() -> bool:
    try:
        return get_settings().debug
    except ValueError:           # the settings themselves are what failed
        return False


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="xpvae")
def main() -> None:
    """xpvae: the scatter VAE of Gaia XP spectra, and the [α/M] bimodality analysis.

    Embedded default (no XPVAE_BROKER_URL): jobs run in this process against a SQLite file under XPVAE_HOME.
    Stack mode: set XPVAE_DATABASE_URL and XPVAE_BROKER_URL (see `make up`)."""


# --- database ------------------------------------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """Database schema (alembic migrations)."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of XPVAE_DATABASE_URL to the newest revision."""
    from db.engine import DatabaseError, check_connection, describe, get_engine
    from db.migrate import head_revision, upgrade
    engine = get_engine(get_settings().database_url)
    try:
        check_connection(engine, create=True)
    except DatabaseError as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    upgrade(engine)
    click.echo(f"{describe(engine)} is at migration {head_revision()}")


@db_group.command("status")
def db_status() -> None:
    """Show the database URL and whether its schema is current."""
    from db.engine import DatabaseError, check_connection, describe, get_engine
    from db.migrate import current_revision, head_revision
    engine = get_engine(get_settings().database_url)
    try:
        check_connection(engine)
    except DatabaseError as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    cur, head = current_revision(engine), head_revision()
    click.echo(f"database: {describe(engine)}\nmigration: {cur or 'none'} (newest {head})")
    if cur != head:
        _die("schema out of date: run `xpvae db upgrade`", EXIT_UNAVAILABLE)


# --- jobs ----------------------------------------------------------------------------------------------------
def _fmt_progress(job: dict) -> str:
    if job["progress_total"]:
        return f"{job['progress_done']}/{job['progress_total']}"
    return str(job["progress_done"] or "")


@main.command("jobs")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]),
              help="partial: ran to the end but part of its work failed (e.g. some files of an ingest)")
@click.option("--kind")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def jobs_list(status, kind, limit, as_json) -> None:
    """List jobs, newest first."""
    from db import job_store as jobs_db
    rows = jobs_db.list_jobs(_engine(), status=status, kind=kind, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    click.echo(f"{'id':>5}  {'kind':<22} {'status':<10} {'tries':>5}  {'progress':<15} created")
    for j in rows:
        click.echo(f"{j['id']:>5}  {j['kind']:<22} {j['status']:<10} {j['attempts']:>5}  {_fmt_progress(j):<15} "
                   f"{str(j['created_at'])[:19]}")


@main.group("job")
def job_group() -> None:
    """Inspect, follow, cancel or retry one job."""


JOB_ID = click.argument("job_id", type=int)


def _get_job_or_die(job_id: int) -> dict:
    from db import job_store as jobs_db
    from shared.params import INT64_MAX
    if not 1 <= job_id <= INT64_MAX:          # no such id can exist (and the database cannot compare it)
        _die(f"no job {job_id}", EXIT_NOT_FOUND)
    job = jobs_db.get_job(_engine(), job_id)
    if job is None:
        _die(f"no job {job_id}", EXIT_NOT_FOUND)
    return job


@job_group.command("show")
@JOB_ID
@click.option("--json", "as_json", is_flag=True)
def job_show(job_id, as_json) -> None:
    """Everything about one job."""
    job = _get_job_or_die(job_id)
    if as_json:
        click.echo(json.dumps(job, default=str, indent=1))
        return
    for key in ("id", "kind", "queue", "status", "attempts", "max_attempts", "worker", "created_at", "started_at",
                "finished_at", "message"):
        click.echo(f"{key:>13}: {job[key]}")
    click.echo(f"{'progress':>13}: {_fmt_progress(job)}")
    click.echo(f"{'params':>13}: {json.dumps(job['params'])}")
    if job["result"]:
        click.echo(f"{'result':>13}: {json.dumps(job['result'], default=str)}")
    if job["error"]:
        click.echo(f"{'error':>13}: {job['error'].strip()}")


@job_group.command("wait")
@JOB_ID
def job_wait(job_id) -> None:
    """Follow a job with a progress line until it ends (exit 1 if it did not succeed)."""
    job = _get_job_or_die(job_id)
    follow(job_id, label=job["kind"])


@job_group.command("cancel")
@JOB_ID
def job_cancel(job_id) -> None:
    """Cancel a queued job now, a running one at its next progress point."""
    from db import job_store as jobs_db
    _get_job_or_die(job_id)
    job = jobs_db.request_cancel(_engine(), job_id)
    click.echo(f"job {job_id}: {job['status']}{' (cancel requested)' if job['status'] == JobStatus.RUNNING else ''}")


@job_group.command("retry")
@JOB_ID
@click.option("--wait", is_flag=True, help="follow the job until it ends")
def job_retry(job_id, wait) -> None:
    """Run a partial, failed or cancelled job again (finished shards and checkpoints are reused)."""
    from db import job_store as jobs_db
    from jobqueue import runner
    from xpvae.services import load_service_of
    job = _get_job_or_die(job_id)
    if job["status"] not in RETRYABLE:
        _die(f"job {job_id} is {job['status']}; only {', '.join(RETRYABLE)} jobs can be retried", EXIT_USAGE)
    engine = _engine()
    settings = get_settings()
    load_service_of(job["kind"])
    jobs_db.reset_for_retry(engine, job_id)
    try:
        from xpvae.progress import ProgressLine
        bar = ProgressLine(job["kind"])
        runner.dispatch(job_id, settings=settings, engine=engine, on_progress=bar)
        bar.close()
    except runner.BrokerUnavailable as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    if settings.embedded or wait:
        follow(job_id, label=job["kind"])
    else:
        click.echo(f"job {job_id} queued again")


# --- models --------------------------------------------------------------------------------------------------
@main.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json) -> None:
    """List registered models."""
    from db.models_registry import list_models
    rows = list_models(_engine())
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    click.echo(f"{'id':>4}  {'name':<28} {'kind':<15} {'n_train':>8}  summary")
    for m in rows:
        s = m["summary"] or {}
        brief = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()
                          if k in ("epochs", "test_nll", "val_nll", "zscore_std_test"))
        click.echo(f"{m['id']:>4}  {m['name']:<28} {m['kind']:<15} {m['n_train'] or '':>8}  {brief}")


def _register_subcommands() -> None:
    """Commands that live with their services (imported lazily so `xpvae --help` stays fast)."""
    from xpvae import commands
    commands.register(main)
    from xpvae.export_cmd import export
    main.add_command(export)


_register_subcommands()

if __name__ == "__main__":
    main()
