"""Reading spectra into numpy arrays in the model's order, and counting or listing the selected stars.

PostgreSQL streams binary COPY blocks (db/copy_stream.py), SQLite runs one SELECT per block
(db/spectra_blocks.py); large PostgreSQL reads may run as parallel streams (db/parallel_read.py). No per-row
Python on either path beyond what the driver does.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db import copy_stream, parallel_read, spectra_blocks
from db.schema import xp_correlations
from db.selection import Selection
from db.spectra_blocks import SelectionLike, allocate, as_selection, drop_ids, fill, prepare_ids, resize
from shared.progress import Progress

DEFAULT_CHUNK_ROWS = 100_000


def _estimated_rows(engine: Engine, selection: Selection, with_correlations: bool) -> int:
    """Rows to allocate up front: the id list's length, or the PostgreSQL planner's estimate (``EXPLAIN``,
    no scan; ingest runs ANALYZE), a little padded; 0 when unknown (SQLite) or implausibly large. Over-
    estimates cost only address space: pages of ``np.empty`` that are never written are never mapped."""
    if selection.source_ids is not None:
        rows = len(set(selection.source_ids))
        if selection.limit is not None:
            rows = min(rows, selection.limit)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            plan: Any = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + selection.sql("s.source_id")).scalar()
        if isinstance(plan, str):
            plan = json.loads(plan)
        rows = int(plan[0]["Plan"]["Plan Rows"] * 1.05) + 64
    else:
        return 0
    row_bytes = sum(a.itemsize * int(np.prod(a.shape[1:])) for a in allocate(0, with_correlations).values())
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return rows if rows * row_bytes < memory // 2 else 0


def iter_spectra(engine: Engine, selection: SelectionLike = None, *, with_correlations: bool = False,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: Progress | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield the selected spectra in source_id order, ``chunk_rows`` at a time (bounded memory).
    Each chunk is a dict as described in ``read_spectra``."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
    selection = as_selection(selection)
    total = count(engine, selection) if progress else None
    out, filled = allocate(chunk_rows, with_correlations), 0
    for parts in spectra_blocks.iter_blocks(engine, selection, with_correlations, None, progress, total):
        n, a = len(parts["source_id"]), 0
        while a < n:
            take = min(n - a, chunk_rows - filled)
            filled += fill(out, filled, parts, a, a + take)
            a += take
            if filled == chunk_rows:
                yield out
                out, filled = allocate(chunk_rows, with_correlations), 0
        del parts        # let the next block reuse the raw buffer
    if filled:
        resize(out, filled)
        yield out


def _narrowed(selection: Selection, source_id_range: tuple[int, int] | None) -> Selection:
    if source_id_range is None:
        return selection
    lo, hi = source_id_range
    lo = lo if selection.source_id_lo is None else max(lo, selection.source_id_lo)
    hi = hi if selection.source_id_hi is None else min(hi, selection.source_id_hi)
    return selection.replace(source_id_lo=lo, source_id_hi=hi)


def _parallel(engine: Engine, selection: Selection, size: int, streams: int) -> bool:
    """Whether a read is worth splitting into ``streams`` streams (and can be)."""
    return (size >= parallel_read.PARALLEL_MIN_ROWS and streams > 1 and engine.dialect.name == "postgresql"
            and selection.source_ids is None and selection.limit is None and copy_stream.fast_copy_available())


def read_spectra(engine: Engine, selection: SelectionLike = None, *, with_correlations: bool = False,
                 source_id_range: tuple[int, int] | None = None, chunk_rows: int | None = None,
                 progress: Progress | None = None, expected_rows: int | None = None,
                 streams: int = 1) -> dict[str, np.ndarray]:
    """Read spectra into numpy, ordered by source_id.

    ``selection``: a Selection, a list/array of source ids (stars not stored are simply absent), or None for
    every stored spectrum. ``source_id_range`` (inclusive lo, hi) narrows it further (a shard).
    Returns ``source_id`` (N,) int64, ``coefficients`` (N, 110) float64 BP then RP, ``errors`` (N, 110)
    float32, ``phot_g_mean_flux`` (N,) float64 (NaN without photometry), ``bp_missing``/``rp_missing`` (N,)
    bool (a missing band's coefficients and errors are NaN); with ``with_correlations``: ``correlations``
    (N, 2, 1485) float32 (NaN where absent) and ``has_correlations`` (N,) bool.
    ``chunk_rows``: rows per query (default: about QUERY_BYTES of raw rows). ``expected_rows``: how many
    rows the caller expects (e.g. a shard's size), so the result is allocated once at the right size.
    ``streams``: parallel read streams for a large PostgreSQL read of a range (Settings.read_streams; 1 = one).
    Memory: the result plus one query's raw rows (~QUERY_BYTES); use ``iter_spectra`` to stream instead.
    """
    selection = _narrowed(as_selection(selection), source_id_range)
    # Sized once from the planner's estimate (no COUNT scan); grown geometrically in place if it was low,
    # trimmed at the end. No read-ahead thread: psycopg2 takes the GIL for every row it receives, and
    # a second thread copying blocks out made reads no faster while costing 55 % more CPU (measured).
    size = expected_rows if expected_rows is not None else _estimated_rows(engine, selection, with_correlations)
    if _parallel(engine, selection, size, streams):
        read = parallel_read.read_streams(engine, selection, streams, with_correlations, chunk_rows, progress)
        if read is not None:
            return read
    out, filled = allocate(max(0, int(size)), with_correlations), 0
    for parts in spectra_blocks.iter_blocks(engine, selection, with_correlations, chunk_rows, progress, None):
        n = len(parts["source_id"])
        capacity = len(out["source_id"])
        if filled + n > capacity:
            resize(out, max(filled + n, 2 * capacity))
        filled += fill(out, filled, parts)
        del parts        # let the next block reuse the raw buffer
    resize(out, filled)
    return out


def selected_source_ids(engine: Engine, selection: SelectionLike = None) -> np.ndarray:
    """The selected source ids, sorted (int64)."""
    selection = as_selection(selection)
    with engine.connect() as conn:
        prepare_ids(conn, selection)
        try:
            sql = selection.sql("s.source_id")
            if conn.dialect.name == "postgresql":
                rows = copy_stream.parse_binary_rows(copy_stream.copy_out(conn, sql), [("source_id", ">i8", 8)])
                ids = rows["source_id"].astype(np.int64)
            else:
                ids = np.array([r[0] for r in conn.exec_driver_sql(sql)], np.int64)
        finally:
            drop_ids(conn, selection)
            conn.commit()
    return ids


def count(engine: Engine, selection: SelectionLike = None) -> int:
    """How many stars the selection holds."""
    selection = as_selection(selection)
    with engine.connect() as conn:
        prepare_ids(conn, selection)
        try:
            if selection.limit is None:
                sql = f"SELECT COUNT(*) FROM {selection.from_clause()} WHERE {selection.where_clause()}"
            else:
                sql = f"SELECT COUNT(*) FROM ({selection.sql('s.source_id')}) q"
            n = conn.exec_driver_sql(sql).scalar_one()
        finally:
            drop_ids(conn, selection)
            conn.commit()
    return int(n)


def has_correlations(engine: Engine, selection: Selection) -> bool:
    """Whether any star in the selection's source_id range has stored correlations: one index probe."""
    query = sa.select(xp_correlations.c.source_id)
    if selection.source_id_lo is not None:
        query = query.where(xp_correlations.c.source_id >= int(selection.source_id_lo))
    if selection.source_id_hi is not None:
        query = query.where(xp_correlations.c.source_id <= int(selection.source_id_hi))
    with engine.connect() as conn:
        return bool(conn.execute(sa.select(query.exists())).scalar())
