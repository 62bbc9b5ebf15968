"""Inference results (``inference_results``): the inferencer replaces a shard's rows; the analysis jobs, the
demo and the job summary read them through the functions here rather than writing SQL of their own."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.bulk import upsert_rows
from db.schema import alpha_probabilities, inference_results, models, xp_correlations
from shared.errors import InputError


def replace_results(conn: Connection, model_id: int, lo: int, hi: int, cols: Mapping[str, Any]) -> None:
    """Replace the model's rows in the source_id range [lo, hi] by ``cols`` (idempotent), inside the caller's
    transaction."""
    conn.execute(inference_results.delete().where(inference_results.c.model_id == model_id)
                 .where(inference_results.c.source_id.between(lo, hi)))
    upsert_rows(conn, inference_results, dict(cols), key=("model_id", "source_id"))


def _no_results(model_id: int, split: str | None = None) -> InputError:
    where = f" in the {split} split" if split else ""
    return InputError(f"--model {model_id} has no inference results{where}: run `xpvae infer --model {model_id}` "
                      "first")


def read_latents(engine: Engine, model_id: int, latent_dim: int, split: str | None = None,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(source_id, latent means (N, latent_dim)) of a model's inference results, ordered by source_id;
    ``split`` keeps one split's stars, ``limit`` the first that many. InputError when there are none."""
    r = inference_results.c
    stmt = sa.select(r.source_id, *[r[f"z{i + 1}"] for i in range(latent_dim)]) \
        .where(r.model_id == model_id).order_by(r.source_id)
    if split:
        stmt = stmt.where(r.split == split)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        raise _no_results(model_id, split)
    # source ids (~1e18) do not survive a trip through float64: keep them apart from the latents
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    latents = np.array([row[1:] for row in rows], dtype=np.float64).reshape(len(rows), latent_dim)
    return ids, latents


def read_latent_features(engine: Engine, model_id: int, latent_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(source_id, [z1..zd, z1_sigma..zd_sigma]) of every star a model inferred (NaN for a NULL width),
    ordered by source_id. InputError when there are none."""
    names = [f"z{i + 1}" for i in range(latent_dim)] + [f"z{i + 1}_sigma" for i in range(latent_dim)]
    r = inference_results.c
    stmt = sa.select(r.source_id, *[r[n] for n in names]).where(r.model_id == model_id).order_by(r.source_id)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        raise _no_results(model_id)
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    feats = np.array([[np.nan if v is None else v for v in row[1:]] for row in rows], dtype=np.float64)
    return ids, feats.reshape(len(rows), len(names))


def chi2_coverage(engine: Engine, model_id: int) -> tuple[int, int, int]:
    """(results, results with a χ², results without a χ² whose star has no stored correlations) of a model:
    why χ² is missing, counted per cause (a missing band has no χ²)."""
    r = inference_results.c
    has_chi2 = sa.or_(r.bp_chi2_dof.isnot(None), r.rp_chi2_dof.isnot(None))
    stored = sa.exists().where(xp_correlations.c.source_id == r.source_id)
    with engine.connect() as conn:
        n, n_chi2, n_unstored = conn.execute(sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((has_chi2, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(~has_chi2, ~stored), 1), else_=0)), 0))
            .where(r.model_id == model_id)).one()
    return int(n), int(n_chi2), int(n_unstored)


def read_anomaly_scores(engine: Engine, model_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source_id, anomaly_score, zscore_rms) of the stars the named model scored (empty arrays when none)."""
    r = inference_results.c
    stmt = sa.select(r.source_id, r.anomaly_score, r.zscore_rms).join(models, models.c.id == r.model_id) \
        .where(models.c.name == model_name).where(r.anomaly_score.isnot(None))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return (np.array([row[0] for row in rows], dtype=np.int64), np.array([row[1] for row in rows], float),
            np.array([row[2] for row in rows], float))


def read_alpha_probabilities(engine: Engine, model_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(source_id, p_high_alpha) of the named model's P(high-α) catalogue (empty arrays when there is none)."""
    q = alpha_probabilities.c
    stmt = sa.select(q.source_id, q.p_high_alpha).join(models, models.c.id == q.model_id) \
        .where(models.c.name == model_name)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return np.array([row[0] for row in rows], dtype=np.int64), np.array([row[1] for row in rows], float)
