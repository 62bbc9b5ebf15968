"""Reads of the stored Gaia photometry (``photometry``) for the analysis jobs. Writing it: db/spectra_write.py;
reading photometry files: ingest/readers/photometry.py."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import photometry


def read_g_and_colour(engine: Engine, source_id: np.ndarray) -> dict[str, np.ndarray]:
    """``phot_g_mean_mag`` and ``bp_rp`` (BP − RP) aligned with ``source_id``, NaN where not stored."""
    source_id = np.asarray(source_id, np.int64)
    p = photometry.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(p.source_id, p.phot_g_mean_mag, p.phot_bp_mean_mag, p.phot_rp_mean_mag)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not len(ids):
        nan = np.full(len(source_id), np.nan)
        return {"phot_g_mean_mag": nan, "bp_rp": nan.copy()}
    mags = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows], dtype=np.float64)
    order = np.argsort(ids)
    ids, mags = ids[order], mags[order]
    pos = np.searchsorted(ids, source_id).clip(max=len(ids) - 1)
    g, bp, rp = np.where((ids[pos] == source_id)[:, None], mags[pos], np.nan).T
    return {"phot_g_mean_mag": g, "bp_rp": bp - rp}
