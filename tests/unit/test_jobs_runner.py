"""The job runner on both backends, in-process: statuses, retries with backoff, crash loops, cancellation,
idempotent redelivery and the job commands of the CLI. (The same runner under real Celery workers is covered
by tests/integration.)"""
from __future__ import annotations

import errno

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db import job_store as jobs_db
from shared import jobs
from shared.errors import InputError, is_transient

CALLS: dict[str, int] = {}


def always_fails(ctx):
    CALLS["fail"] = CALLS.get("fail", 0) + 1
    raise OSError(errno.EIO, "the disk is on fire")


def has_a_bug(ctx):
    CALLS["bug"] = CALLS.get("bug", 0) + 1
    return {"x": 1} / 0


def refuses(ctx):
    CALLS["refuse"] = CALLS.get("refuse", 0) + 1
    raise InputError("--thing 7 is too many: pass --thing 3 or less")


def half_done(ctx):
    CALLS["half"] = CALLS.get("half", 0) + 1
    ctx.incomplete("1 of 2 files failed, first: b.csv: truncated")
    return {"files_ok": 1, "files_failed": 1}


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
                     ("t_cancel", "cancels_itself"), ("t_bug", "has_a_bug"), ("t_refuse", "refuses"),
                     ("t_half", "half_done")):
        monkeypatch.setitem(jobs.KINDS, name, jobs.JobKind("analysis", f"test_jobs_runner:{fn}"))
    yield
    get_settings.cache_clear()


def test_success_records_result_progress_and_timestamps(engine):
    job_id = jobs.submit("t_count", {"x": 1}, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == "succeeded" and job["result"] == {"n": 1} and job["attempts"] == 1
    assert job["progress_done"] == 3 and job["progress_total"] == 3
    assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]


def test_always_failing_transient_job_is_retried_then_failed_with_the_error(engine):
    job_id = jobs.submit("t_fail", {}, engine=engine, max_attempts=3)
    job = jobs_db.get_job(engine, job_id)
    assert CALLS["fail"] == 3
    assert job["status"] == "failed" and job["attempts"] == 3
    assert job["error"].splitlines()[0] == "OSError: [Errno 5] the disk is on fire"
    assert "each of 3 attempts" in job["error"]


def test_deterministic_failures_fail_at_once(engine):
    """An error that would recur (a bug, a refused input) is not retried; an InputError's own words are the
    first line (it names the flag), the traceback stays in the record for `xpvae job show`."""
    bug = jobs_db.get_job(engine, jobs.submit("t_bug", {}, engine=engine, max_attempts=3))
    assert CALLS["bug"] == 1 and bug["status"] == "failed" and bug["attempts"] == 1
    assert bug["error"].splitlines()[0].startswith("TypeError: unsupported operand")
    refused = jobs_db.get_job(engine, jobs.submit("t_refuse", {}, engine=engine, max_attempts=3))
    assert CALLS["refuse"] == 1 and refused["status"] == "failed" and refused["attempts"] == 1
    lines = refused["error"].splitlines()
    assert lines[0] == "--thing 7 is too many: pass --thing 3 or less"
    assert lines[1].startswith("(not retried") and "Traceback (most recent call last)" in refused["error"]


@pytest.mark.parametrize("exc, transient", [
    (OSError(errno.EIO, "i/o"), True), (ConnectionResetError(), True), (TimeoutError(), True),
    (FileNotFoundError(2, "gone"), False), (PermissionError(13, "no"), False),
    (sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
    (sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (ValueError("bad"), False), (InputError("--x"), False), (ZeroDivisionError(), False),
    (RuntimeError("wrapped"), False),
])
def test_transient_or_deterministic(exc, transient):
    assert is_transient(exc) is transient


def test_cause_decides_a_wrapped_failure():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("could not load") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_partial_job_keeps_its_result_and_is_not_retried(engine):
    job = jobs_db.get_job(engine, jobs.submit("t_half", {}, engine=engine, max_attempts=3))
    assert CALLS["half"] == 1 and job["status"] == "partial" and job["attempts"] == 1
    assert job["result"] == {"files_ok": 1, "files_failed": 1}
    assert job["error"] == "1 of 2 files failed, first: b.csv: truncated"
    assert jobs.execute(job["id"], engine=engine) == "partial" and CALLS["half"] == 1   # terminal: not run again


@pytest.mark.parametrize("kind, params, flag", [
    ("train", {"selection": {}, "train": {"epochs": 0}}, "--epochs"),
    ("train", {"selection": {}, "train": {"epochs": -1}}, "--epochs"),
    ("train", {"selection": {}, "train": {"batch_size": 0}}, "--batch-size"),
    ("train", {"selection": {}, "train": {"lr": -1}}, "--lr"),
    ("train", {"selection": {}, "train": {"lr": "nan"}}, "--lr"),        # JSON has no NaN: a string
    ("train", {"selection": {}, "model": {"latent_dim": 0}}, "--latent-dim"),
    ("train", {"selection": {}, "model": {"latent_dim": 17}}, "--latent-dim"),
    ("train", {"selection": {}, "model": {"hidden": [90, 0, 10]}}, "--hidden"),
    ("train", {"selection": {"limit": -3}}, "--limit"),
    ("train", {"selection": {"source_id_lo": 9, "source_id_hi": 3}}, "--source-id-min"),
    ("train", {"selection": {"quality": "shiny"}}, "--quality"),
    ("train", {"selection": {}, "train": {"epoch": 5}}, "unknown parameter(s) epoch"),
    ("train_baseline", {"selection": {}, "train": {"seed": -1}}, "--seed"),
    ("infer", {"model_id": 1, "shards": -2}, "--shards"),
    ("infer", {"model_id": 1, "batch_size": 0}, "--batch-size"),
    ("infer", {"model_id": 1, "selection": {"limit": 0}}, "--limit"),
    ("analyze_alpha", {"model_id": 1, "n_folds": 1}, "--folds"),
    ("analyze_alpha", {"model_id": 1, "n_boot": True}, "--bootstrap"),
    ("analyze_reconstruction", {"model_id": 1, "split": "train"}, "--split"),
    ("analyze_reconstruction", {"model_id": 1, "max_stars": 0}, "--max-stars"),
    ("ingest", {"source": "gaia-xp", "paths": []}, "PATHS"),
    ("ingest", {"source": "gaia", "paths": ["a.csv"]}, "SOURCE"),
])
def test_bad_parameters_are_refused_at_submit_and_at_run(engine, kind, params, flag):
    """For API callers: submit() refuses before any job row exists; a row that got in some other way fails
    on its first attempt, never reaching the handler, with the flag named."""
    with pytest.raises(InputError, match=flag.replace("(", r"\(").replace(")", r"\)")):
        jobs.submit(kind, params, engine=engine)
    assert jobs_db.list_jobs(engine) == []
    job_id = jobs_db.create_job(engine, kind, jobs.KINDS[kind].queue, params)
    assert jobs.execute(job_id, engine=engine) == "failed"
    job = jobs_db.get_job(engine, job_id)
    assert job["attempts"] == 1 and flag in job["error"].splitlines()[0]


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
        assert again.exit_code == 2 and "only partial, failed, cancelled jobs" in again.output
        half = jobs.submit("t_half", {}, engine=engine)
        listed = runner.invoke(main, ["jobs", "--status", "partial"])
        assert listed.exit_code == 0 and f"{half:>5}  t_half                 partial" in listed.output
        waited = runner.invoke(main, ["job", "wait", str(half)])
        assert waited.exit_code == 1
        assert f"job {half} partial: 1 of 2 files failed, first: b.csv: truncated" in waited.output
        for bad_id, code in (("99999999999999999999999", 4), ("0", 4), ("abc", 2)):
            out = runner.invoke(main, ["job", "show", bad_id])
            assert out.exit_code == code and isinstance(out.exception, SystemExit), (bad_id, out.output)
    finally:
        get_settings.cache_clear()
        get_engine.cache_clear()


def _done_shard(ctx, row):
    with ctx.engine.begin() as conn:
        jobs_db.finish_shard(conn, ctx.job_id, row["shard"], "done")


def _summary(ctx, shards):
    return {"n_shards": len(shards)}


def test_last_shard_writes_the_result_when_two_finish_together(engine, monkeypatch):
    """Shard 0 finishes while shard 1 is still running, and shard 1 commits 'done' just before shard 0 would
    complete the job: the job must end with the whole summary, written by shard 1, never with the empty result
    that shard 0 computed while shard 1 was pending."""
    monkeypatch.setitem(jobs.KINDS, "t_shards", jobs.JobKind("inferencer", "unused:unused",
                                                            shard_handler="test_jobs_runner:_done_shard",
                                                            shard_summary="test_jobs_runner:_summary"))
    job_id = jobs_db.create_job(engine, "t_shards", "inferencer", {})
    jobs_db.start_attempt(engine, job_id, "w")
    jobs_db.create_shards(engine, job_id, [(0, 1, 10), (2, 3, 10)])
    jobs_db.start_shard(engine, job_id, 1, "w1")
    real_complete = jobs_db.complete_if_all_shards_settled

    def sibling_commits_first(eng, jid, *args):
        with eng.begin() as conn:                          # shard 1 commits between shard 0's check and update
            jobs_db.finish_shard(conn, jid, 1, "done")
        return real_complete(eng, jid, *args)

    monkeypatch.setattr(jobs_db, "complete_if_all_shards_settled", sibling_commits_first)
    assert jobs.execute_shard(job_id, 0, engine=engine) == "done"
    monkeypatch.setattr(jobs_db, "complete_if_all_shards_settled", real_complete)
    with engine.begin() as conn:                           # shard 1 as its own worker would finish it
        jobs_db.finish_shard(conn, job_id, 1, "done")
    jobs._complete_if_last(engine, job_id)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == "succeeded" and job["result"] == {"n_shards": 2}
