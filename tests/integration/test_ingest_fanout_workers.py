"""An ingest job fanned out over real Celery ingest workers: a worker SIGKILLed in the middle of a shard (one
of its files committed, the next being written) has its shard redelivered and redone, and the tables end
with exactly the files' rows; with a corrupt file among several on two workers the others load and the job
ends partial naming it."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import sqlalchemy as sa
from stackutil import wait_for

from db import job_store as jobs_db
from jobqueue import runner
from simulator.survey import generate
from simulator.writers import write_xp_csv

N_FILES, PER_FILE = 6, 500


@pytest.fixture(scope="module")
def bulk_files(tmp_path_factory):
    """Archive CSV files with correlations, of distinct stars: 200 simulated spectra tiled under new ids."""
    base = generate(200, 47, label_fraction=0.0, with_correlations=True)[0]
    d = tmp_path_factory.mktemp("bulk")
    paths = []
    for i in range(N_FILES):
        ids = np.arange(i * PER_FILE, (i + 1) * PER_FILE, dtype=np.int64) + 10**15
        chunk = base.take(np.arange(PER_FILE) % len(base))
        chunk.columns["source_id"][:] = ids
        paths.append(str(write_xp_csv(chunk, d / f"XP_CONTINUOUS_RAW_{i:02d}.csv")))
    return paths, np.arange(N_FILES * PER_FILE, dtype=np.int64) + 10**15


def _stored(engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(q)).scalar_one() for q in (
            "SELECT COUNT(*) FROM xp_spectra", "SELECT COUNT(DISTINCT source_id) FROM xp_spectra",
            "SELECT COUNT(*) FROM xp_correlations", "SELECT COUNT(DISTINCT source_id) FROM xp_correlations"))


def _settled(engine, job_id):
    job = jobs_db.get_job(engine, job_id)
    return job if job["status"] in jobs_db.TERMINAL else None


def test_worker_killed_mid_shard_is_redone_without_duplicates(stack, pg_engine, bulk_files):
    """Three files a shard; the worker is killed once the first file of the first shard has committed and the
    shard is still running. The redelivered shard loads all three again (upserts), so the rows equal the
    files' contents exactly and the job counts each file once."""
    paths, ids = bulk_files
    w1 = stack.start_worker("ingest")
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": paths, "files_per_shard": 3},
                           settings=stack.settings, engine=pg_engine)

    def first_file_in():
        shards = jobs_db.get_shards(pg_engine, job_id)
        return (shards and shards[0]["status"] == "running" and PER_FILE <= _stored(pg_engine)[0] < 3 * PER_FILE)
    wait_for(first_file_in, timeout=120, interval=0.05, what="shard 0 with one file committed", stack=stack)
    stack.kill(w1)
    assert jobs_db.get_shards(pg_engine, job_id)[0]["status"] == "running"     # died mid-shard
    stack.start_worker("ingest")
    job = wait_for(lambda: _settled(pg_engine, job_id), timeout=240, what="the job to finish", stack=stack)
    assert job["status"] == "succeeded", job["error"]
    shards = jobs_db.get_shards(pg_engine, job_id)
    assert shards[0]["attempts"] == 2 and [s["status"] for s in shards] == ["done", "done"]
    assert _stored(pg_engine) == (len(ids),) * 4
    with pg_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT source_id FROM xp_spectra ORDER BY source_id")).scalars().all()
    assert stored == ids.tolist()
    r = job["result"]
    assert (r["files_ok"], r["rows_read"], r["rows_loaded"], r["n_shards"]) == (N_FILES, len(ids), len(ids), 2)
    assert job["progress_done"] == job["progress_total"] == N_FILES


def test_corrupt_file_among_several_on_two_workers(stack, pg_engine, bulk_files, tmp_path):
    paths, ids = bulk_files
    broken = tmp_path / "XP_CONTINUOUS_RAW_cut.csv.gz"
    broken.write_bytes(gzip.compress(open(paths[0], "rb").read())[:5000])      # a download cut short
    given = paths[1:] + [str(broken)]
    stack.start_worker("ingest")
    stack.start_worker("ingest")
    logs = sorted(stack.home.glob("worker-ingest-*.log"))
    wait_for(lambda: all(" ready." in p.read_text(errors="replace") for p in logs), timeout=120,
             what="both workers ready", stack=stack)      # else the first up could take every shard
    job_id = runner.submit("ingest", {"source": "gaia-xp", "paths": given, "files_per_shard": 1},
                           settings=stack.settings, engine=pg_engine)
    job = wait_for(lambda: _settled(pg_engine, job_id), timeout=240, what="the job to finish", stack=stack)
    assert job["status"] == "partial" and job["attempts"] == 1
    assert job["error"].startswith(f"1 of {N_FILES} files failed, first: {broken}: ")
    shards = jobs_db.get_shards(pg_engine, job_id)
    assert [s["status"] for s in shards] == ["done"] * (N_FILES - 1) + ["failed"]
    assert shards[-1]["error"].startswith(f"{broken}: ") and shards[-1]["attempts"] == 1
    assert len({s["worker"] for s in shards}) == 2              # both workers took shards
    assert job["result"]["rows_loaded"] == (N_FILES - 1) * PER_FILE
    assert _stored(pg_engine) == ((N_FILES - 1) * PER_FILE,) * 4
