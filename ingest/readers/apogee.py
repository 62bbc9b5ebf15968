"""APOGEE DR17 labels (allStar or a subset of it) as chunks keyed by ``shared.xp.APOGEE_COLUMNS``.

Accepts the DR17 upper-case names (GAIAEDR3_SOURCE_ID, TEFF, …) and lower-case variants such as the real
subset file (``dr3_source_id``). Conventions (docs/data-formats.md §3): DR16's -9999 sentinel and NaN both mean
"no value" (NaN); J/H/K of 99.999 are bad (NaN); an unmatched Gaia source id is 0. A column the file lacks
is filled (NaN for floats, 0 for flags and ids, "" for text) and a note is added to the report
(``report.notes``). FITS files are memory-mapped and only the needed columns are decoded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ingest.readers.errors import WrongKindError
from ingest.readers.tables import ROW, add_note, iter_table_chunks
from shared.xp import APOGEE_COLUMNS, ReadReport

DR16_MISSING = -9999.0
BAD_MAG = 99.0            # 2MASS J/H/K: 99.999 flags a bad magnitude

# Lower-cased source names per output column, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "gaia_source_id": ("gaiaedr3_source_id", "dr3_source_id", "gaia_source_id", "gaiadr3_source_id",
                       "source_id", "ids"),
    "gaia_g_mag": ("gaiaedr3_phot_g_mean_mag", "gaia_g_mag", "phot_g_mean_mag"),
    "gaia_bp_mag": ("gaiaedr3_phot_bp_mean_mag", "gaia_bp_mag", "phot_bp_mean_mag"),
    "gaia_rp_mag": ("gaiaedr3_phot_rp_mean_mag", "gaia_rp_mag", "phot_rp_mean_mag"),
    "parallax": ("gaiaedr3_parallax", "parallax"),
    "parallax_error": ("gaiaedr3_parallax_error", "parallax_error"),
}
REQUIRED = ("apogee_id",)                    # without it a row cannot be a label row at all
ACTIONS = ("lz", "jz", "jr")                 # carried along when present (published catalogue)


def _kind(dtype) -> str:
    if dtype is str:
        return "str"
    return "int" if np.issubdtype(dtype, np.integer) else "float"


def source_names(column: str) -> tuple[str, ...]:
    return ALIASES.get(column, (column,))


def normalise_labels(raw: Mapping[str, np.ndarray], n: int, report: ReadReport | None = None,
                     ) -> dict[str, np.ndarray]:
    """Map lower-cased raw columns onto APOGEE_COLUMNS with the sentinel rules; absent -> defaults + note."""
    out: dict[str, np.ndarray] = {}
    for col, dtype in APOGEE_COLUMNS.items():
        src = next((a for a in source_names(col) if a in raw), None)
        kind = _kind(dtype)
        if src is None:
            if report is not None:
                fill = {"str": '""', "int": "0", "float": "NaN"}[kind]
                add_note(report, f"column {col.upper()} absent: filled with {fill}")
            out[col] = (np.full(n, "", dtype=str) if kind == "str" else
                        np.zeros(n, dtype) if kind == "int" else np.full(n, np.nan, dtype))
            continue
        v = raw[src]
        if kind == "str":
            out[col] = np.asarray(v, dtype=str)
        elif kind == "int":
            v = np.asarray(v)
            if v.dtype.kind == "f":
                v = np.nan_to_num(v, nan=0)
            v = v.astype(np.int64)
            # flags: -1 (missing in our readers) means "no bits"; ids: anything <= 0 means unmatched
            out[col] = np.where(v < 0, 0, v).astype(dtype)
        else:
            v = np.asarray(v, np.float64).copy()
            v[v <= DR16_MISSING + 0.5] = np.nan
            if col in ("j", "h", "k"):
                v[v > BAD_MAG] = np.nan
            out[col] = v.astype(dtype)
    for a in ACTIONS:
        if a in raw:
            out[a] = np.asarray(raw[a], np.float64)
    return out


def read_apogee(path: str | Path, report: ReadReport | None = None,
                chunk_rows: int = 100_000) -> Iterator[dict[str, np.ndarray]]:
    """Yield label chunks (keys: APOGEE_COLUMNS, plus lz/jz/jr when the file has them).

    Raises WrongKindError if the file has no APOGEE_ID column or no Gaia source id column at all.
    """
    path = Path(path)
    report = report if report is not None else ReadReport(str(path))
    spec: dict[str, str] = {}
    for col, dtype in APOGEE_COLUMNS.items():
        for name in source_names(col):
            spec[name] = _kind(dtype)
    for a in ACTIONS:
        spec[a] = "float"
    for chunk, present in iter_table_chunks(path, spec, chunk_rows, report):
        for col in REQUIRED + ("gaia_source_id",):
            if not any(a in present for a in source_names(col)):
                raise WrongKindError(str(path), f"not an APOGEE labels table: no {col.upper()} column (looked "
                                                f"for {', '.join(source_names(col))})")
        n = len(chunk[ROW])
        yield normalise_labels(chunk, n, report)
