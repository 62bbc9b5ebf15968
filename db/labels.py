"""APOGEE labels in and out of the database.

``write_apogee`` upserts rows on (apogee_id, telescope, field) with their quality flags (shared.quality,
computed per row from the row itself), then recomputes the cross-match primary (``is_primary``) in SQL for
every Gaia source the load touched — old and new ids of the rows written — so the result never depends on the
order files were loaded in. ``read_labels`` returns the primary label row per requested Gaia source.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from sqlalchemy.engine import Connection, Engine

from db.bulk import Nullable, fill_temp_table, upsert_rows
from db.selection import ID_TABLE, Selection
from shared.quality import EXTRATARG_DUPLICATE_BIT, FLAG_NAMES, quality_flags
from shared.xp import APOGEE_COLUMNS

KEY = ("apogee_id", "telescope", "field")
BITMASKS = ("aspcapflag", "starflag", "extratarg")
_KEYS_TABLE, _AFFECTED_TABLE = "_apogee_keys", "_apogee_affected"


def apogee_columns(labels: Mapping[str, Any], source_file: str | None) -> dict[str, Any]:
    """The apogee_labels columns for label arrays: text never NULL (''), NaN/-9999 and negative bitmasks NULL."""
    if "apogee_id" not in labels:
        raise KeyError("APOGEE labels: the apogee_id column is required")
    n = len(labels["apogee_id"])
    cols: dict[str, Any] = {}
    for name, kind in APOGEE_COLUMNS.items():
        if name not in labels:
            continue
        values = labels[name]
        if len(values) != n:
            raise ValueError(f"APOGEE labels: column {name} has {len(values)} rows, apogee_id has {n}")
        if kind is str:
            cols[name] = ["" if v is None else str(v).strip() for v in np.asarray(values, dtype=object).tolist()]
        elif name in BITMASKS:
            raw = np.asarray(values, np.float64)
            unknown = ~np.isfinite(raw) | (raw < 0)
            cols[name] = Nullable(np.where(unknown, 0, raw).astype(np.int64), unknown)
        elif name == "gaia_source_id":
            raw = np.asarray(values)
            unknown = np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(n, bool)
            cols[name] = Nullable(np.where(unknown, 0, raw).astype(np.int64), unknown)
        else:
            raw = np.asarray(values, np.float64).copy()
            raw[raw <= -9999.0] = np.nan
            cols[name] = raw.astype(np.float32)
    for k in KEY:
        cols.setdefault(k, [""] * n)
    flags = quality_flags(labels)
    for f in FLAG_NAMES:
        cols[f] = flags[f]
    cols["high_alpha"] = Nullable(flags["high_alpha"], ~flags["high_alpha_known"])
    cols["source_file"] = [source_file] * n
    return cols


def _collect_affected(conn: Connection) -> None:
    conn.exec_driver_sql(
        f"INSERT INTO {_AFFECTED_TABLE} (gaia_source_id) SELECT DISTINCT a.gaia_source_id FROM apogee_labels a "
        f"JOIN {_KEYS_TABLE} k ON a.apogee_id = k.apogee_id AND a.telescope = k.telescope AND a.field = k.field "
        "WHERE a.gaia_source_id IS NOT NULL")


def recompute_primary(conn: Connection, only_affected: bool = True) -> None:
    """Set is_primary for the Gaia sources in the affected temp table (or all of them): per gaia_source_id > 0,
    among rows with EXTRATARG bit 4 (DUPLICATE) clear or unknown, the highest SNR (unknown last); ties go to
    the smallest (apogee_id, telescope, field)."""
    scope = f"gaia_source_id IN (SELECT gaia_source_id FROM {_AFFECTED_TABLE})" if only_affected else "1=1"
    bit = 1 << EXTRATARG_DUPLICATE_BIT
    conn.exec_driver_sql(f"""
        UPDATE apogee_labels SET is_primary = (id IN (
            SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (PARTITION BY gaia_source_id
                                              ORDER BY snr DESC NULLS LAST, apogee_id, telescope, field) AS rn
                FROM apogee_labels
                WHERE {scope} AND gaia_source_id > 0 AND (extratarg IS NULL OR (extratarg & {bit}) = 0)) r
            WHERE rn = 1))
        WHERE {scope}""")
    # Rows that lost their Gaia id can never be primary.
    conn.exec_driver_sql("UPDATE apogee_labels SET is_primary = FALSE "
                         "WHERE is_primary AND (gaia_source_id IS NULL OR gaia_source_id <= 0)")


def write_apogee(conn: Connection, labels: Mapping[str, Any], source_file: str | None) -> int:
    """Upsert APOGEE label rows (one transaction: the caller's) and refresh the cross-match; returns rows sent."""
    cols = apogee_columns(labels, source_file)
    n = len(cols["apogee_id"])
    if n == 0:
        return 0
    fill_temp_table(conn, _KEYS_TABLE, {k: ("text", cols[k]) for k in KEY})
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_AFFECTED_TABLE}")
    conn.exec_driver_sql(f"CREATE TEMP TABLE {_AFFECTED_TABLE} (gaia_source_id BIGINT)")
    _collect_affected(conn)          # ids the rows had before this load
    written = upsert_rows(conn, "apogee_labels", cols, key=KEY)
    _collect_affected(conn)          # ids they have now
    recompute_primary(conn)
    conn.exec_driver_sql(f"DROP TABLE {_KEYS_TABLE}")
    conn.exec_driver_sql(f"DROP TABLE {_AFFECTED_TABLE}")
    return written


# --- reading --------------------------------------------------------------------------------------------------------
def read_labels(engine: Engine, selection: Selection | Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """The primary APOGEE label row of each star, aligned with the requested ids.

    ``selection``: source ids (output in that order, repeats allowed) or a Selection (output in its source_id
    order). Returns ``source_id``, ``labelled`` (bool: a primary match exists), every APOGEE column (floats
    float64 with NaN, integers int64 with -1 for unknown, strings as object arrays with ''), the flags
    pristine/good/giant/cool_giant (bool), ``high_alpha`` (bool) and ``high_alpha_known`` (bool)."""
    if isinstance(selection, Selection):
        from db.spectra import selected_source_ids
        ids = selected_source_ids(engine, selection)
    else:
        ids = np.asarray(selection, dtype=np.int64).ravel()
    names = list(APOGEE_COLUMNS) + list(FLAG_NAMES)
    unique = np.unique(ids)
    with engine.connect() as conn:
        fill_temp_table(conn, ID_TABLE, {"source_id": ("bigint", unique)})
        try:
            rows = conn.exec_driver_sql(
                f"SELECT a.gaia_source_id, {', '.join('a.' + c for c in names)} FROM apogee_labels a "
                f"JOIN {ID_TABLE} i ON i.source_id = a.gaia_source_id WHERE a.is_primary").fetchall()
        finally:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ID_TABLE}")
            conn.commit()
    found = np.array([r[0] for r in rows], np.int64)
    order = np.argsort(found)
    found = found[order]
    pos = np.searchsorted(found, ids)
    pos_clipped = np.minimum(pos, max(len(found) - 1, 0))
    labelled = (pos < len(found)) & (found[pos_clipped] == ids) if len(found) else np.zeros(len(ids), bool)
    columns = list(zip(*rows)) if rows else [()] * (len(names) + 1)
    out: dict[str, np.ndarray] = {"source_id": ids, "labelled": labelled}
    for j, name in enumerate(names, start=1):
        raw = [columns[j][i] for i in order] if rows else []
        kind = APOGEE_COLUMNS.get(name)
        fill: Any
        picked: Any
        if kind is str:
            values, fill = np.array(raw, dtype=object), ""
        elif name in FLAG_NAMES:
            values = np.array([v for v in raw], dtype=object)
            fill = None
        elif kind is not None and kind.__name__ == "int64":
            values, fill = np.array([-1 if v is None else v for v in raw], np.int64), -1
        else:
            values, fill = np.array([np.nan if v is None else v for v in raw], np.float64), np.nan
        if name in FLAG_NAMES:
            picked = values[pos_clipped] if len(values) else np.full(len(ids), None, object)
            picked = np.where(labelled, picked, None)
            if name == "high_alpha":
                out["high_alpha_known"] = np.array([v is not None for v in picked], bool)
            out[name] = np.array([bool(v) if v is not None else False for v in picked], bool)
            continue
        if len(values):
            picked = values[pos_clipped]
            out[name] = np.where(labelled, picked, fill) if kind is not str else \
                np.where(labelled, picked, "").astype(object)
        else:
            out[name] = np.full(len(ids), fill, dtype=object if kind is str else
                                (np.int64 if fill == -1 else np.float64))
    return out
