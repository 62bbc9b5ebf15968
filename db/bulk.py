"""Bulk upserts with one interface and two backends.

``upsert_rows(conn, table, columns, key)`` writes column arrays into a table, inserting new keys and updating
existing ones, inside the caller's transaction (pass the connection of ``engine.begin()``):

- PostgreSQL: the rows are encoded in numpy as one ``COPY … (FORMAT binary)`` stream (no per-row Python).
  When none of the batch's keys exists yet (an index probe; the usual case for a first load or an
  inference shard that cleared its range) they are COPYed straight into the table, under a savepoint that
  falls back to the upsert if another writer got there first. Otherwise they are copied into a TEMP table,
  then ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE`` — rows whose values are unchanged are not
  rewritten, so a re-load leaves the table (and its dead-tuple count) as it was.
- SQLite: ``executemany`` of ``INSERT … ON CONFLICT (key) DO UPDATE``.

Column values (one entry per table column to write, all of length N):
- a 1-D numpy array or list for scalar columns; float NaN becomes NULL, ``None`` in a list becomes NULL;
- a 2-D numeric array (N, k) for a binary column: each row becomes k little-endian values (db/__init__.py);
- ``Nullable(values, null)`` to mark NULL rows explicitly (e.g. every column of a missing band).
Rows repeating a key within one call: the last one wins (a file that lists a source twice loads once).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db import partitions
from db.schema import metadata

PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
PG_COPY_TRAILER = struct.pack(">h", -1)
# Bytes per binary-COPY chunk kept in memory at once while encoding (two such buffers exist at a time).
ENCODE_CHUNK_BYTES = 32 << 20


@dataclass
class Nullable:
    """Column values plus an explicit NULL mask (True = NULL)."""
    values: Any
    null: np.ndarray


# --- column normalisation ---------------------------------------------------------------------------------------
# kind: numpy dtype for fixed-width kinds ('>i2' …), or 'bytes' / 'text' for variable-width ones.
_FIXED_KINDS = {sa.SmallInteger: ">i2", sa.Integer: ">i4", sa.BigInteger: ">i8", sa.REAL: ">f4",
                sa.Float: ">f8", sa.Double: ">f8", sa.Boolean: "u1"}


def column_kind(col_type: sa.types.TypeEngine) -> str:
    """The wire kind of a SQLAlchemy column type ('>i8', '>f4', 'u1', 'bytes', 'text')."""
    if isinstance(col_type, sa.LargeBinary):
        return "bytes"
    if isinstance(col_type, (sa.Text, sa.String)):
        return "text"
    for cls in (sa.SmallInteger, sa.BigInteger, sa.Integer, sa.Boolean, sa.REAL, sa.Double, sa.Float):
        if isinstance(col_type, cls):
            return _FIXED_KINDS[cls]
    raise TypeError(f"db.bulk: unsupported column type {col_type!r}")


_PG_TYPE_NAMES = {">i2": "smallint", ">i4": "integer", ">i8": "bigint", ">f4": "real", ">f8": "double precision",
                  "u1": "boolean", "bytes": "bytea", "text": "text"}


@dataclass
class _Col:
    name: str
    kind: str
    values: np.ndarray        # fixed kinds: (N,) numeric; bytes: (N, w) uint8 or object (N,); text: object (N,)
    null: np.ndarray          # (N,) bool


def _nones(values: Any) -> np.ndarray:
    return np.fromiter((v is None for v in values), bool, len(values))


def _from_sequence(kind: str, raw: list[Any] | tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A Python list as an array and its None mask (numbers get placeholders under the mask)."""
    if kind in ("text", "bytes"):
        return np.array(raw, dtype=object), _nones(raw)
    return np.array([0 if v is None else v for v in raw]), _nones(raw)


def _binary(name: str, arr: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary values: an (N, k) array as N rows of little-endian bytes, or an object array of bytes/None."""
    if arr.dtype == object:
        return arr, null | _nones(arr)
    if arr.ndim != 2:
        raise ValueError(f"db.bulk: binary column {name!r} needs a 2-D array (N, k), got {arr.shape}")
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(le).view(np.uint8).reshape(arr.shape[0], -1), null


def _fixed(name: str, kind: str, arr: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-width values: NaN and None are NULL; booleans and integers get placeholders under the mask."""
    if arr.ndim != 1:
        raise ValueError(f"db.bulk: column {name!r} needs a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        null = null | np.isnan(arr)
    elif arr.dtype == object:
        null = null | _nones(arr)
        arr = np.array([0 if v is None else v for v in arr])
    if kind == "u1":
        arr = arr.astype(bool)
    elif np.dtype(kind).kind == "i" and arr.dtype.kind == "f":
        arr = np.where(null, 0, arr)
    return arr, null


def _normalise(name: str, kind: str, raw: Any, n: int | None) -> _Col:
    null = None
    if isinstance(raw, Nullable):
        raw, null = raw.values, np.asarray(raw.null, bool)
    if isinstance(raw, (list, tuple)):
        raw, nones = _from_sequence(kind, raw)
        null = nones if null is None else (null | nones)
    arr = np.asarray(raw) if not isinstance(raw, np.ndarray) else raw
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"db.bulk: column {name!r} has {arr.shape[0]} rows, expected {n}")
    if null is None:
        null = np.zeros(arr.shape[0], bool)
    if kind == "text":
        arr = arr.astype(object)
        null = null | _nones(arr)
    elif kind == "bytes":
        arr, null = _binary(name, arr, null)
    else:
        arr, null = _fixed(name, kind, arr, null)
    return _Col(name, kind, arr, null)


def _normalise_all(table: sa.Table, columns: Mapping[str, Any]) -> list[_Col]:
    cols, n = [], None
    for name, raw in columns.items():
        if name not in table.c:
            raise KeyError(f"db.bulk: table {table.name} has no column {name!r}")
        col = _normalise(name, column_kind(table.c[name].type), raw, n)
        n = col.values.shape[0]
        cols.append(col)
    return cols


def _in_key_order(cols: list[_Col], key: Sequence[str]) -> np.ndarray | None:
    """Row indices that keep the last row of each repeated key, ordered by key; None when the rows already
    are (unique and sorted). Writing in key order makes concurrent writers of overlapping rows take their row
    locks in one order, so two loads of the same stars in opposite order queue instead of deadlocking."""
    kcols = [next(c for c in cols if c.name == k) for k in key]
    n = cols[0].values.shape[0]
    if all(c.kind not in ("text", "bytes") for c in kcols):
        vals = [np.asarray(c.values) for c in kcols]
        if len(vals) == 1 and (n < 2 or bool(np.all(vals[0][1:] > vals[0][:-1]))):
            return None
        order = np.lexsort(vals[::-1])            # stable: repeats of a key stay in file order
        ordered = [v[order] for v in vals]
        last = np.ones(n, bool)
        last[:-1] = ~np.logical_and.reduce([v[1:] == v[:-1] for v in ordered])
        idx = order[last]
    else:
        latest: dict[tuple, int] = {}
        for i, k in enumerate(zip(*(c.values.tolist() for c in kcols))):
            latest[k] = i
        idx = np.fromiter((latest[k] for k in sorted(latest)), np.int64, len(latest))
    if len(idx) == n and bool(np.all(idx == np.arange(n))):
        return None
    return idx


def _take(cols: list[_Col], idx: np.ndarray | None) -> list[_Col]:
    if idx is None:
        return cols
    return [_Col(c.name, c.kind, c.values[idx], c.null[idx]) for c in cols]


# --- PostgreSQL binary COPY encoding ----------------------------------------------------------------------------
# Most batches have few NULL patterns (a spectrum has both bands, or misses one, …): rows sharing a pattern
# have one fixed layout, so each group is encoded as one numpy structured array (one copy per column). Rows
# go out grouped by pattern — the order of COPY rows does not matter (keys are unique by then). Batches with
# many patterns or variable-width values take the general path: a padded byte matrix and a keep-mask.
MAX_NULL_PATTERNS = 8


def _fixed_width(col: _Col) -> int | None:
    """Payload bytes per value, or None for variable-width values (text, object bytes)."""
    if col.kind == "text" or (col.kind == "bytes" and col.values.dtype == object):
        return None
    return col.values.shape[1] if col.kind == "bytes" else np.dtype(col.kind).itemsize


def _encode_fixed(cols: list[_Col], rows: slice | np.ndarray, null: np.ndarray, n: int) -> bytes:
    """Binary-COPY rows for ``rows`` (all with NULL pattern ``null`` per column) as one structured array."""
    spec: list[tuple] = [("nfields", ">i2")]
    for j, c in enumerate(cols):
        spec.append((f"len{j}", ">i4"))
        if not null[j]:
            spec.append((f"val{j}", (np.uint8, (c.values.shape[1],)) if c.kind == "bytes" else c.kind))
    rec = np.empty(n, np.dtype(spec))
    rec["nfields"] = len(cols)
    for j, c in enumerate(cols):
        if null[j]:
            rec[f"len{j}"] = -1
            continue
        rec[f"len{j}"] = _fixed_width(c)
        rec[f"val{j}"] = c.values[rows]        # converts to the wire type (big-endian scalars) in the copy
    return rec.tobytes()


def _field_payload(col: _Col, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(payload (n, w) uint8 zero-padded, byte lengths (n,) int32 with -1 for NULL) for rows lo:hi."""
    null = col.null[lo:hi]
    if col.kind in ("text", "bytes") and col.values.dtype == object:
        vals = col.values[lo:hi]
        encoded = [b"" if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in vals]
        lengths = np.fromiter((len(b) for b in encoded), np.int32, len(encoded))
        width = int(lengths.max()) if len(encoded) else 0
        payload = (np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)
                   if width else np.zeros((len(encoded), 0), np.uint8))
    elif col.kind == "bytes":
        payload = col.values[lo:hi]
        lengths = np.full(hi - lo, payload.shape[1], np.int32)
    else:
        payload = np.ascontiguousarray(col.values[lo:hi].astype(col.kind)).view(np.uint8).reshape(hi - lo, -1)
        lengths = np.full(hi - lo, payload.shape[1], np.int32)
    lengths = np.where(null, -1, lengths).astype(np.int32)
    return payload, lengths


def _encode_masked(cols: list[_Col], lo: int, hi: int) -> bytes:
    """The general path for rows lo:hi: a padded byte matrix and a keep-mask."""
    n = hi - lo
    parts, keeps = [np.broadcast_to(np.frombuffer(struct.pack(">h", len(cols)), np.uint8), (n, 2))], []
    keeps.append(np.ones((n, 2), bool))
    for col in cols:
        payload, lengths = _field_payload(col, lo, hi)
        parts.append(lengths.astype(">i4").view(np.uint8).reshape(n, 4))
        keeps.append(np.ones((n, 4), bool))
        parts.append(payload)
        keeps.append(np.arange(payload.shape[1])[None, :] < np.maximum(lengths, 0)[:, None])
    matrix = np.concatenate(parts, axis=1)
    keep = np.concatenate(keeps, axis=1)
    return matrix[keep].tobytes()


def _as_fixed(col: _Col, lo: int, hi: int) -> _Col | None:
    """Rows lo:hi of a text / object column as fixed-width bytes when every non-NULL value has the same
    encoded length (a file name repeated down a batch, a column of NULLs); None otherwise."""
    null = col.null[lo:hi]
    encoded = [b"" if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in col.values[lo:hi]]
    widths = {len(e) for e, z in zip(encoded, null) if not z}
    if len(widths) > 1:
        return None
    width = widths.pop() if widths else 0
    encoded = [b"\0" * width if z else e for e, z in zip(encoded, null)]
    payload = (np.frombuffer(b"".join(encoded), np.uint8).reshape(hi - lo, width) if width
               else np.zeros((hi - lo, 0), np.uint8))
    return _Col(col.name, "bytes", payload, null)


def _encode_binary_copy(cols: list[_Col], lo: int, hi: int) -> list[bytes]:
    """Binary-COPY rows (no header) for rows lo:hi, as one or more byte strings."""
    if any(_fixed_width(c) is None for c in cols):
        window = []          # rows lo:hi of every column, variable-width ones as fixed-width bytes if they can be
        for c in cols:
            f = _Col(c.name, c.kind, c.values[lo:hi], c.null[lo:hi]) if _fixed_width(c) is not None \
                else _as_fixed(c, lo, hi)
            if f is None:
                return [_encode_masked(cols, lo, hi)]
            window.append(f)
        cols, lo, hi = window, 0, hi - lo
    nulls = np.stack([c.null[lo:hi] for c in cols], axis=1)
    if not nulls.any():
        return [_encode_fixed(cols, slice(lo, hi), nulls[0] if len(nulls) else np.zeros(len(cols), bool), hi - lo)]
    patterns, group = np.unique(np.packbits(nulls, axis=1), axis=0, return_inverse=True)
    if len(patterns) > MAX_NULL_PATTERNS:
        return [_encode_masked(cols, lo, hi)]
    group = group.reshape(-1)
    out = []
    for g in range(len(patterns)):
        rows = np.flatnonzero(group == g)
        out.append(_encode_fixed(cols, rows + lo, nulls[rows[0]], len(rows)))
    return out


def _row_width_estimate(cols: list[_Col]) -> int:
    width = 2
    for c in cols:
        w = _fixed_width(c)
        width += 4 + (256 if w is None else w)
    return width


class _CopyStream:
    """A file-like object for ``copy_expert``: header, rows encoded chunk by chunk on demand (bounded memory),
    trailer. ``read`` hands over whole encoded chunks whatever size is asked (psycopg2 sends what it gets)."""

    def __init__(self, cols: list[_Col]):
        self._cols = cols
        n = cols[0].values.shape[0] if cols else 0
        step = max(1, ENCODE_CHUNK_BYTES // _row_width_estimate(cols))
        self._pending: list[bytes] = [PG_COPY_HEADER]
        self._ranges = iter([(lo, min(n, lo + step)) for lo in range(0, n, step)])
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._pending and not self._done:
            rng = next(self._ranges, None)
            if rng is None:
                self._pending.append(PG_COPY_TRAILER)
                self._done = True
            else:
                self._pending.extend(_encode_binary_copy(self._cols, *rng))
        return self._pending.pop(0) if self._pending else b""


def binary_copy_stream(cols: list[_Col]) -> io.BytesIO:
    """The full binary COPY stream (header, rows, trailer) for normalised columns, in memory."""
    stream, buf = _CopyStream(cols), io.BytesIO()
    while chunk := stream.read():
        buf.write(chunk)
    buf.seek(0)
    return buf


def _pg_copy_in(conn: Connection, table: str, cols: list[_Col]) -> None:
    cur = conn.connection.cursor()
    try:
        cur.copy_expert(f"COPY {table} ({', '.join(c.name for c in cols)}) FROM STDIN WITH (FORMAT binary)",
                        _CopyStream(cols))
    finally:
        cur.close()


def _pg_copy_into_temp(conn: Connection, temp: str, cols: list[_Col], like: str | None) -> None:
    names = ", ".join(c.name for c in cols)
    if like:
        conn.exec_driver_sql(f"CREATE TEMP TABLE {temp} AS SELECT {names} FROM {like} WITH NO DATA")
    else:
        spec = ", ".join(f"{c.name} {_PG_TYPE_NAMES[c.kind]}" for c in cols)
        conn.exec_driver_sql(f"CREATE TEMP TABLE {temp} ({spec})")
    _pg_copy_in(conn, temp, cols)


# --- SQLite -------------------------------------------------------------------------------------------------------
def _python_values(col: _Col) -> list[Any]:
    """Column values as Python objects for sqlite3, None for NULL."""
    out: list[Any]
    if col.kind == "bytes" and col.values.dtype != object:
        width = col.values.shape[1]
        flat = col.values.tobytes()
        out = [flat[i * width:(i + 1) * width] for i in range(col.values.shape[0])]
    elif col.kind in ("text", "bytes"):
        out = [v if v is None or isinstance(v, (str, bytes)) else (bytes(v) if col.kind == "bytes" else str(v))
               for v in col.values.tolist()]
    elif col.kind == "u1":
        out = col.values.astype(bool).tolist()
    elif np.dtype(col.kind).kind == "i":
        out = col.values.astype(np.int64).tolist()
    else:
        out = col.values.astype(np.float64).tolist()
    if col.null.any():
        for i in np.flatnonzero(col.null).tolist():
            out[i] = None
    return out


def _sqlite_rows(cols: list[_Col]):
    return zip(*(_python_values(c) for c in cols))




# --- public interface -----------------------------------------------------------------------------------------
def _table(table: sa.Table | str) -> sa.Table:
    if isinstance(table, sa.Table):
        return table
    if table not in metadata.tables:
        raise KeyError(f"db.bulk: unknown table {table!r}")
    return metadata.tables[table]


_INT_KINDS = (">i2", ">i4", ">i8")


def _fetch_bool(cur: Any) -> bool:
    row = cur.fetchone()
    return bool(row[0]) if row is not None else False


def _pg_keys_absent(conn: Connection, table: str, cols: list[_Col], key: Sequence[str]) -> bool:
    """True when none of the batch's (integer) keys is in ``table`` yet: first a range probe on the index
    (fresh loads stop there), then an exact probe with the key arrays. False for non-integer keys."""
    kcols = [next(c for c in cols if c.name == k) for k in key]
    if any(c.kind not in _INT_KINDS for c in kcols):
        return False
    box = " AND ".join(f"{c.name} BETWEEN {int(c.values.min())} AND {int(c.values.max())}" for c in kcols)
    cur = conn.connection.cursor()
    try:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {box})")
        if not _fetch_bool(cur):
            return True
        names = ", ".join(f"k{j}" for j in range(len(kcols)))
        on = " AND ".join(f"t.{c.name} = u.k{j}" for j, c in enumerate(kcols))
        arrays = ", ".join("%s::bigint[]" for _ in kcols)
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table} t JOIN unnest({arrays}) AS u({names}) ON {on})",
                    [c.values.astype(np.int64).tolist() for c in kcols])
        return not _fetch_bool(cur)
    finally:
        cur.close()


def _pg_copy_new_rows(conn: Connection, table: str, cols: list[_Col]) -> bool:
    """COPY rows with new keys straight into ``table`` (no temp table, no INSERT … SELECT). Under a savepoint:
    if another transaction inserted one of the keys meanwhile, undo and return False (the caller upserts)."""
    from psycopg2.errors import UniqueViolation
    try:
        with conn.begin_nested():
            _pg_copy_in(conn, table, cols)
    except UniqueViolation:
        return False
    return True


def upsert_rows(conn: Connection, table: sa.Table | str, columns: Mapping[str, Any],
                key: Sequence[str] = ("source_id",)) -> int:
    """Insert or update rows by ``key`` in the caller's transaction; returns the number of distinct rows sent.

    Raises ValueError/KeyError naming the column when the input does not fit the table.
    """
    tbl = _table(table)
    key = tuple(key)
    missing_key = [k for k in key if k not in columns]
    if missing_key:
        raise KeyError(f"db.bulk: upsert into {tbl.name} needs the key column(s) {missing_key}")
    cols = _normalise_all(tbl, columns)
    if not cols or cols[0].values.shape[0] == 0:
        return 0
    for c in cols:
        if c.name in key and c.null.any():
            raise ValueError(f"db.bulk: key column {c.name!r} of {tbl.name} has NULL at row "
                             f"{int(np.flatnonzero(c.null)[0])}")
    cols = _take(cols, _in_key_order(cols, key))
    names = [c.name for c in cols]
    updates = [n for n in names if n not in key]
    conflict = f"ON CONFLICT ({', '.join(key)}) DO " + (
        "UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in updates) if updates else "NOTHING")
    if conn.dialect.name == "postgresql":
        if _pg_keys_absent(conn, tbl.name, cols, key) and _pg_copy_new_rows(conn, tbl.name, cols):
            return int(cols[0].values.shape[0])
        temp = f"_bulk_{tbl.name}"
        _pg_copy_into_temp(conn, temp, cols, like=tbl.name)
        unchanged = ""
        if updates:
            lhs = ", ".join(f"{tbl.name}.{n}" for n in updates)
            rhs = ", ".join(f"excluded.{n}" for n in updates)
            unchanged = f" WHERE ({lhs}) IS DISTINCT FROM ({rhs})" if len(updates) > 1 else \
                f" WHERE {lhs} IS DISTINCT FROM {rhs}"
        # ORDER BY: the temp table holds the rows grouped by NULL pattern; lock them in key order (see above)
        conn.exec_driver_sql(f"INSERT INTO {tbl.name} ({', '.join(names)}) SELECT {', '.join(names)} FROM {temp} "
                             f"ORDER BY {', '.join(key)} {conflict}{unchanged}")
        conn.exec_driver_sql(f"DROP TABLE {temp}")
    else:
        sql = (f"INSERT INTO {tbl.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) {conflict}")
        cur = conn.connection.cursor()
        try:
            cur.executemany(sql, _sqlite_rows(cols))
        finally:
            cur.close()
    return int(cols[0].values.shape[0])


def fill_temp_table(conn: Connection, name: str, columns: Mapping[str, tuple[str, Any]]) -> None:
    """Create TEMP table ``name`` and fill it: ``columns`` maps a column name to (kind, values), kind one of
    'bigint', 'text'. Used to pass long id lists to queries (joins instead of huge IN lists)."""
    kinds = {"bigint": ">i8", "text": "text", "double": ">f8"}
    cols, n = [], None
    for col_name, (kind, values) in columns.items():
        col = _normalise(col_name, kinds[kind], values, n)
        n = col.values.shape[0]
        cols.append(col)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    if conn.dialect.name == "postgresql":
        _pg_copy_into_temp(conn, name, cols, like=None)
        conn.exec_driver_sql(f"ANALYZE {name}")
    else:
        spec = ", ".join(f"{c.name} {'INTEGER' if c.kind == '>i8' else 'REAL' if c.kind == '>f8' else 'TEXT'}"
                         for c in cols)
        conn.exec_driver_sql(f"CREATE TEMP TABLE {name} ({spec})")
        cur = conn.connection.cursor()
        try:
            cur.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})", _sqlite_rows(cols))
        finally:
            cur.close()


def analyze(engine: Engine, tables: Sequence[str], pixels: Collection[int] | None = None) -> None:
    """Refresh the planner's statistics after a bulk load (PostgreSQL), so the first reads get index plans
    instead of sorting the freshly loaded tables on disk. SQLite needs nothing.

    ``pixels``: the HEALPix pixels the load wrote (db.partitions.touched_pixels): of a partitioned table only
    the partitions holding them are analysed, and never the parent. A parent's statistics sample every
    partition again (82 s instead of 4 s for 2 M spectra in 48 partitions, README); the reads need only the
    partitions' (db/parallel_read.py splits on them)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names: list[str] = []
        for table in tables:
            touched = None if pixels is None else partitions.partitions_touched(conn, table, pixels)
            names.extend([table] if touched is None else touched)
        if names:
            conn.exec_driver_sql(f"ANALYZE {', '.join(names)}")
