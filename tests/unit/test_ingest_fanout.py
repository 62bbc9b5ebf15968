"""An ingest job fans out over its files, in-process here on both backends (under real Celery workers, with a
worker killed mid-shard: tests/integration/test_ingest_fanout_workers.py): one shard per file or group of files, the
job's progress the sum of its shards', a file that fails fails its shard alone (the job ends partial and names
it), and a shard run again adds no rows."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from db import job_store as jobs_db
from ingest.service import group_files, run_ingest_shard
from jobqueue import runner
from jobqueue.runner import JobContext
from simulator.survey import generate
from simulator.writers import bulk_file_name, write_xp_ecsv

N_FILES, PER_FILE = 4, 30


@pytest.fixture
def settings(settings_for):
    return settings_for(retry_backoff_s=0.0)


@pytest.fixture(scope="module")
def bulk_files(tmp_path_factory):
    """Bulk-release chunks (XpContinuousMeanSpectrum_*.csv.gz, with correlations) of distinct stars."""
    batch = generate(N_FILES * PER_FILE, 61, label_fraction=0.0, with_correlations=True)[0]
    d = tmp_path_factory.mktemp("bulk")
    paths = []
    for i in range(N_FILES):
        chunk = batch.take(slice(i * PER_FILE, (i + 1) * PER_FILE))
        paths.append(str(write_xp_ecsv(chunk, d / bulk_file_name(chunk["source_id"]))))
    return paths, np.sort(np.asarray(batch["source_id"]))


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(q)).scalar_one() for q in (
            "SELECT COUNT(*) FROM xp_spectra", "SELECT COUNT(DISTINCT source_id) FROM xp_spectra",
            "SELECT COUNT(*) FROM xp_correlations"))


def test_each_file_is_a_shard_and_the_job_is_their_sum(engine, bulk_files, settings):
    paths, ids = bulk_files
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": paths, "files_per_shard": 1},
                           settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    shards = jobs_db.get_shards(engine, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert [s["work"]["files"][0]["path"] for s in shards] == paths and {s["status"] for s in shards} == {"done"}
    assert [s["result"]["rows_loaded"] for s in shards] == [PER_FILE] * N_FILES
    assert job["progress_done"] == job["progress_total"] == N_FILES
    r = job["result"]
    assert (r["n_shards"], r["files_ok"], r["files_failed"], r["rows_read"], r["rows_loaded"]) == \
        (N_FILES, N_FILES, 0, len(ids), len(ids))
    assert [f["path"] for f in r["files"]] == paths
    assert _counts(engine) == (len(ids), len(ids), len(ids))
    # by default these small files share one shard
    again = runner.submit("ingest", {"source": "gaia-xp", "paths": paths}, settings=settings, engine=engine)
    assert len(jobs_db.get_shards(engine, again)) == 1 and jobs_db.get_job(engine, again)["status"] == "succeeded"
    assert _counts(engine) == (len(ids), len(ids), len(ids))      # a re-ingest adds nothing


def test_a_corrupt_file_fails_its_shard_alone_and_the_job_names_it(engine, bulk_files, tmp_path, settings):
    paths, ids = bulk_files
    broken = tmp_path / "XpContinuousMeanSpectrum_999999-999999.csv.gz"
    broken.write_bytes(open(paths[0], "rb").read()[:700])           # a download cut short
    given = [paths[1], str(broken), paths[2], paths[3]]
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": given, "files_per_shard": 1},
                           settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    shards = jobs_db.get_shards(engine, job_id)
    assert job["status"] == "partial" and job["attempts"] == 1
    assert job["error"].startswith(f"1 of 4 files failed, first: {broken}: ")
    assert [s["status"] for s in shards] == ["done", "failed", "done", "done"]
    assert shards[1]["error"].startswith(f"{broken}: ") and shards[1]["attempts"] == 1
    assert job["result"]["failed_files"][0].startswith(f"{broken}: ")
    assert job["result"]["rows_loaded"] == 3 * PER_FILE and job["progress_done"] == 4
    assert _counts(engine) == (3 * PER_FILE,) * 3


def test_inputs_that_give_no_file_are_reported_by_a_shard(engine, bulk_files, tmp_path, settings):
    paths, _ = bulk_files
    (tmp_path / "notes.txt").write_text("not data")
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": [paths[0], str(tmp_path / "nowhere.csv"),
                                                                   str(tmp_path)]}, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == "partial", job["error"]
    r = job["result"]
    assert r["files_ok"] == 1 and r["rows_loaded"] == PER_FILE
    assert any("nowhere.csv: no such file" in e for e in r["failed_files"])
    assert any(f"{tmp_path}: no Gaia XP files in it" in e for e in r["failed_files"])
    assert r["skipped_files"] == [f"{tmp_path / 'notes.txt'}: not a data file by its name"]
    nothing = runner.submit("ingest", {"source": "gaia-xp", "paths": [str(tmp_path / "nowhere.csv")]},
                            settings=settings, engine=engine)
    job = jobs_db.get_job(engine, nothing)
    assert job["status"] == "failed" and "nowhere.csv: no such file" in job["error"]


def test_a_shard_run_again_rewrites_the_same_rows(engine, bulk_files, settings):
    """What a worker killed after its files committed but before the shard was marked done leaves behind: the
    shard runs again and the tables hold each star once, with the same values."""
    paths, ids = bulk_files
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": paths[:2], "files_per_shard": 1},
                           settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    rows = sa.text("SELECT source_id, bp_coefficients, source_file FROM xp_spectra ORDER BY source_id")
    with engine.connect() as conn:
        before = conn.execute(rows).all()
    ctx = JobContext(job_id, "ingest", dict(job["params"]), 2, engine, settings)
    run_ingest_shard(ctx, jobs_db.get_shards(engine, job_id)[1])
    with engine.connect() as conn:
        after = conn.execute(rows).all()
    assert after == before and len(after) == 2 * PER_FILE


def test_small_files_share_shards_and_a_large_file_is_alone(tmp_path):
    from ingest.load import Found
    sizes = [10, 10, 10, 100, 5, 5]
    found = []
    for i, n in enumerate(sizes):
        p = tmp_path / f"f{i}.csv"
        p.write_bytes(b"x" * n)
        found.append(Found(p, str(p), True))
    cut = [[f.path.name for f in g] for g in group_files(found, shard_bytes=30, max_files=2)]
    assert cut == [["f0.csv", "f1.csv"], ["f2.csv"], ["f3.csv"], ["f4.csv", "f5.csv"]]
    assert [len(g) for g in group_files(found, files_per_shard=4)] == [4, 2]


def test_a_transient_database_failure_retries_that_shard_alone(pg_url, bulk_files, monkeypatch, settings_for):
    """Shard 1 meets a table locked by another session (lock timeout, a transient error): that shard is
    retried after its backoff, the lock is gone by then, and the job succeeds with every row once."""
    import threading

    from db.engine import create_engine
    paths, _ = bulk_files
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=300")
    settings = settings_for(retry_backoff_s=1.5, database_url=pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE xp_correlations, xp_spectra, jobs CASCADE"))
        locker = engine.connect()
        tx = locker.begin()
        locker.execute(sa.text("LOCK TABLE xp_spectra IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(1.0, lambda: (tx.rollback(), locker.close()))
        release.start()
        job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": paths[:2], "files_per_shard": 1},
                               settings=settings, engine=engine)
        release.join()
        job = jobs_db.get_job(engine, job_id)
        shards = jobs_db.get_shards(engine, job_id)
        assert job["status"] == "succeeded", job["error"]
        assert shards[0]["attempts"] == 2 and shards[1]["attempts"] == 1    # only the locked-out shard ran again
        assert _counts(engine) == (2 * PER_FILE,) * 3 and job["progress_done"] == 2
    finally:
        engine.dispose()
