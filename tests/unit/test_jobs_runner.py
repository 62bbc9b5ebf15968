"""The job runner on both backends, in-process: statuses, retries with backoff, crash loops, cancellation,
idempotent redelivery and the job commands of the CLI. (The same runner under real Celery workers is covered
by tests/integration.)"""
from __future__ import annotations

import errno

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db import job_store as jobs_db
from db.job_status import JobStatus, ShardStatus
from jobqueue import registry, runner
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
    CALLS.clear()
    for name, fn in (("t_fail", always_fails), ("t_flaky", fails_once), ("t_count", counts),
                     ("t_cancel", cancels_itself), ("t_bug", has_a_bug), ("t_refuse", refuses),
                     ("t_half", half_done)):
        monkeypatch.setitem(registry.KINDS, name, registry.JobKind(name, "analysis", fn))


@pytest.fixture
def settings(settings_for):
    return settings_for(retry_backoff_s=0.0)


def test_success_records_result_progress_and_timestamps(engine, settings):
    job_id = runner.submit("t_count", {"x": 1}, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == JobStatus.SUCCEEDED and job["result"] == {"n": 1} and job["attempts"] == 1
    assert job["progress_done"] == 3 and job["progress_total"] == 3
    assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]


def test_always_failing_transient_job_is_retried_then_failed_with_the_error(engine, settings):
    job_id = runner.submit("t_fail", {}, settings=settings, engine=engine, max_attempts=3)
    job = jobs_db.get_job(engine, job_id)
    assert CALLS["fail"] == 3
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 3
    assert job["error"].splitlines()[0] == "OSError: [Errno 5] the disk is on fire"
    assert "each of 3 attempts" in job["error"]


def test_deterministic_failures_fail_at_once(engine, settings):
    """An error that would recur (a bug, a refused input) is not retried; an InputError's own words are the
    first line (it names the flag), the traceback stays in the record for `xpvae job show`."""
    bug = jobs_db.get_job(engine, runner.submit("t_bug", {}, settings=settings, engine=engine, max_attempts=3))
    assert CALLS["bug"] == 1 and bug["status"] == JobStatus.FAILED and bug["attempts"] == 1
    assert bug["error"].splitlines()[0].startswith("TypeError: unsupported operand")
    refused = jobs_db.get_job(engine, runner.submit("t_refuse", {}, settings=settings, engine=engine, max_attempts=3))
    assert CALLS["refuse"] == 1 and refused["status"] == JobStatus.FAILED and refused["attempts"] == 1
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


def test_partial_job_keeps_its_result_and_is_not_retried(engine, settings):
    job = jobs_db.get_job(engine, runner.submit("t_half", {}, settings=settings, engine=engine, max_attempts=3))
    assert CALLS["half"] == 1 and job["status"] == JobStatus.PARTIAL and job["attempts"] == 1
    assert job["result"] == {"files_ok": 1, "files_failed": 1}
    assert job["error"] == "1 of 2 files failed, first: b.csv: truncated"
    again = runner.execute(job["id"], settings=settings, engine=engine)
    assert again == JobStatus.PARTIAL and CALLS["half"] == 1      # terminal: not run again


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
def test_bad_parameters_are_refused_at_submit_and_at_run(engine, settings, kind, params, flag):
    """For API callers: submit() refuses before any job row exists; a row that got in some other way fails
    on its first attempt, never reaching the handler, with the flag named."""
    with pytest.raises(InputError, match=flag.replace("(", r"\(").replace(")", r"\)")):
        runner.submit(kind, params, settings=settings, engine=engine)
    assert jobs_db.list_jobs(engine) == []
    job_id = jobs_db.create_job(engine, kind, registry.KINDS[kind].queue, params)
    assert runner.execute(job_id, settings=settings, engine=engine) == JobStatus.FAILED
    job = jobs_db.get_job(engine, job_id)
    assert job["attempts"] == 1 and flag in job["error"].splitlines()[0]


def test_transient_failure_succeeds_on_retry(engine, settings):
    job = jobs_db.get_job(engine, runner.submit("t_flaky", {}, settings=settings, engine=engine))
    assert job["status"] == JobStatus.SUCCEEDED and job["result"] == {"ok": True, "attempt": 2} and CALLS["flaky"] == 2


def test_attempts_that_never_finish_stop_a_crash_loop(engine, settings):
    """A worker that dies mid-task leaves the attempt counted but unfinished; once max_attempts attempts have
    started, the next delivery gives up instead of running the handler again."""
    job_id = jobs_db.create_job(engine, "t_count", "analysis", {}, max_attempts=2)
    for _ in range(2):
        assert jobs_db.start_attempt(engine, job_id, "dead-worker") is not None   # …and the worker dies
    assert runner.execute(job_id, settings=settings, engine=engine) == JobStatus.FAILED
    job = jobs_db.get_job(engine, job_id)
    assert "gave up" in job["error"] and CALLS.get("count", 0) == 0


def test_redelivered_finished_job_does_not_run_twice(engine, settings):
    job_id = runner.submit("t_count", {}, settings=settings, engine=engine)
    assert runner.execute(job_id, settings=settings, engine=engine) == JobStatus.SUCCEEDED
    assert CALLS["count"] == 1


def test_cancel_queued_and_running_jobs(engine, settings):
    queued = jobs_db.create_job(engine, "t_count", "analysis", {})
    assert jobs_db.request_cancel(engine, queued)["status"] == JobStatus.CANCELLED
    assert runner.execute(queued, settings=settings, engine=engine) == JobStatus.CANCELLED and "count" not in CALLS
    running = runner.submit("t_cancel", {}, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, running)
    assert job["status"] == JobStatus.CANCELLED and job["attempts"] == 1


def test_unknown_kind_is_refused(engine, settings):
    with pytest.raises(ValueError, match="unknown job kind"):
        runner.submit("no_such_kind", {}, settings=settings, engine=engine)


def test_job_commands(sqlite_url, settings_for, monkeypatch):
    """The CLI reads its settings from the environment, as a user's shell gives them."""
    from db.engine import get_engine
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XPVAE_RETRY_BACKOFF_S", "0")
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    settings = settings_for(database_url=sqlite_url, retry_backoff_s=0.0)
    engine = get_engine(sqlite_url)
    failed = runner.submit("t_fail", {"why": "demo"}, settings=settings, engine=engine, max_attempts=1)
    cli = CliRunner()
    out = cli.invoke(main, ["jobs", "--kind", "t_fail"])
    assert out.exit_code == 0 and f"{failed:>5}  t_fail" in out.output and "failed" in out.output
    show = cli.invoke(main, ["job", "show", str(failed)])
    assert show.exit_code == 0 and "the disk is on fire" in show.output and '"why": "demo"' in show.output
    retry = cli.invoke(main, ["job", "retry", str(failed)])
    assert retry.exit_code == 1 and CALLS["fail"] == 2          # ran again, failed again: exit 1
    assert cli.invoke(main, ["job", "show", "999999"]).exit_code == 4
    done = runner.submit("t_count", {}, settings=settings, engine=engine)
    again = cli.invoke(main, ["job", "retry", str(done)])
    assert again.exit_code == 2 and "only partial, failed, cancelled jobs" in again.output
    half = runner.submit("t_half", {}, settings=settings, engine=engine)
    listed = cli.invoke(main, ["jobs", "--status", "partial"])
    assert listed.exit_code == 0 and f"{half:>5}  t_half                 partial" in listed.output
    waited = cli.invoke(main, ["job", "wait", str(half)])
    assert waited.exit_code == 1
    assert f"job {half} partial: 1 of 2 files failed, first: b.csv: truncated" in waited.output
    for bad_id, code in (("99999999999999999999999", 4), ("0", 4), ("abc", 2)):
        out = cli.invoke(main, ["job", "show", bad_id])
        assert out.exit_code == code and isinstance(out.exception, SystemExit), (bad_id, out.output)


def _done_shard(ctx, row):
    with ctx.engine.begin() as conn:
        jobs_db.finish_shard(conn, ctx.job_id, row["shard"], ShardStatus.DONE)


def _summary(ctx, shards):
    return {"n_shards": len(shards)}


def test_last_shard_writes_the_result_when_two_finish_together(engine, settings, monkeypatch):
    """Shard 0 finishes while shard 1 is still running, and shard 1 commits 'done' just before shard 0 would
    complete the job: the job must end with the whole summary, written by shard 1, never with the empty result
    that shard 0 computed while shard 1 was pending."""
    kind = registry.JobKind("t_shards", "analysis", counts, shard_handler=_done_shard, summarise=_summary)
    monkeypatch.setitem(registry.KINDS, "t_shards", kind)
    job_id = jobs_db.create_job(engine, "t_shards", "analysis", {})
    jobs_db.start_attempt(engine, job_id, "w")
    jobs_db.create_shards(engine, job_id, [(0, 1, 10), (2, 3, 10)])
    jobs_db.start_shard(engine, job_id, 1, "w1")
    real_complete = jobs_db.complete_if_all_shards_settled

    def sibling_commits_first(eng, jid, *args):
        with eng.begin() as conn:                          # shard 1 commits between shard 0's check and update
            jobs_db.finish_shard(conn, jid, 1, ShardStatus.DONE)
        return real_complete(eng, jid, *args)

    monkeypatch.setattr(jobs_db, "complete_if_all_shards_settled", sibling_commits_first)
    assert runner.execute_shard(job_id, 0, settings=settings, engine=engine) == ShardStatus.DONE
    monkeypatch.setattr(jobs_db, "complete_if_all_shards_settled", real_complete)
    with engine.begin() as conn:                           # shard 1 as its own worker would finish it
        jobs_db.finish_shard(conn, job_id, 1, ShardStatus.DONE)
    runner._complete_if_last(runner.JobContext(job_id, "t_shards", {}, 1, engine, settings))
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == JobStatus.SUCCEEDED and job["result"] == {"n_shards": 2}


def test_registration_refuses_what_cannot_run(monkeypatch):
    """A kind on a queue no worker consumes, shards without a summary, or one name registered twice
    differently are programming errors, refused when the service registers them."""
    monkeypatch.setattr(registry, "KINDS", {})
    with pytest.raises(ValueError, match="unknown queue"):
        registry.register("t_x", "gpu", counts)
    with pytest.raises(ValueError, match="both shard_handler and summarise"):
        registry.register("t_x", "analysis", counts, shard_handler=_done_shard)
    registry.register("t_x", "analysis", counts)
    registry.register("t_x", "analysis", counts)          # a module imported twice: the same kind, no error
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("t_x", "trainer", counts)


def test_a_kind_without_shards_cannot_fan_out(engine, settings, monkeypatch):
    def fans_out(ctx):
        runner.fan_out(ctx, [(0, 1, 1)])
    monkeypatch.setitem(registry.KINDS, "t_fan", registry.JobKind("t_fan", "analysis", fans_out))
    job = jobs_db.get_job(engine, runner.submit("t_fan", {}, settings=settings, engine=engine))
    assert job["status"] == JobStatus.FAILED and "has no shard handler registered" in job["error"]
    assert jobs_db.get_shards(engine, job["id"]) == []


def test_no_services_loaded_says_so(engine, settings, monkeypatch):
    monkeypatch.setattr(registry, "KINDS", {})
    with pytest.raises(ValueError, match="no job kinds registered"):
        runner.submit("infer", {"model_id": 1}, settings=settings, engine=engine)


def test_worker_app_is_built_from_the_settings_it_is_given(engine, settings_for):
    """make_celery_app(settings): the broker of those settings, a run_job and a run_shard task per queue, and
    the task body runs the job with those settings (its database, not this process's environment)."""
    from jobqueue.celery_app import make_celery_app
    url = engine.url.render_as_string(hide_password=False)
    settings = settings_for(database_url=url, broker_url="memory://", retry_backoff_s=0.0)
    app = make_celery_app(settings)
    assert app.conf.broker_url == "memory://"
    assert {f"{q}.{t}" for q in registry.QUEUES for t in ("run_job", "run_shard")} <= set(app.tasks)
    job_id = jobs_db.create_job(engine, "t_count", "analysis", {})
    assert app.tasks["analysis.run_job"](job_id) == "succeeded"        # the task body, run here
    assert jobs_db.get_job(engine, job_id)["result"] == {"n": 1}
