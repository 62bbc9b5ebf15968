"""The stack end to end: real RabbitMQ, real Celery worker processes, the real PostgreSQL test database.

What this proves: a user's CLI commands in stack mode enqueue jobs that the per-service workers pick up,
and ingest → train → infer → analyze produce their rows in PostgreSQL.
"""
from __future__ import annotations

import json
import os

import sqlalchemy as sa


def test_ingest_train_infer_analyze_through_workers(stack, pg_engine, tmp_path):
    from simulator.survey import simulate_survey
    survey = tmp_path / "survey"
    simulate_survey(1500, 5, alpha_signal=1.0, label_fraction=0.6, out_dir=survey, formats=("csv",))
    for q in ("ingest", "trainer", "inferencer", "analysis"):
        stack.start_worker(q)

    xp = sorted(str(p) for p in (survey / "xp" / "csv").glob("*.csv"))
    stack.cli("ingest", "gaia-xp", *xp, "--wait")
    stack.cli("ingest", "photometry", str(survey / "photometry.csv"), "--wait")
    stack.cli("ingest", "apogee", str(next(survey.glob("allStar*.fits"))), "--wait")
    res = stack.cli("train", "--name", "e2e", "--epochs", "3", "--batch-size", "256", "--wait")
    assert "succeeded" in res.stderr and "epochs_completed: 3" in res.stdout
    stack.cli("infer", "--model", "e2e", "--shards", "3", "--wait")
    stack.cli("analyze", "alpha", "--model", "e2e", "--folds", "3", "--bootstrap", "50", "--wait")

    with pg_engine.connect() as conn:
        n_xp = conn.execute(sa.text("SELECT count(*) FROM xp_spectra")).scalar()
        n_res, n_distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT source_id) FROM inference_results r JOIN models m ON m.id = r.model_id "
            "WHERE m.name = 'e2e'")).one()
        n_phot = conn.execute(sa.text("SELECT count(*) FROM photometry")).scalar()
        n_stats = conn.execute(sa.text("SELECT count(*) FROM analysis_statistics WHERE report = 'alpha'")).scalar()
        workers = set(conn.execute(sa.text("SELECT worker FROM jobs")).scalars())
        statuses = set(conn.execute(sa.text("SELECT status FROM jobs")).scalars())
        shards = dict(conn.execute(sa.text(
            "SELECT j.kind, count(*) FROM job_shards s JOIN jobs j ON j.id = s.job_id WHERE s.status = 'done' "
            "GROUP BY j.kind")).all())
        # the anomaly score: one calibration for the job, a score for every star the model scored
        n_nll, n_score = conn.execute(sa.text(
            "SELECT count(nll), count(anomaly_score) FROM inference_results r JOIN models m ON m.id = r.model_id "
            "WHERE m.name = 'e2e'")).one()
        top = conn.execute(sa.text(
            "SELECT anomaly_score, anomaly_p FROM inference_results WHERE anomaly_score IS NOT NULL "
            "ORDER BY anomaly_score DESC LIMIT 20")).all()
        infer_params = conn.execute(sa.text("SELECT params FROM jobs WHERE kind = 'infer'")).scalar()
    assert n_xp == 1500 and n_phot == 1500
    # every star with both bands and photometry got exactly one result row
    assert n_res == n_distinct and n_res >= 0.95 * n_xp
    assert shards == {"infer": 3, "ingest": 2}       # the XP files (small: one shard) and the photometry file
    assert n_score == n_nll >= 0.95 * n_xp
    assert [t[1] for t in top] == sorted(t[1] for t in top)          # a higher score is a smaller p
    params = infer_params if isinstance(infer_params, dict) else json.loads(infer_params)
    assert "held-out" in params["anomaly_calibration"]["reference"]
    assert n_stats > 20
    assert statuses == {"succeeded"}
    # the jobs ran in the worker processes, not in this one
    assert workers and not any(w.endswith(f":{os.getpid()}") for w in workers)
    jobs_out = stack.cli("jobs").stdout
    assert "analyze_alpha" in jobs_out and "succeeded" in jobs_out
