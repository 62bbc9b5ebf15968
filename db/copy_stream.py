"""PostgreSQL's binary ``COPY (SELECT …) TO STDOUT``: received into a reused buffer and parsed without a copy.

Every row of the reads in db/spectra_read.py has the same size (missing values are COALESCEd to NaN blobs), so
one ``np.frombuffer`` with a structured dtype parses a whole block. Where the time went (200k spectra,
bench/bench_ingest.py): collecting psycopg2's per-row bytes in a list and joining them spent most of it in page
faults; now the rows land in one buffer reused query after query, so it stays mapped.
"""
from __future__ import annotations

import importlib
import io
import sys
from typing import Any, cast

import numpy as np
from sqlalchemy.engine import Connection

#: A field of a row: (name, numpy dtype of the payload, payload bytes). A dtype starting with "<" is an array
#: payload, kept as raw bytes.
Field = tuple[str, str, int]

_pgcopy: Any = None
try:
    import psycopg2
    _pgcopy = importlib.import_module("db._pgcopy")
except ImportError:          # built without a C compiler: one stream through psycopg2's copy_expert
    pass


def fast_copy_available() -> bool:
    """Whether COPY output can be received without the GIL (db/_pgcopy.c), which parallel reads need."""
    return _pgcopy is not None and bool(_pgcopy.available())


class CopyBuffer:
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
            received = self._receive(conn, copy)
            if received is not None:
                return received
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

    def _receive(self, conn: Connection, copy: str) -> memoryview | None:
        """The output through db/_pgcopy.c; None when it does not fit the reserved buffer."""
        if self._buf is None or sys.getrefcount(self._buf) > 2:    # still referenced by the caller
            self._buf = np.empty(self._reserve, np.uint8)
        try:
            n = _pgcopy.copy_out(cast(Any, conn.connection.dbapi_connection).pgconn_ptr, copy, self._buf)
        except RuntimeError as exc:
            raise _dbapi_error(str(exc)) from None
        return self._buf.data[:n] if n >= 0 else None


def _dbapi_error(message: str) -> Exception:
    """The psycopg2 exception psycopg2 itself would raise, as near as libpq's message tells."""
    lost = ("server closed the connection", "no connection to the server", "could not receive data",
            "terminating connection")
    cls = psycopg2.OperationalError if any(t in message for t in lost) else psycopg2.DatabaseError
    return cls(message.strip())


def copy_out(conn: Connection, sql: str) -> memoryview:
    """The whole binary COPY output of ``sql`` in a fresh buffer (for one-off queries)."""
    return CopyBuffer().fetch(conn, sql)


def row_dtype(fields: list[Field]) -> np.dtype:
    """One binary-COPY row: field count, then (length, payload) per field; array payloads stay raw bytes."""
    spec: list[tuple[Any, ...]] = [("_nfields", ">i2")]
    for name, dt, size in fields:
        spec.append((f"_len_{name}", ">i4"))
        spec.append((name, np.uint8, (size,)) if dt.startswith("<") else (name, dt))
    return np.dtype(spec)


def parse_binary_rows(raw: memoryview, fields: list[Field]) -> np.ndarray:
    """The rows of a binary COPY as a structured array over ``raw`` (no copy); array fields are raw bytes."""
    dtype = row_dtype(fields)
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
