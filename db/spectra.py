"""XP spectra and photometry in and out of the database, fast.

Writes go through db.bulk (COPY on PostgreSQL). Reads return numpy arrays in the model's order:
PostgreSQL streams ``COPY (SELECT …) TO STDOUT (FORMAT binary)`` whose rows all have the same size (missing
values are COALESCEd to NaN blobs), so one ``np.frombuffer`` with a structured dtype parses them; SQLite runs
one SELECT and joins the blobs. No per-row Python on either path beyond what the driver does.

Where the read time went, and what was done about it (200k spectra, bench/bench_ingest.py): collecting
psycopg2's per-row bytes in a list and joining them, then copying into fresh arrays, spent most of its time
in page faults. Now the rows land in one BytesIO reused query after query (blocks of ~QUERY_BYTES, so it
stays mapped), array payloads are copied as raw bytes rows, and the result grows in place by realloc.
(Fetching the next block in a thread while copying this one was measured slower on two busy cores.)
"""
from __future__ import annotations

import io
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from sqlalchemy.engine import Connection, Engine

from db import partitions
from db.bulk import Nullable, fill_temp_table, upsert_rows
from db.selection import ID_TABLE, Selection
from shared.xp import BAND_SCALAR_DTYPES, BANDS, N_COEFF, N_CORR, PHOTOMETRY_COLUMNS, POSITION_COLUMNS, XPBatch

Progress = Callable[[int, "int | None", str], None] | None
DEFAULT_CHUNK_ROWS = 100_000
# Raw bytes per COPY query while reading: the buffer is reused from query to query, so it stays mapped and
# mostly cached (~24k rows without correlations, ~2.4k with).
QUERY_BYTES = 32 << 20

_NAN64 = np.full(N_COEFF, np.nan, "<f8").tobytes()
_NAN32 = np.full(N_COEFF, np.nan, "<f4").tobytes()
_NANCORR = np.full(N_CORR, np.nan, "<f4").tobytes()


# --- writing ------------------------------------------------------------------------------------------------------
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


# --- reading: PostgreSQL binary COPY ----------------------------------------------------------------------------
def _pg_bytea(raw: bytes) -> str:
    return f"'\\x{raw.hex()}'::bytea"


def _sqlite_blob(raw: bytes) -> str:
    return f"X'{raw.hex()}'"


def _select_list(pg: bool, with_correlations: bool) -> tuple[str, list[tuple[str, str, int]]]:
    """The SELECT list and its fields (name, numpy dtype of the payload, payload bytes)."""
    blob = _pg_bytea if pg else _sqlite_blob
    nan_flux = "'NaN'::float8" if pg else "NULL"
    items = [("s.source_id", "source_id", ">i8", 8), ("s.bp_missing", "bp_missing", "u1", 1),
             ("s.rp_missing", "rp_missing", "u1", 1),
             (f"COALESCE(p.phot_g_mean_flux, {nan_flux})", "phot_g_mean_flux", ">f8", 8)]
    for b in BANDS:
        items.append((f"COALESCE(s.{b}_coefficients, {blob(_NAN64)})", f"{b}_coefficients", "<f8", 8 * N_COEFF))
    for b in BANDS:
        items.append((f"COALESCE(s.{b}_coefficient_errors, {blob(_NAN32)})", f"{b}_errors", "<f4", 4 * N_COEFF))
    if with_correlations:
        items.append(("c.source_id IS NOT NULL", "has_correlations", "u1", 1))
        for b in BANDS:
            items.append((f"COALESCE(c.{b}_coefficient_correlations, {blob(_NANCORR)})", f"{b}_correlations",
                          "<f4", 4 * N_CORR))
    return ", ".join(i[0] for i in items), [(i[1], i[2], i[3]) for i in items]


def _selection_sql(selection: Selection, select: str, with_correlations: bool) -> str:
    sql = selection.sql(select)
    if with_correlations:   # add the correlations join after the photometry join
        photometry = f"LEFT JOIN photometry p ON p.source_id = s.source_id{selection.range_on('p')}"
        sql = sql.replace(photometry, f"{photometry} LEFT JOIN xp_correlations c ON c.source_id = s.source_id"
                                      f"{selection.range_on('c')}", 1)
    return sql


def _blob_sizes(fields: list[tuple[str, str, int]]) -> dict[str, int]:
    return {name: size for name, dt, size in fields if dt.startswith("<")}


def _row_dtype(fields: list[tuple[str, str, int]]) -> np.dtype:
    """One binary-COPY row: field count, then (length, payload) per field; array payloads stay raw bytes."""
    spec: list[tuple] = [("_nfields", ">i2")]
    for name, dt, size in fields:
        spec.append((f"_len_{name}", ">i4"))
        spec.append((name, np.uint8, (size,)) if dt.startswith("<") else (name, dt))
    return np.dtype(spec)


def _rows_per_query(fields: list[tuple[str, str, int]]) -> int:
    return max(1, QUERY_BYTES // _row_dtype(fields).itemsize)


try:
    import psycopg2  # noqa: F401 — loads the libpq that _pgcopy looks for

    from db import _pgcopy
except ImportError:          # built without a C compiler: one stream through psycopg2's copy_expert
    _pgcopy = None


def fast_copy_available() -> bool:
    """Whether COPY output can be received without the GIL (db/_pgcopy.c), which parallel reads need."""
    return _pgcopy is not None and _pgcopy.available()


class _CopyBuffer:
    """Reusable in-memory sinks for ``COPY … TO STDOUT``.

    Default: psycopg2's copy_expert into a BytesIO, which appends in C and, rewound for the next query,
    keeps its (already mapped) memory. With ``reserve`` (the most bytes one query can return) the rows are
    received by db/_pgcopy.c instead, without the GIL, into a reused numpy buffer: no faster for one stream
    (libpq and the socket dominate), but two streams on two threads then really run in parallel. A buffer
    that arrays over the last block still use is never overwritten: a new one is taken instead."""

    def __init__(self, reserve: int = 0) -> None:
        self._io = io.BytesIO()
        self._reserve = reserve if fast_copy_available() else 0
        self._buf: np.ndarray | None = None

    def fetch(self, conn: Connection, sql: str) -> memoryview:
        """The whole binary COPY output of ``sql``."""
        copy = f"COPY ({sql}) TO STDOUT WITH (FORMAT binary)"
        if self._reserve:
            if self._buf is None or sys.getrefcount(self._buf) > 2:    # still referenced by the caller
                self._buf = np.empty(self._reserve, np.uint8)
            try:
                n = _pgcopy.copy_out(conn.connection.dbapi_connection.pgconn_ptr, copy, self._buf)
            except RuntimeError as exc:
                raise _dbapi_error(str(exc)) from None
            if n >= 0:
                return memoryview(self._buf)[:n]
            # more than a block can hold (a stored array of the wrong length): fetch it all the usual way,
            # and the row parser names the problem
        self._io.seek(0)
        try:
            self._io.write(b"")          # BytesIO refuses writes while its memory is exported
        except BufferError:
            self._io = io.BytesIO()
        cur = conn.connection.cursor()
        try:
            cur.copy_expert(copy, self._io)
        finally:
            cur.close()
        return self._io.getbuffer()[:self._io.tell()]


def _dbapi_error(message: str) -> Exception:
    """The psycopg2 exception psycopg2 itself would raise, as near as libpq's message tells."""
    lost = ("server closed the connection", "no connection to the server", "could not receive data",
            "terminating connection")
    cls = psycopg2.OperationalError if any(t in message for t in lost) else psycopg2.DatabaseError
    return cls(message.strip())


def _pg_copy_out(conn: Connection, sql: str) -> memoryview:
    """The whole binary COPY output of ``sql`` in a fresh buffer (for one-off queries)."""
    return _CopyBuffer().fetch(conn, sql)


def _parse_binary_rows(raw, fields: list[tuple[str, str, int]]) -> np.ndarray:
    """The rows of a binary COPY as a structured array over ``raw`` (no copy); array fields are raw bytes."""
    dtype = _row_dtype(fields)
    head = bytes(raw[15:19])
    header = 19 + int.from_bytes(head, "big")   # signature, flags, extension length (+ extension)
    body = len(raw) - header - 2
    if body % dtype.itemsize:
        raise RuntimeError("database returned rows of unexpected size: a stored array has the wrong length "
                           "(check with `SELECT source_id FROM xp_spectra WHERE length(bp_coefficients) <> 440`)")
    rows = np.frombuffer(raw, dtype=dtype, count=body // dtype.itemsize, offset=header)
    for name, _, size in fields:
        if len(rows) and np.any(rows[f"_len_{name}"] != size):
            bad = rows["source_id"][rows[f"_len_{name}"] != size][:5]
            raise RuntimeError(f"database: field {name} has the wrong byte length for source_id(s) {bad.tolist()}")
    return rows


# --- reading: SQLite ----------------------------------------------------------------------------------------------
def _sqlite_rows(conn: Connection, sql: str, fields: list[tuple[str, str, int]]) -> dict[str, np.ndarray]:
    """One SELECT's rows as columns; array fields as raw bytes (n, size) uint8, like the PostgreSQL rows."""
    cur = conn.connection.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    n = len(rows)
    columns = list(zip(*rows)) if n else [() for _ in fields]
    out: dict[str, np.ndarray] = {}
    for (name, dt, size), col in zip(fields, columns):
        if dt.startswith("<"):
            joined = b"".join(col)
            if len(joined) != n * size:
                lengths = np.fromiter((len(v) for v in col), np.int64, n)
                bad = np.asarray([r[0] for r in rows])[lengths != size][:5]
                raise RuntimeError(f"database: field {name} has the wrong byte length for source_id(s) "
                                   f"{bad.tolist()}")
            out[name] = np.frombuffer(joined, dtype=np.uint8).reshape(n, size)
        elif name == "phot_g_mean_flux":
            out[name] = np.array([np.nan if v is None else v for v in col], np.float64)
        else:
            out[name] = np.array(col, dtype=np.int64 if dt == ">i8" else bool)
    return out


# --- public reading API ---------------------------------------------------------------------------------------
def _as_selection(selection: Selection | Sequence[int] | np.ndarray | None) -> Selection:
    if selection is None:
        return Selection.everything()
    if isinstance(selection, Selection):
        return selection
    ids = np.unique(np.asarray(selection, dtype=np.int64))
    return Selection.everything().replace(source_ids=tuple(ids.tolist()))


def _prepare_ids(conn: Connection, selection: Selection) -> None:
    if selection.source_ids is not None:
        fill_temp_table(conn, ID_TABLE, {"source_id": ("bigint", np.unique(np.asarray(selection.source_ids,
                                                                                         np.int64)))})


def _drop_ids(conn: Connection, selection: Selection) -> None:
    if selection.source_ids is not None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ID_TABLE}")


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
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + selection.sql("s.source_id")).scalar()
        if isinstance(plan, str):
            plan = json.loads(plan)
        rows = int(plan[0]["Plan"]["Plan Rows"] * 1.05) + 64
    else:
        return 0
    row_bytes = sum(a.itemsize * int(np.prod(a.shape[1:])) for a in _allocate(0, with_correlations).values())
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return rows if rows * row_bytes < memory // 2 else 0


def _allocate(n: int, with_correlations: bool) -> dict[str, np.ndarray]:
    out = {"source_id": np.empty(n, np.int64), "coefficients": np.empty((n, 2 * N_COEFF), np.float64),
           "errors": np.empty((n, 2 * N_COEFF), np.float32), "phot_g_mean_flux": np.empty(n, np.float64),
           "bp_missing": np.empty(n, bool), "rp_missing": np.empty(n, bool)}
    if with_correlations:
        out["has_correlations"] = np.empty(n, bool)
        out["correlations"] = np.empty((n, 2, N_CORR), np.float32)
    return out


def _resize(out: dict[str, np.ndarray], n: int) -> None:
    """Grow or shrink the output arrays in place to ``n`` rows. realloc moves large blocks without copying
    (measured: ~2x faster than fresh arrays plus a copy, which fault in twice the pages)."""
    for arr in out.values():
        arr.resize((n,) + arr.shape[1:], refcheck=False)


def _put_le(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = the little-endian values whose raw bytes are ``src`` (rows of uint8). On little-endian
    machines that is a plain byte copy per row (fast even though the raw rows are unaligned)."""
    if sys.byteorder == "little":
        dst.view(np.uint8)[...] = src
    else:   # pragma: no cover - big-endian hosts
        dst[...] = np.ascontiguousarray(src).view(dst.dtype.newbyteorder("<")).reshape(dst.shape)


def _fill(out: dict[str, np.ndarray], lo: int, parts: Mapping[str, np.ndarray], a: int = 0,
          b: int | None = None) -> int:
    """Copy rows a:b of one block's parts (views of the raw rows) into the output arrays at row ``lo``;
    returns the number of rows copied."""
    b = len(parts["source_id"]) if b is None else b
    hi = lo + b - a
    out["source_id"][lo:hi] = parts["source_id"][a:b]
    _put_le(out["coefficients"][lo:hi, :N_COEFF], parts["bp_coefficients"][a:b])
    _put_le(out["coefficients"][lo:hi, N_COEFF:], parts["rp_coefficients"][a:b])
    _put_le(out["errors"][lo:hi, :N_COEFF], parts["bp_errors"][a:b])
    _put_le(out["errors"][lo:hi, N_COEFF:], parts["rp_errors"][a:b])
    out["phot_g_mean_flux"][lo:hi] = parts["phot_g_mean_flux"][a:b]
    out["bp_missing"][lo:hi] = parts["bp_missing"][a:b]
    out["rp_missing"][lo:hi] = parts["rp_missing"][a:b]
    if "correlations" in out:
        out["has_correlations"][lo:hi] = parts["has_correlations"][a:b]
        _put_le(out["correlations"][lo:hi, 0], parts["bp_correlations"][a:b])
        _put_le(out["correlations"][lo:hi, 1], parts["rp_correlations"][a:b])
    return hi - lo


def _iter_blocks(engine: Engine, selection: Selection, with_correlations: bool, block_rows: int | None,
                 progress: Progress, total: int | None, gil_free: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Keyset pagination over source_id: each block is one query of at most ``block_rows`` rows (default:
    ~QUERY_BYTES of raw rows). On PostgreSQL the yielded arrays are views of a reused buffer, valid only until
    the next block is requested: copy what you keep. ``gil_free``: receive through db/_pgcopy.c (for
    parallel streams)."""
    remaining = selection.limit
    last: int | None = None
    done = 0
    with engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        select, fields = _select_list(pg, with_correlations)
        block_rows = block_rows or _rows_per_query(fields)
        reserve = block_rows * _row_dtype(fields).itemsize + 64 if gil_free else 0
        buffer = _CopyBuffer(reserve) if pg else None
        _prepare_ids(conn, selection)
        try:
            while remaining is None or remaining > 0:
                take = block_rows if remaining is None else min(block_rows, remaining)
                lo = selection.source_id_lo if last is None else (
                    last + 1 if selection.source_id_lo is None else max(last + 1, selection.source_id_lo))
                sql = _selection_sql(selection.replace(source_id_lo=lo, limit=take), select, with_correlations)
                if pg:
                    rows = _parse_binary_rows(buffer.fetch(conn, sql), fields)
                    parts = {name: rows[name] for name, _, _ in fields}
                    del rows
                else:
                    parts = _sqlite_rows(conn, sql, fields)
                n = len(parts["source_id"])
                if n == 0:
                    break
                done += n
                if remaining is not None:
                    remaining -= n
                last = int(parts["source_id"][-1])
                if progress:
                    progress(done, total, f"read {done} spectra")
                yield parts
                del parts
                if n < take:
                    break
        finally:
            _drop_ids(conn, selection)
            conn.commit()


def iter_spectra(engine: Engine, selection: Selection | Sequence[int] | np.ndarray | None = None, *,
                 with_correlations: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: Progress = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield the selected spectra in source_id order, ``chunk_rows`` at a time (bounded memory).
    Each chunk is a dict as described in ``read_spectra``."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
    selection = _as_selection(selection)
    total = count(engine, selection) if progress else None
    out, filled = _allocate(chunk_rows, with_correlations), 0
    for parts in _iter_blocks(engine, selection, with_correlations, None, progress, total):
        n, a = len(parts["source_id"]), 0
        while a < n:
            take = min(n - a, chunk_rows - filled)
            filled += _fill(out, filled, parts, a, a + take)
            a += take
            if filled == chunk_rows:
                yield out
                out, filled = _allocate(chunk_rows, with_correlations), 0
        del parts        # let the next block reuse the raw buffer
    if filled:
        _resize(out, filled)
        yield out


def read_spectra(engine: Engine, selection: Selection | Sequence[int] | np.ndarray | None = None, *,
                 with_correlations: bool = False, source_id_range: tuple[int, int] | None = None,
                 chunk_rows: int | None = None, progress: Progress = None,
                 expected_rows: int | None = None) -> dict[str, np.ndarray]:
    """Read spectra into numpy, ordered by source_id.

    ``selection``: a Selection, a list/array of source ids (stars not stored are simply absent), or None for
    every stored spectrum. ``source_id_range`` (inclusive lo, hi) narrows it further (a shard).
    Returns ``source_id`` (N,) int64, ``coefficients`` (N, 110) float64 BP then RP, ``errors`` (N, 110)
    float32, ``phot_g_mean_flux`` (N,) float64 (NaN without photometry), ``bp_missing``/``rp_missing`` (N,)
    bool (a missing band's coefficients and errors are NaN); with ``with_correlations``: ``correlations``
    (N, 2, 1485) float32 (NaN where absent) and ``has_correlations`` (N,) bool.
    ``chunk_rows``: rows per query (default: about QUERY_BYTES of raw rows). ``expected_rows``: how many
    rows the caller expects (e.g. a shard's size), so the result is allocated once at the right size.
    Memory: the result plus one query's raw rows (~QUERY_BYTES); use ``iter_spectra`` to stream instead.
    """
    selection = _as_selection(selection)
    if source_id_range is not None:
        lo, hi = source_id_range
        lo = lo if selection.source_id_lo is None else max(lo, selection.source_id_lo)
        hi = hi if selection.source_id_hi is None else min(hi, selection.source_id_hi)
        selection = selection.replace(source_id_lo=lo, source_id_hi=hi)
    # Sized once from the planner's estimate (no COUNT scan); grown geometrically in place if it was low,
    # trimmed at the end. No read-ahead thread: psycopg2 takes the GIL for every row it receives, and
    # a second thread copying blocks out made reads no faster while costing 55 % more CPU (measured).
    size = expected_rows if expected_rows is not None else _estimated_rows(engine, selection, with_correlations)
    streams = read_streams()
    if size >= PARALLEL_MIN_ROWS and streams > 1 and engine.dialect.name == "postgresql" \
            and selection.source_ids is None and selection.limit is None and fast_copy_available():
        out = _read_streams(engine, selection, streams, with_correlations, chunk_rows, progress)
        if out is not None:
            return out
    out, filled = _allocate(max(0, int(size)), with_correlations), 0
    for parts in _iter_blocks(engine, selection, with_correlations, chunk_rows, progress, None):
        n = len(parts["source_id"])
        capacity = len(out["source_id"])
        if filled + n > capacity:
            _resize(out, max(filled + n, 2 * capacity))
        filled += _fill(out, filled, parts)
        del parts        # let the next block reuse the raw buffer
    _resize(out, filled)
    return out


# Large PostgreSQL reads run as parallel streams on their own connections: over loopback TCP one stream is
# bound by libpq and the socket (the server alone is 2-3x faster), so a second stream on another core adds
# 1.2-1.4x on 2 cores. XPVAE_READ_STREAMS sets how many (1 = one stream); PARALLEL_STREAMS overrides it.
PARALLEL_STREAMS: int | None = None
PARALLEL_MIN_ROWS = 50_000


def read_streams() -> int:
    from shared.settings import get_settings
    return PARALLEL_STREAMS if PARALLEL_STREAMS is not None else get_settings().read_streams


def _histogram_splits(engine: Engine, selection: Selection, k: int) -> list[int]:
    """Up to k-1 increasing source_ids cutting the selection's id range into about equal parts, from the
    planner's histogram of xp_spectra.source_id (no scan); [] without statistics. A split near a partition
    bound moves onto it, so each stream scans partitions of its own."""
    with engine.connect() as conn:
        bounds = conn.exec_driver_sql(
            "SELECT histogram_bounds::text FROM pg_stats WHERE schemaname = current_schema() "
            "AND tablename = 'xp_spectra' AND attname = 'source_id'").scalar()
        part_bounds = partitions.table_partition_bounds(conn, "xp_spectra")
    if not bounds:
        return []
    ids = np.array([int(v) for v in bounds.strip("{}").split(",")], np.int64)
    lo = selection.source_id_lo if selection.source_id_lo is not None else ids[0]
    hi = selection.source_id_hi if selection.source_id_hi is not None else ids[-1]
    inside = ids[(ids >= lo) & (ids < hi)]
    if len(inside) < 2 * k:
        return []
    cuts = [len(inside) * j // k for j in range(1, k)]
    snapped = partitions.snap_cuts(inside, cuts, np.asarray(part_bounds, np.int64), len(inside) // (4 * k))
    # part j holds source_id <= split: a partition bound b ends the part before it at b - 1
    return sorted({bound - 1 if bound is not None else int(inside[pos]) for pos, bound in snapped})


def _count_parts(engine: Engine, selection: Selection, splits: list[int]) -> list[int]:
    """Stars of the selection in each part: source_id <= splits[0], …, > splits[-1]."""
    below = ", ".join(f"count(*) FILTER (WHERE s.source_id <= {m})" for m in splits)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT {below}, count(*) FROM {selection.from_clause()} WHERE {selection.where_clause()}").one()
    cumulative = [int(v) for v in row]
    return [b - a for a, b in zip([0] + cumulative[:-1], cumulative)]


def _read_streams(engine: Engine, selection: Selection, k: int, with_correlations: bool,
                  chunk_rows: int | None, progress: Progress) -> dict[str, np.ndarray] | None:
    """Read k parts of the selection on k threads, each with its own connection, straight into their rows
    of one output. One more connection counts the parts meanwhile (each stream has its first block in hand
    before it waits for the count). None when it cannot split, or when a part did not hold the rows counted
    (a concurrent write): the caller then reads in one stream."""
    splits = _histogram_splits(engine, selection, k)
    if not splits:
        return None
    los = [selection.source_id_lo] + [m + 1 for m in splits]
    his = splits + [selection.source_id_hi]
    parts_sel = [selection.replace(source_id_lo=lo, source_id_hi=hi) for lo, hi in zip(los, his)]
    state: dict[str, Any] = {}
    ready = threading.Event()
    lock = threading.Lock()
    done = [0] * len(parts_sel)

    def count() -> None:
        try:
            rows = _count_parts(engine, selection, splits)
            state["rows"] = rows
            state["offsets"] = [sum(rows[:j]) for j in range(len(rows))]
            state["out"] = _allocate(sum(rows), with_correlations)
        finally:
            ready.set()

    def stream(j: int) -> bool:
        filled = 0
        for parts in _iter_blocks(engine, parts_sel[j], with_correlations, chunk_rows, None, None, gil_free=True):
            ready.wait()
            if "out" not in state:
                return False               # the count failed: its exception is raised below
            m = len(parts["source_id"])
            if filled + m > state["rows"][j]:
                return False
            filled += _fill(state["out"], state["offsets"][j] + filled, parts)
            del parts
            if progress:
                with lock:
                    done[j] = filled
                    progress(sum(done), sum(state["rows"]), f"read {sum(done)} spectra")
        ready.wait()
        return "rows" in state and filled == state["rows"][j]

    with ThreadPoolExecutor(max_workers=len(parts_sel) + 1, thread_name_prefix="xpvae-read") as pool:
        counted = pool.submit(count)
        streams = [pool.submit(stream, j) for j in range(len(parts_sel))]
        ok = [f.result() for f in streams]
        counted.result()
    return state["out"] if all(ok) else None


def selected_source_ids(engine: Engine, selection: Selection | Sequence[int] | np.ndarray | None = None
                        ) -> np.ndarray:
    """The selected source ids, sorted (int64)."""
    selection = _as_selection(selection)
    with engine.connect() as conn:
        _prepare_ids(conn, selection)
        try:
            sql = selection.sql("s.source_id")
            if conn.dialect.name == "postgresql":
                rows = _parse_binary_rows(_pg_copy_out(conn, sql), [("source_id", ">i8", 8)])
                ids = rows["source_id"].astype(np.int64)
            else:
                ids = np.array([r[0] for r in conn.exec_driver_sql(sql)], np.int64)
        finally:
            _drop_ids(conn, selection)
            conn.commit()
    return ids


def count(engine: Engine, selection: Selection | Sequence[int] | np.ndarray | None = None) -> int:
    """How many stars the selection holds."""
    selection = _as_selection(selection)
    with engine.connect() as conn:
        _prepare_ids(conn, selection)
        try:
            if selection.limit is None:
                sql = f"SELECT COUNT(*) FROM {selection.from_clause()} WHERE {selection.where_clause()}"
            else:
                sql = f"SELECT COUNT(*) FROM ({selection.sql('s.source_id')}) q"
            n = conn.exec_driver_sql(sql).scalar_one()
        finally:
            _drop_ids(conn, selection)
            conn.commit()
    return int(n)


def source_id_quantiles(engine: Engine, selection: Selection | None, n_shards: int) -> list[tuple[int, int, int]]:
    """Split a selection into at most ``n_shards`` contiguous source_id ranges of near-equal size:
    [(lo, hi, n)], inclusive bounds, together covering every selected star exactly once."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, not {n_shards}")
    return quantile_ranges(selected_source_ids(engine, selection), n_shards)


def quantile_ranges(ids: np.ndarray, n_shards: int, bounds: np.ndarray | None = None
                    ) -> list[tuple[int, int, int]]:
    """Sorted ids cut into at most ``n_shards`` contiguous runs of near-equal size: [(lo, hi, n)].

    A cut within a quarter of a shard of a partition bound (default: the sky-region bounds of db/partitions.py)
    moves onto it, so most shards read and replace rows of one partition only; shards stay within ±50 % of
    the even size."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, not {n_shards}")
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return []
    sizes = [len(p) for p in np.array_split(np.empty(len(ids), np.int8), n_shards)]
    cuts = np.cumsum(sizes)[:-1].tolist()
    bounds = partitions.inner_bounds() if bounds is None else bounds
    snapped = [pos for pos, _ in partitions.snap_cuts(ids, cuts, bounds, len(ids) // (4 * n_shards))]
    return [(int(part[0]), int(part[-1]), int(len(part))) for part in np.split(ids, snapped) if len(part)]
