"""Writing XP spectra and photometry: one batch at a time, upserted through db.bulk (COPY on PostgreSQL).

A batch read without correlations leaves stored correlations untouched; a missing band is NULL in every column
of that band (db/__init__.py documents the byte layout of the arrays).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from sqlalchemy.engine import Connection

from db.bulk import Nullable, upsert_rows
from shared.xp import BAND_SCALAR_DTYPES, BANDS, N_COEFF, N_CORR, PHOTOMETRY_COLUMNS, POSITION_COLUMNS, XPBatch


def _check_shape(batch: XPBatch, name: str, width: int) -> None:
    arr = batch[name]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"XP batch: {name} has shape {arr.shape}, expected (N, {width})")


def xp_spectra_columns(batch: XPBatch, source_file: str | None) -> dict[str, Any]:
    """The xp_spectra columns of a batch: every column of a missing band NULL, -1/NaN scalars NULL."""
    n = len(batch)
    cols: dict[str, Any] = {"source_id": batch["source_id"].astype(np.int64),
                            "solution_id": batch["solution_id"].astype(np.int64)}
    for b in BANDS:
        missing = np.asarray(batch[f"{b}_missing"], bool)
        cols[f"{b}_missing"] = missing
        for f, dt in BAND_SCALAR_DTYPES.items():
            values = np.asarray(batch[f"{b}_{f}"])
            absent = np.isnan(values) if np.issubdtype(dt, np.floating) else values < 0
            cols[f"{b}_{f}"] = Nullable(values, missing | absent)
        _check_shape(batch, f"{b}_coefficients", N_COEFF)
        _check_shape(batch, f"{b}_coefficient_errors", N_COEFF)
        cols[f"{b}_coefficients"] = Nullable(batch[f"{b}_coefficients"].astype("<f8", copy=False), missing)
        cols[f"{b}_coefficient_errors"] = Nullable(batch[f"{b}_coefficient_errors"].astype("<f4", copy=False),
                                                   missing)
    cols["source_file"] = [source_file] * n
    return cols


def write_xp_batch(conn: Connection, batch: XPBatch, source_file: str | None) -> int:
    """Upsert a batch into xp_spectra, and into xp_correlations when the batch carries correlations (a batch
    read without correlations leaves stored correlations untouched). Returns the number of spectra written."""
    if len(batch) == 0:
        return 0
    n = upsert_rows(conn, "xp_spectra", xp_spectra_columns(batch, source_file))
    if batch.has_correlations:
        corr: dict[str, Any] = {"source_id": batch["source_id"].astype(np.int64)}
        for b in BANDS:
            _check_shape(batch, f"{b}_coefficient_correlations", N_CORR)
            corr[f"{b}_coefficient_correlations"] = Nullable(
                batch[f"{b}_coefficient_correlations"].astype("<f4", copy=False), np.asarray(batch[f"{b}_missing"]))
        upsert_rows(conn, "xp_correlations", corr)
    return n


def write_photometry(conn: Connection, cols: Mapping[str, Any]) -> int:
    """Upsert photometry rows: ``cols`` has ``source_id`` and any of PHOTOMETRY_COLUMNS and POSITION_COLUMNS
    (NaN → NULL). Columns not given are left as stored for existing rows."""
    known = PHOTOMETRY_COLUMNS + POSITION_COLUMNS
    unknown = set(cols) - set(known)
    if unknown:
        raise KeyError(f"photometry: unknown column(s) {sorted(unknown)}; expected {known}")
    return upsert_rows(conn, "photometry", {k: v for k, v in cols.items()})
