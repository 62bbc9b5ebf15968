"""Test database helpers shared by fixtures and tests. A module of its own (not conftest) because tests/ and
tests/integration/ both have a conftest.py: `from conftest import …` would pick whichever was imported first."""
from __future__ import annotations

import os

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("XPVAE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _pg_url_for(name: str) -> str:
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


DATA_TABLES = ("alpha_probabilities", "analysis_reports", "analysis_statistics", "inference_results",
               "training_metrics", "models", "job_shards", "jobs", "xp_correlations", "xp_spectra", "photometry",
               "apogee_labels")


def _empty_tables(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for t in DATA_TABLES:
                conn.execute(sa.text(f"DELETE FROM {t}"))
