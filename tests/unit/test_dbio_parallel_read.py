"""PostgreSQL reads in two streams (db/_pgcopy.c receives COPY output without the GIL): the same arrays as
one stream, whatever the split; a half that does not hold the rows counted falls back to one stream; the
receiver reports server errors and leaves the connection usable."""
from __future__ import annotations

import numpy as np
import pytest
from test_dbio_spectra import make_batch

from db import copy_stream, parallel_read, spectra_blocks
from db.bulk import analyze
from db.selection import Selection
from db.spectra import fast_copy_available, read_spectra, write_photometry, write_xp_batch


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def test_the_receiver_is_built_and_finds_psycopg2s_libpq():
    assert fast_copy_available(), "db._pgcopy is not built or libpq not found: install gcc, re-run `make venv`"


@pytest.fixture
def loaded(pg_engine):
    ids = np.arange(70_000, 72_000, dtype=np.int64)
    with pg_engine.begin() as conn:
        write_xp_batch(conn, make_batch(ids, seed=5, missing_bp=[3, 1500]), "p.csv")
        write_photometry(conn, {"source_id": ids[ids % 7 != 0], "phot_g_mean_flux": np.arange(2000.0)[ids % 7 != 0]})
    analyze(pg_engine, ("xp_spectra", "photometry"))      # the split point comes from the planner's histogram
    return pg_engine


def _one_stream(engine, sel, **kw):
    return read_spectra(engine, sel, expected_rows=1, **kw)      # expected_rows set: never parallel


@pytest.mark.parametrize("streams,sel", [(2, Selection()), (2, Selection(require_photometry=False)),
                                         (2, Selection(source_id_lo=70_100, source_id_hi=71_900)),
                                         (3, Selection()), (5, Selection(source_id_lo=70_500))])
def test_parallel_streams_read_exactly_what_one_stream_reads(loaded, monkeypatch, streams, sel):
    monkeypatch.setattr(parallel_read, "PARALLEL_MIN_ROWS", 10)
    calls = []
    real = parallel_read.read_streams
    monkeypatch.setattr(parallel_read, "read_streams", lambda *a: calls.append(a[2]) or real(*a))
    parts = []
    real_count = parallel_read.count_parts
    monkeypatch.setattr(parallel_read, "count_parts", lambda *a: parts.append(real_count(*a)) or parts[-1])
    seen = []
    two = read_spectra(loaded, sel, chunk_rows=97, progress=lambda d, t, m: seen.append((d, t)), streams=streams)
    assert calls == [streams]
    one = _one_stream(loaded, sel, chunk_rows=97)
    assert len(parts) == 1 and len(parts[0]) == streams and min(parts[0]) > 0     # really split that many ways
    assert len(two["source_id"]) == len(one["source_id"]) > 1000
    for k in one:
        assert np.array_equal(_bits(two[k]), _bits(one[k])), k
    assert seen[-1][0] == seen[-1][1] == len(one["source_id"])     # progress counted both streams
    assert np.all(np.diff(two["source_id"]) > 0)


@pytest.mark.parametrize("off", [-1, +1])
def test_miscounted_halves_fall_back_to_one_stream(loaded, monkeypatch, off):
    """A write between the count and the read (simulated: the first part's count off by one either way) must
    not leave a gap or clip a row: the read is redone in one stream."""
    monkeypatch.setattr(parallel_read, "PARALLEL_MIN_ROWS", 10)
    real_count = parallel_read.count_parts
    # a write between the count and the read lands in the first part
    monkeypatch.setattr(parallel_read, "count_parts", lambda *a: [v + (off if j == 0 else 0)
                                                            for j, v in enumerate(real_count(*a))])
    fallback = []
    real_blocks = spectra_blocks.iter_blocks
    monkeypatch.setattr(spectra_blocks, "iter_blocks",
                        lambda *a, **kw: (fallback.append(1) if not kw.get("gil_free") else None)
                        or real_blocks(*a, **kw))
    got = read_spectra(loaded, Selection(require_photometry=False), chunk_rows=256, streams=2)
    assert fallback == [1]                      # the single stream ran after the two failed
    monkeypatch.undo()
    want = _one_stream(loaded, Selection(require_photometry=False))
    for k in want:
        assert np.array_equal(_bits(got[k]), _bits(want[k])), k


def test_receiver_errors_overflow_and_connection_reuse(loaded):
    import psycopg2

    from db import _pgcopy
    buf = np.empty(1 << 16, np.uint8)
    with loaded.connect() as conn:
        ptr = conn.connection.dbapi_connection.pgconn_ptr
        with pytest.raises(RuntimeError, match="no_such_column"):
            _pgcopy.copy_out(ptr, "COPY (SELECT no_such_column FROM xp_spectra) TO STDOUT", buf)
        n = _pgcopy.copy_out(ptr, "COPY (SELECT source_id FROM xp_spectra ORDER BY 1 LIMIT 3) TO STDOUT", buf)
        assert bytes(buf[:n]) == b"70000\n70001\n70002\n"
        # too small a buffer: -1, and the rest of the output was drained, not left on the wire
        assert _pgcopy.copy_out(ptr, "COPY (SELECT * FROM xp_spectra) TO STDOUT", np.empty(10, np.uint8)) == -1
        assert conn.exec_driver_sql("SELECT count(*) FROM xp_spectra").scalar() == 2000
    # through the buffer class: an overflowing block is fetched again the ordinary way, with the same bytes
    with loaded.connect() as conn:
        sql = "SELECT * FROM xp_spectra ORDER BY source_id"
        small = copy_stream.CopyBuffer(reserve=100).fetch(conn, sql).tobytes()
        plain = copy_stream.CopyBuffer().fetch(conn, sql).tobytes()
        assert small == plain and len(plain) > 100
        with pytest.raises(psycopg2.DatabaseError, match="no_such_column"):
            copy_stream.CopyBuffer(reserve=1 << 20).fetch(conn, "SELECT no_such_column")


def test_one_stream_unless_the_caller_asks_for_more(loaded, monkeypatch):
    """The number of streams is the caller's (Settings.read_streams): the default reads in one."""
    monkeypatch.setattr(parallel_read, "PARALLEL_MIN_ROWS", 10)
    calls = []
    monkeypatch.setattr(parallel_read, "read_streams", lambda *a: calls.append(a[2]))
    assert len(read_spectra(loaded, Selection())["source_id"]) > 1000
    assert calls == []
    read_spectra(loaded, Selection(), streams=2)
    assert calls == [2]
