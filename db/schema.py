"""The schema as SQLAlchemy Core tables: the source of the alembic migrations and of every query.

Per-star values people query are plain columns; arrays are compact little-endian blobs (see db/__init__.py).
Correlations (89 % of the bytes) live in their own table so scans of the spectra stay small.
"""
from __future__ import annotations

import sqlalchemy as sa

from shared.params import LATENT_MAX
from shared.xp import APOGEE_COLUMNS, BANDS

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s",
})

REAL = sa.REAL
DOUBLE = sa.Double
TS = sa.DateTime(timezone=True)


def _band_columns(band: str) -> list[sa.Column]:
    return [
        sa.Column(f"{band}_missing", sa.Boolean, nullable=False),
        sa.Column(f"{band}_basis_function_id", sa.SmallInteger),
        sa.Column(f"{band}_degrees_of_freedom", sa.SmallInteger),
        sa.Column(f"{band}_n_parameters", sa.SmallInteger),
        sa.Column(f"{band}_n_measurements", sa.SmallInteger),
        sa.Column(f"{band}_n_rejected_measurements", sa.SmallInteger),
        sa.Column(f"{band}_standard_deviation", REAL),
        sa.Column(f"{band}_chi_squared", REAL),
        sa.Column(f"{band}_n_relevant_bases", sa.SmallInteger),
        sa.Column(f"{band}_relative_shrinking", REAL),
        sa.Column(f"{band}_coefficients", sa.LargeBinary),         # 55 × float64 LE
        sa.Column(f"{band}_coefficient_errors", sa.LargeBinary),   # 55 × float32 LE
    ]


xp_spectra = sa.Table(
    "xp_spectra", metadata,
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("solution_id", sa.BigInteger),
    *_band_columns("bp"), *_band_columns("rp"),
    sa.Column("source_file", sa.Text),
    sa.Column("ingested_at", TS, server_default=sa.func.now()),
)

xp_correlations = sa.Table(
    "xp_correlations", metadata,
    sa.Column("source_id", sa.BigInteger, sa.ForeignKey("xp_spectra.source_id", ondelete="CASCADE"),
              primary_key=True, autoincrement=False),
    *[sa.Column(f"{b}_coefficient_correlations", sa.LargeBinary) for b in BANDS],   # 1485 × float32 LE
)

photometry = sa.Table(
    "photometry", metadata,
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("phot_g_mean_flux", DOUBLE),
    sa.Column("phot_g_mean_mag", REAL),
    sa.Column("phot_bp_mean_mag", REAL),
    sa.Column("phot_rp_mean_mag", REAL),
    sa.Column("ra", DOUBLE),      # degrees, ICRS at the Gaia DR3 epoch; NULL when the file had no position
    sa.Column("dec", DOUBLE),
    # Partial: empty until positions are ingested, so "are there any?" (exports) never scans the table.
    sa.Index("ix_photometry_positioned", "source_id", sqlite_where=sa.text("ra IS NOT NULL"),
             postgresql_where=sa.text("ra IS NOT NULL")),
)

def _apogee_column(name: str, kind) -> sa.Column:
    if kind is str:
        return sa.Column(name, sa.Text, nullable=False, server_default="")
    return sa.Column(name, sa.BigInteger if kind.__name__ == "int64" else REAL)


apogee_labels = sa.Table(
    "apogee_labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    *[_apogee_column(n, k) for n, k in APOGEE_COLUMNS.items()],
    # Cross-match primary (docs/data-formats.md §3): EXTRATARG bit 4 clear, then highest SNR per Gaia source id,
    # gaia_source_id > 0. Quality selections of docs/science.md §9, stored so SQL users can filter on them.
    sa.Column("is_primary", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("pristine", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("good", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("giant", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cool_giant", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("high_alpha", sa.Boolean),     # Patil et al. 2023 split; NULL when undecidable
    sa.Column("source_file", sa.Text),
    sa.UniqueConstraint("apogee_id", "telescope", "field", name="uq_apogee_labels_star"),
    sa.Index("ix_apogee_labels_gaia_source_id", "gaia_source_id"),
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),  # queued running succeeded failed cancelled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("progress_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("progress_total", sa.BigInteger),
    sa.Column("message", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.JSON),
    sa.Column("worker", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("updated_at", TS),
    sa.Index("ix_jobs_status", "status"),
)

job_shards = sa.Table(
    "job_shards", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    # An inference shard: stars with source_id in [lo, hi]. An ingest shard: files lo..hi of the job's plan
    # (listed in `work`), n_stars counting its files (the unit of the job's progress either way).
    sa.Column("source_id_lo", sa.BigInteger, nullable=False),   # inclusive
    sa.Column("source_id_hi", sa.BigInteger, nullable=False),   # inclusive
    sa.Column("n_stars", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker", sa.Text),
    sa.Column("error", sa.Text),
    # where the shard's time went, for operators and the end-to-end benchmark
    sa.Column("seconds_read", DOUBLE), sa.Column("seconds_model", DOUBLE), sa.Column("seconds_write", DOUBLE),
    sa.Column("updated_at", TS),
    sa.Column("work", sa.JSON),      # what the shard does beyond its range (an ingest shard: its files)
    sa.Column("result", sa.JSON),    # what came of it, for the job's summary (an ingest shard: per-file counts)
)

models = sa.Table(
    "models", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),          # svae | label_baseline
    sa.Column("path", sa.Text, nullable=False),          # the self-describing artifact file
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="SET NULL")),
    sa.Column("config", sa.JSON),
    sa.Column("summary", sa.JSON),
    sa.Column("n_train", sa.Integer),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

training_metrics = sa.Table(
    "training_metrics", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
    *[sa.Column(n, DOUBLE) for n in ("loss", "nll", "kl", "val_loss", "val_nll", "val_kl", "lr", "seconds")],
)

# z1..z16 columns exist (LATENT_MAX, the --latent-dim bound); a 6-d model fills z1..z6 and leaves the rest NULL

inference_results = sa.Table(
    "inference_results", metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("job_id", sa.Integer),
    sa.Column("split", sa.Text),          # train | validation | test | NULL (not in the training set)
    *[sa.Column(f"z{i}", REAL) for i in range(1, LATENT_MAX + 1)],
    *[sa.Column(f"z{i}_sigma", REAL) for i in range(1, LATENT_MAX + 1)],
    sa.Column("nll", REAL),
    sa.Column("zscore_rms", REAL),            # RMS over coefficients of δ/σ
    sa.Column("zscore_rms_scatter", REAL),    # RMS of δ/sqrt(σ²+ŝ²)
    sa.Column("scatter_mean", REAL),
    sa.Column("bp_chi2_dof", REAL), sa.Column("rp_chi2_dof", REAL),                   # full covariance
    sa.Column("bp_chi2_dof_scatter", REAL), sa.Column("rp_chi2_dof_scatter", REAL),   # Σ + diag(ŝ²)
    # The anomaly score (shared/anomaly.py, README "Anomalies"): how badly the model explains the spectrum given
    # its errors and learned scatter (capped at the held-out median), calibrated on the model's held-out stars
    # (the infer job's params hold the calibration and say on which stars).
    # anomaly_score: ~N(0, 1) for typical stars, larger = worse (ORDER BY anomaly_score DESC), combined over the
    # bands present; anomaly_p: tail probability P(a typical star scores ≥ this), small = anomalous. _bp/_rp:
    # the same per band, NULL for a missing band. NULL everywhere when the star could not be scored.
    sa.Column("anomaly_score", REAL), sa.Column("anomaly_score_bp", REAL), sa.Column("anomaly_score_rp", REAL),
    sa.Column("anomaly_p", DOUBLE), sa.Column("anomaly_p_bp", DOUBLE), sa.Column("anomaly_p_rp", DOUBLE),
    sa.Index("ix_inference_results_anomaly", "model_id", "anomaly_score"),
)

analysis_statistics = sa.Table(
    "analysis_statistics", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model_id", sa.Integer),
    sa.Column("report", sa.Text, nullable=False),      # alpha | reconstruction
    sa.Column("sample", sa.Text),
    sa.Column("statistic", sa.Text, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("bin_var", sa.Text),
    sa.Column("bin_lo", DOUBLE), sa.Column("bin_hi", DOUBLE),
    sa.Column("value", DOUBLE), sa.Column("ci_lo", DOUBLE), sa.Column("ci_hi", DOUBLE),
    sa.Column("n", sa.Integer),
    sa.Index("ix_analysis_statistics_job", "job_id"),
)

# P(high-α) per star (analysis/alpha_catalogue.py): calibrated on out-of-fold predictions; job_id is the
# `analyze alpha-catalogue` job that fitted the classifier (its result and analysis_statistics rows describe it).
# A rerun for the same model replaces all of the model's rows.
alpha_probabilities = sa.Table(
    "alpha_probabilities", metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("p_high_alpha", DOUBLE, nullable=False),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="SET NULL")),
)

analysis_reports = sa.Table(
    "analysis_reports", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("report", sa.Text, nullable=False),
    sa.Column("model_id", sa.Integer),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("headline", sa.JSON),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)
