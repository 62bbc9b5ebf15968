"""Reliability of the stack under failure, with real worker processes killed by SIGKILL.

Each test states the failure it injects and the guarantee it checks."""
from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa
from seed import seed_survey, train_small_model
from stackutil import REPO, wait_for

from db import job_store as jobs_db
from db.job_status import JobStatus, ShardStatus
from jobqueue import runner


def _job(engine, job_id):
    return jobs_db.get_job(engine, job_id)


def test_worker_killed_mid_shard_still_gives_one_row_per_star(stack, pg_engine):
    """SIGKILL an inference worker while it holds a shard: the message is redelivered (acks_late), the shard
    is recomputed, and the results table has exactly one row per star."""
    seed_survey(pg_engine, 1200)
    model_id = train_small_model(pg_engine, stack.settings)
    w1 = stack.start_worker("inferencer")
    job_id = runner.submit("infer", {"model_id": model_id, "selection": {}, "shards": 2, "batch_size": 64,
                                   "batch_pause_s": 0.25}, settings=stack.settings, engine=pg_engine)
    wait_for(lambda: any(s["status"] == ShardStatus.RUNNING for s in jobs_db.get_shards(pg_engine, job_id)),
             what="a running shard", stack=stack)
    stack.kill(w1)
    stack.start_worker("inferencer")
    job = wait_for(lambda: (j := _job(pg_engine, job_id))["status"] in jobs_db.TERMINAL and j,
                   timeout=180, what="the job to finish", stack=stack)
    assert job["status"] == JobStatus.SUCCEEDED, job["error"]
    with pg_engine.connect() as conn:
        n, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT source_id) FROM inference_results "
                                           "WHERE model_id = :m"), {"m": model_id}).one()
        expected = conn.execute(sa.text("SELECT count(*) FROM xp_spectra s JOIN photometry p USING (source_id) "
                                        "WHERE NOT s.bp_missing AND NOT s.rp_missing")).scalar()
        attempts = conn.execute(sa.text("SELECT max(attempts) FROM job_shards WHERE job_id = :j"),
                                {"j": job_id}).scalar()
    assert n == distinct == expected
    assert attempts >= 2          # the killed shard really ran twice


def test_transient_failures_are_retried_deterministic_ones_are_not_and_the_worker_goes_on(stack, pg_engine):
    """Three jobs on one inference worker whose statements give up after 300 ms waiting for a lock
    (PGOPTIONS, a server setting): a job whose model artifact is gone fails on its first attempt (retrying
    cannot bring the file back); a job whose results table stays locked by another session fails with the
    lock timeout on each of its attempts (a transient error: retried with backoff); once the lock is
    released, the same worker serves the next job."""
    seed_survey(pg_engine, 600)
    gone = train_small_model(pg_engine, stack.settings, name="doomed")
    good = train_small_model(pg_engine, stack.settings, name="fine")
    with pg_engine.connect() as conn:
        path = conn.execute(sa.text("SELECT path FROM models WHERE id = :m"), {"m": gone}).scalar()
    os.unlink(path)
    stack.env["PGOPTIONS"] = "-c lock_timeout=300"
    stack.start_worker("inferencer")
    missing = runner.submit("infer", {"model_id": gone, "selection": {}}, settings=stack.settings, engine=pg_engine,
                            max_attempts=3)
    job = wait_for(lambda: (j := _job(pg_engine, missing))["status"] in jobs_db.TERMINAL and j, timeout=120,
                   what="the job without artifact", stack=stack)
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert job["error"].startswith("FileNotFoundError: model 'doomed': artifact") and "not retried" in job["error"]
    locker = pg_engine.connect()
    tx = locker.begin()
    locker.execute(sa.text("LOCK TABLE inference_results IN ACCESS EXCLUSIVE MODE"))
    try:
        locked = runner.submit("infer", {"model_id": good, "selection": {}}, settings=stack.settings,
                               engine=pg_engine, max_attempts=3)
        job = wait_for(lambda: (j := _job(pg_engine, locked))["status"] in jobs_db.TERMINAL and j, timeout=180,
                       what="the job meeting the lock", stack=stack)
    finally:
        tx.rollback()
        locker.close()
    assert job["status"] == JobStatus.FAILED, job["error"]
    assert "lock timeout" in job["error"].splitlines()[0] and "failed on each of 3 attempts" in job["error"]
    assert max(s["attempts"] for s in jobs_db.get_shards(pg_engine, locked)) == 3
    after = runner.submit("infer", {"model_id": good, "selection": {}}, settings=stack.settings, engine=pg_engine)
    job = wait_for(lambda: (j := _job(pg_engine, after))["status"] in jobs_db.TERMINAL and j, timeout=120,
                   what="the job after the lock", stack=stack)
    assert job["status"] == JobStatus.SUCCEEDED, job["error"]


def test_partly_failed_ingest_is_partial_in_stack_mode(stack, pg_engine, shared_dir, tmp_path):
    """An ingest job whose files partly fail ends 'partial' after one attempt, and `--wait` exits 1."""
    import gzip
    good = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(good.read_bytes())[:500])
    stack.start_worker("ingest")
    res = stack.cli("ingest", "gaia-xp", str(good), str(broken), "--wait", check=False)
    assert res.returncode == 1, res.stderr
    assert "partial: 1 of 2 files failed" in res.stderr and "files ok 1, failed 1" in res.stdout
    (job,) = jobs_db.list_jobs(pg_engine, kind="ingest")
    assert job["status"] == JobStatus.PARTIAL and job["attempts"] == 1 and job["result"]["rows_loaded"] == 2


def test_crash_looping_job_stops_after_max_attempts(stack, pg_engine):
    """A training job whose worker dies (SIGKILL) on every attempt is redelivered, and once max_attempts
    attempts have started without finishing, the job is failed with the reason instead of looping forever."""
    seed_survey(pg_engine, 600)
    job_id = runner.submit("train", {"name": "crashy", "selection": {},
                                     "train": {"epochs": 100000, "batch_size": 64, "checkpoint_every": 0}},
                           settings=stack.settings, engine=pg_engine, max_attempts=2)
    for attempt in (1, 2):
        w = stack.start_worker("trainer")
        wait_for(lambda attempt=attempt: (j := _job(pg_engine, job_id))["status"] == JobStatus.RUNNING
                 and j["attempts"] == attempt,
                 timeout=90, what=f"attempt {attempt}", stack=stack)
        stack.kill(w)
    stack.start_worker("trainer")
    job = wait_for(lambda: (j := _job(pg_engine, job_id))["status"] in jobs_db.TERMINAL and j, timeout=90,
                   what="the job to be given up", stack=stack)
    assert job["status"] == JobStatus.FAILED
    assert "gave up" in job["error"] and job["attempts"] == 3


def test_interrupted_training_resumes_from_its_checkpoint(stack, pg_engine):
    """Kill the trainer after a checkpoint: the redelivered job resumes from that epoch, not from 0."""
    seed_survey(pg_engine, 800)
    w = stack.start_worker("trainer")
    job_id = runner.submit("train", {"name": "resumable", "selection": {},
                                     "train": {"epochs": 60, "batch_size": 32, "checkpoint_every": 5}},
                           settings=stack.settings, engine=pg_engine)
    ckpt = stack.home / "checkpoints" / f"train-job-{job_id}.pt"
    wait_for(lambda: ckpt.exists() and _job(pg_engine, job_id)["progress_done"] >= 11, timeout=120,
             what="two checkpoints", stack=stack)
    stack.kill(w)
    stack.start_worker("trainer")
    job = wait_for(lambda: (j := _job(pg_engine, job_id))["status"] in jobs_db.TERMINAL and j, timeout=180,
                   what="the resumed job", stack=stack)
    assert job["status"] == JobStatus.SUCCEEDED, job["error"]
    assert job["attempts"] == 2
    assert job["result"]["resumed_from_epoch"] >= 10
    assert job["result"]["epochs_completed"] == 60
    with pg_engine.connect() as conn:
        epochs = conn.execute(sa.text("SELECT count(*) FROM training_metrics WHERE job_id = :j"),
                              {"j": job_id}).scalar()
    assert epochs == 60


def test_queues_do_not_block_each_other(stack, pg_engine, shared_dir):
    """A long training job occupies the trainer worker; an ingest job on its own queue completes meanwhile."""
    seed_survey(pg_engine, 600)
    stack.start_worker("trainer")
    stack.start_worker("ingest")
    # eager: 100,000 epochs would torch.compile first ("auto"), a minute or more of a loaded CPU before the first
    # epoch ends and a cancellation can be seen; compilation is not what this test is about
    train = runner.submit("train", {"name": "long", "selection": {},
                                    "train": {"epochs": 100000, "batch_size": 64, "checkpoint_every": 0,
                                              "compile": False}},
                          settings=stack.settings, engine=pg_engine)
    wait_for(lambda: _job(pg_engine, train)["status"] == JobStatus.RUNNING, timeout=90, what="training to start",
             stack=stack)
    csv = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
    ingest = runner.submit("ingest", {"source": "gaia-xp", "paths": [str(csv)], "correlations": True},
                           settings=stack.settings, engine=pg_engine)
    wait_for(lambda: _job(pg_engine, ingest)["status"] == JobStatus.SUCCEEDED, timeout=90, what="the ingest job",
             stack=stack)
    assert _job(pg_engine, train)["status"] == JobStatus.RUNNING
    stack.cli("job", "cancel", str(train))
    job = wait_for(lambda: (j := _job(pg_engine, train))["status"] in jobs_db.TERMINAL and j, timeout=60,
                   what="the cancelled training", stack=stack)
    assert job["status"] == JobStatus.CANCELLED


def test_cli_reports_unreachable_broker_and_database(stack, tmp_path):
    """Exit code 3 and a message naming what is unreachable, never a traceback."""
    env = dict(stack.env, XPVAE_BROKER_URL="amqp://guest:guest@127.0.0.1:1//")
    res = subprocess.run([sys.executable, "-m", "xpvae", "train", "--epochs", "1"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr
    assert "cannot reach the message broker" in res.stderr and "Traceback" not in res.stderr
    env = dict(stack.env, XPVAE_DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")
    res = subprocess.run([sys.executable, "-m", "xpvae", "jobs"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3 and "cannot reach the database" in res.stderr and "Traceback" not in res.stderr


def test_worker_waits_for_the_broker_then_serves(stack, pg_engine, broker_url, shared_dir):
    """A worker started before its broker is reachable (here: its vhost does not exist yet) keeps retrying the
    connection instead of exiting, and serves jobs once the broker is there."""
    import shutil
    import uuid
    ctl = shutil.which("rabbitmqctl")
    vhost = f"xpvae_late_{uuid.uuid4().hex[:8]}"
    stack.env["XPVAE_BROKER_URL"] = broker_url.rsplit("/", 1)[0] + "/" + vhost
    worker = stack.start_worker("ingest")
    try:
        import time
        time.sleep(4)
        assert worker.poll() is None, stack.logs()          # still alive, retrying
        subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)
        csv = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
        res = stack.cli("ingest", "gaia-xp", str(csv), "--wait", timeout=120)
        assert "rows read 2, loaded 2" in res.stdout
    finally:
        stack.stop()
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True)
