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


def write_spectra_with_some_correlations(engine, batch, phot, with_corr) -> None:
    """Store a simulated batch's spectra and photometry, with its correlation arrays only for the stars in the
    boolean mask ``with_corr`` (the others read back as having none stored)."""
    from db.bulk import Nullable, upsert_rows
    from db.spectra import write_photometry, write_xp_batch
    ids = batch["source_id"]
    with engine.begin() as conn:
        write_xp_batch(conn, batch.without_correlations(), "t")
        write_photometry(conn, phot)
        upsert_rows(conn, "xp_correlations", {"source_id": ids[with_corr], **{
            f"{b}_coefficient_correlations": Nullable(batch[f"{b}_coefficient_correlations"][with_corr],
                                                      batch[f"{b}_missing"][with_corr]) for b in ("bp", "rp")}})
