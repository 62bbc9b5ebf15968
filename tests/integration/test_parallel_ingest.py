"""Two ingests of the same stars at the same time, in opposite row order, on real PostgreSQL: each used to lock
rows in its file's order, so they deadlocked and the loser's file failed inside a job reported 'succeeded'.
Rows are now written in source_id order (one lock order for every writer) and a deadlock that remains
possible across chunks of one file's transaction reloads that file."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from db import job_store as jobs_db
from db.job_status import JobStatus
from db.spectra import read_spectra
from ingest.load import ingest_gaia_xp
from jobqueue import runner
from simulator.survey import generate
from simulator.writers import write_xp_csv

N_STARS = 1100         # with correlations two chunks of a file's one transaction (1024 rows a chunk), ~47 MB


@pytest.fixture(scope="module")
def opposite_files(tmp_path_factory):
    """The same stars, with correlations, in ascending and descending source_id order."""
    batch = generate(N_STARS, 29, label_fraction=0.0, with_correlations=True)[0]
    order = np.argsort(np.asarray(batch["source_id"]))
    d = tmp_path_factory.mktemp("overlap")
    up = write_xp_csv(batch.take(order), d / "ascending.csv")
    down = write_xp_csv(batch.take(order[::-1]), d / "descending.csv")
    return str(up), str(down), np.asarray(batch["source_id"])[order]


def _check_loaded(engine, ids):
    data = read_spectra(engine, ids)
    assert np.array_equal(data["source_id"], ids)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM xp_correlations")).scalar_one() == len(ids)


@pytest.fixture
def embedded(settings_for, pg_url):
    """The embedded mode's settings (no broker: jobs run in the submitting thread) on the test database."""
    return settings_for(database_url=pg_url, broker_url=None)


def _together(*calls):
    """Run the calls in threads released at the same instant; return their results in order."""
    gate = threading.Barrier(len(calls))
    out: list = [None] * len(calls)
    errors: list = []

    def run(i, fn):
        try:
            gate.wait()
            out[i] = fn()
        except BaseException as exc:  # noqa: BLE001 — reported by the test below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return out


def test_parallel_ingest_jobs_of_opposite_files_both_succeed(pg_engine, embedded, opposite_files):
    """Round 1 writes new rows (the COPY path), round 2 existing ones (the upsert path); each round starts two
    in-process jobs together, and both must load their whole file and say 'succeeded'."""
    up, down, ids = opposite_files
    params = {"source": "gaia-xp"}
    for _ in range(2):
        ids_run = _together(*(lambda f=f: runner.submit("ingest", {**params, "paths": [f]}, settings=embedded,
                                                        engine=pg_engine)
                              for f in (up, down)))
        for job_id in ids_run:
            job = jobs_db.get_job(pg_engine, job_id)
            assert job["status"] == JobStatus.SUCCEEDED, job["error"]
            assert job["result"]["files_failed"] == 0 and job["result"]["rows_loaded"] == N_STARS
    _check_loaded(pg_engine, ids)


def test_opposite_files_in_many_chunks_load_fully(pg_engine, opposite_files):
    """Chunks of 300 rows: within a chunk the order is fixed, across a file's chunks it is not, so a deadlock
    can still happen there; the loser reloads its file and both end complete."""
    up, down, ids = opposite_files
    summaries = _together(*(lambda f=f: ingest_gaia_xp(pg_engine, [f], chunk_rows=300) for f in (up, down)))
    for s in summaries:
        assert s.files_failed == 0, [f.error for f in s.files]
        assert s.rows_loaded == N_STARS
    _check_loaded(pg_engine, ids)
