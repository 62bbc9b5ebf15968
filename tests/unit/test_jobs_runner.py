"""The job runner on both backends, in-process: statuses, retries with backoff, crash loops, cancellation,
idempotent redelivery and the job commands of the CLI. (The same runner under real Celery workers is covered
by tests/integration.)"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from db import jobs as jobs_db
from shared import jobs

CALLS: dict[str, int] = {}


def always_fails(ctx):
    CALLS["fail"] = CALLS.get("fail", 0) + 1
    raise RuntimeError("the disk is on fire")


def fails_once(ctx):
    CALLS["flaky"] = CALLS.get("flaky", 0) + 1
    if ctx.attempt == 1:
        raise OSError("transient")
    return {"ok": True, "attempt": ctx.attempt}


def counts(ctx):
    CALLS["count"] = CALLS.get("count", 0) + 1
    for i in range(3):
        ctx.progress(i + 1, 3, f"step {i + 1}")
    return {"n": CALLS["count"]}


def cancels_itself(ctx):
    jobs_db.request_cancel(ctx.engine, ctx.job_id)
    ctx._last_write = -1e9       # force the next progress call to write and check
    ctx.progress(1, 2)
    raise AssertionError("not reached: progress must raise JobCancelled")


@pytest.fixture(autouse=True)
def test_kinds(monkeypatch):
    from shared.settings import get_settings
    monkeypatch.setenv("XPVAE_RETRY_BACKOFF_S", "0")
    get_settings.cache_clear()
    CALLS.clear()
    for name, fn in (("t_fail", "always_fails"), ("t_flaky", "fails_once"), ("t_count", "counts"),
                     ("t_cancel", "cancels_itself")):
        monkeypatch.setitem(jobs.KINDS, name, jobs.JobKind("analysis", f"test_jobs_runner:{fn}"))
    yield
    get_settings.cache_clear()


def test_success_records_result_progress_and_timestamps(engine):
    job_id = jobs.submit("t_count", {"x": 1}, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == "succeeded" and job["result"] == {"n": 1} and job["attempts"] == 1
    assert job["progress_done"] == 3 and job["progress_total"] == 3
    assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]


def test_always_failing_job_is_retried_then_failed_with_the_error(engine):
    job_id = jobs.submit("t_fail", {}, engine=engine, max_attempts=3)
    job = jobs_db.get_job(engine, job_id)
    assert CALLS["fail"] == 3
    assert job["status"] == "failed" and job["attempts"] == 3
    assert "RuntimeError: the disk is on fire" in job["error"]


def test_transient_failure_succeeds_on_retry(engine):
    job = jobs_db.get_job(engine, jobs.submit("t_flaky", {}, engine=engine))
    assert job["status"] == "succeeded" and job["result"] == {"ok": True, "attempt": 2} and CALLS["flaky"] == 2


def test_attempts_that_never_finish_stop_a_crash_loop(engine):
    """A worker that dies mid-task leaves the attempt counted but unfinished; once max_attempts attempts have
    started, the next delivery gives up instead of running the handler again."""
    job_id = jobs_db.create_job(engine, "t_count", "analysis", {}, max_attempts=2)
    for _ in range(2):
        assert jobs_db.start_attempt(engine, job_id, "dead-worker") is not None   # …and the worker dies
    assert jobs.execute(job_id, engine=engine) == "failed"
    job = jobs_db.get_job(engine, job_id)
    assert "gave up" in job["error"] and CALLS.get("count", 0) == 0


def test_redelivered_finished_job_does_not_run_twice(engine):
    job_id = jobs.submit("t_count", {}, engine=engine)
    assert jobs.execute(job_id, engine=engine) == "succeeded"
    assert CALLS["count"] == 1


def test_cancel_queued_and_running_jobs(engine):
    queued = jobs_db.create_job(engine, "t_count", "analysis", {})
    assert jobs_db.request_cancel(engine, queued)["status"] == "cancelled"
    assert jobs.execute(queued, engine=engine) == "cancelled" and "count" not in CALLS
    running = jobs.submit("t_cancel", {}, engine=engine)
    job = jobs_db.get_job(engine, running)
    assert job["status"] == "cancelled" and job["attempts"] == 1


def test_unknown_kind_is_refused(engine):
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.submit("no_such_kind", {}, engine=engine)


def test_job_commands(sqlite_url, monkeypatch):
    from db.engine import get_engine
    from shared.settings import get_settings
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        engine = get_engine()
        failed = jobs.submit("t_fail", {"why": "demo"}, engine=engine, max_attempts=1)
        runner = CliRunner()
        out = runner.invoke(main, ["jobs", "--kind", "t_fail"])
        assert out.exit_code == 0 and f"{failed:>5}  t_fail" in out.output and "failed" in out.output
        show = runner.invoke(main, ["job", "show", str(failed)])
        assert show.exit_code == 0 and "the disk is on fire" in show.output and '"why": "demo"' in show.output
        retry = runner.invoke(main, ["job", "retry", str(failed)])
        assert retry.exit_code == 1 and CALLS["fail"] == 2          # ran again, failed again: exit 1
        assert runner.invoke(main, ["job", "show", "999999"]).exit_code == 4
        done = jobs.submit("t_count", {}, engine=engine)
        again = runner.invoke(main, ["job", "retry", str(done)])
        assert again.exit_code == 2 and "only failed or cancelled" in again.output
    finally:
        get_settings.cache_clear()
        get_engine.cache_clear()
