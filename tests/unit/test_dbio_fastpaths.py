"""The speed paths of db.bulk / db.spectra / ingest.load / the inferencer give the same answers as the plain ones.

Each test compares a fast path with an independent reference (plain SQL, numpy, a direct ``infer`` call), on
inputs built to hit the path: many vs few NULL patterns, new vs existing keys, a COPY that collides under a
savepoint, reads split into many small queries, a read-ahead producer that fails or is abandoned.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from db import bulk
from db import spectra as dbs
from db.copy_stream import CopyBuffer
from db.selection import Selection


def _photometry(ids, seed, nan_fraction):
    rng = np.random.default_rng(seed)
    cols = {"source_id": np.asarray(ids, np.int64), "phot_g_mean_flux": rng.uniform(1, 1e5, len(ids))}
    for k in ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"):
        v = rng.uniform(5, 20, len(ids)).astype(np.float32)
        v[rng.random(len(ids)) < nan_fraction] = np.nan
        cols[k] = v
    cols["phot_g_mean_flux"][rng.random(len(ids)) < nan_fraction] = np.nan
    return cols


def _stored_photometry(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, phot_g_mean_flux, phot_g_mean_mag, phot_bp_mean_mag, "
                                    "phot_rp_mean_mag FROM photometry ORDER BY source_id")).all()
    return np.array([[np.nan if v is None else v for v in r] for r in rows], np.float64)


@pytest.mark.parametrize("nan_fraction", [0.0, 0.02, 0.5])
def test_upsert_round_trip_for_every_null_layout(engine, nan_fraction):
    """0 % NaN: one fixed layout; 2 %: a few NULL patterns (grouped encoding, rows re-ordered by pattern);
    50 % over four columns: 16 patterns, more than MAX_NULL_PATTERNS (the general keep-mask encoding). Each
    is loaded fresh (direct COPY on PostgreSQL) and then over itself with changes (the upsert), and must
    read back exactly — float32 magnitudes compared as float32, NULL for every NaN."""
    ids = np.arange(1000, 1600)
    first = _photometry(ids, 1, nan_fraction)
    second = _photometry(ids[::2], 2, nan_fraction)     # changes half of them
    with engine.begin() as conn:
        assert bulk.upsert_rows(conn, "photometry", first) == len(ids)
    with engine.begin() as conn:
        bulk.upsert_rows(conn, "photometry", second)
    want = np.column_stack([first[k].astype(np.float64) for k in first])
    want[::2] = np.column_stack([second[k].astype(np.float64) for k in second])
    got = _stored_photometry(engine)
    assert got.shape == want.shape
    assert np.array_equal(got[:, 0], want[:, 0])
    assert np.array_equal(got[:, 1], want[:, 1], equal_nan=True)
    assert np.array_equal(got[:, 2:].astype(np.float32), want[:, 2:].astype(np.float32), equal_nan=True)


def test_text_columns_of_equal_and_unequal_lengths(engine):
    """source_file repeated down a batch (fixed-width after encoding) and of varying lengths and NULLs
    (the general path) both come back as written, unicode included."""
    from test_dbio_spectra import make_batch
    batch = make_batch(np.arange(1, 7), correlations=False)
    cols = dbs.xp_spectra_columns(batch, "same/file.csv")
    names = ["a.csv", None, "ü/longer-name.csv", "b", None, "a.csv"]
    with engine.begin() as conn:
        bulk.upsert_rows(conn, "xp_spectra", cols)
    with engine.begin() as conn:
        bulk.upsert_rows(conn, "xp_spectra", {"source_id": np.arange(4, 10), "bp_missing": np.zeros(6, bool),
                                              "rp_missing": np.zeros(6, bool), "source_file": names})
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT source_file FROM xp_spectra ORDER BY source_id")).scalars().all()
    assert got == ["same/file.csv"] * 3 + names


def test_colliding_direct_copy_falls_back_to_the_upsert(pg_engine, monkeypatch):
    """If keys appear between the existence probe and the COPY (another loader), the COPY's unique
    violation is undone under a savepoint and the rows are upserted instead, in the same transaction."""
    ids = np.arange(1, 101)
    with pg_engine.begin() as conn:
        bulk.upsert_rows(conn, "photometry", _photometry(ids, 1, 0.0))
    monkeypatch.setattr(bulk, "_pg_keys_absent", lambda *a, **k: True)     # the probe "misses" them
    newer = _photometry(ids, 2, 0.0)
    with pg_engine.begin() as conn:
        assert bulk.upsert_rows(conn, "photometry", newer) == 100
        conn.exec_driver_sql("SELECT 1")     # the transaction is still usable
    assert np.array_equal(_stored_photometry(pg_engine)[:, 1], newer["phot_g_mean_flux"])


def test_key_probe(pg_engine):
    """The probe says 'absent' only when no key exists: a range with other keys inside is still absent."""
    with pg_engine.begin() as conn:
        bulk.upsert_rows(conn, "photometry", _photometry([10, 20, 30], 1, 0.0))
    with pg_engine.connect() as conn:

        def cols(ids):
            return bulk._normalise_all(bulk._table("photometry"), {"source_id": np.asarray(ids)})

        assert bulk._pg_keys_absent(conn, "photometry", cols([40, 50]), ("source_id",))
        assert bulk._pg_keys_absent(conn, "photometry", cols([11, 25, 29]), ("source_id",))   # inside the range
        assert not bulk._pg_keys_absent(conn, "photometry", cols([11, 20]), ("source_id",))


def test_reads_split_into_many_queries_match_one_query(engine, monkeypatch):
    """With tiny query blocks (reused raw buffer) and chunks that do not line up with them, iter_spectra
    and read_spectra return exactly what one query returns — also for chunks kept while reading on."""
    from test_dbio_spectra import make_batch
    ids = np.arange(100, 400)
    batch = make_batch(ids, missing_bp=[3], missing_rp=[7])
    batch.columns["bp_coefficient_correlations"][::3] = np.nan   # some stars without correlations …
    keep = np.ones(len(ids), bool)
    keep[::3] = False
    with engine.begin() as conn:
        dbs.write_xp_batch(conn, batch.without_correlations(), "x")
        bulk.upsert_rows(conn, "xp_correlations", {       # … stored for two stars in three only
            "source_id": ids[keep], **{f"{b}_coefficient_correlations": batch[f"{b}_coefficient_correlations"][keep]
                                       for b in ("bp", "rp")}})
        dbs.write_photometry(conn, {"source_id": ids[::2], "phot_g_mean_flux": np.arange(150.0)})
    whole = dbs.read_spectra(engine, with_correlations=True, chunk_rows=10_000)
    monkeypatch.setattr(dbs, "QUERY_BYTES", 7 * 13_000)          # ~7 rows a query with correlations
    chunks = list(dbs.iter_spectra(engine, with_correlations=True, chunk_rows=11))
    assert [len(c["source_id"]) for c in chunks] == [11] * 27 + [3]
    pieces = dbs.read_spectra(engine, with_correlations=True)
    for key, want in whole.items():
        joined = np.concatenate([c[key] for c in chunks])
        assert np.array_equal(joined.view(np.uint8) if joined.dtype.kind == "f" else joined,
                              want.view(np.uint8) if want.dtype.kind == "f" else want), key
        assert np.array_equal(pieces[key], want, equal_nan=True), key
    assert whole["has_correlations"].tolist() == keep.tolist()
    assert np.isnan(whole["correlations"][~keep]).all()
    limited = dbs.read_spectra(engine, Selection.everything().replace(limit=23), chunk_rows=4)
    assert limited["source_id"].tolist() == ids[:23].tolist()


def test_copy_buffer_never_overwrites_rows_still_in_use(pg_engine):
    """A second fetch while arrays over the first are alive goes to a new buffer."""
    buf = CopyBuffer()
    with pg_engine.connect() as conn:
        first = np.frombuffer(buf.fetch(conn, "SELECT 1::int8 FROM generate_series(1, 1000)"), np.uint8).copy()
        held = np.frombuffer(buf.fetch(conn, "SELECT 1::int8 FROM generate_series(1, 1000)"), np.uint8)
        buf.fetch(conn, "SELECT 2::int8 FROM generate_series(1, 5000)")
    assert np.array_equal(held, first)


def test_read_ahead_passes_items_errors_and_stops_its_producer():
    from shared.streams import read_ahead
    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken at item 2")
    got = []
    with pytest.raises(ValueError, match="broken at item 2"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()
    for item in read_ahead(endless()):
        if item == 3:
            break
    assert closed.wait(5), "the abandoned producer's generator was not closed"


def test_ordered_map_keeps_order_bounds_work_and_passes_errors():
    import time

    from shared.streams import ordered_map

    def slow_first(i):                  # early items finish last: order must come from the input
        time.sleep(0.02 if i % 3 == 0 else 0.0)
        return i * i
    assert list(ordered_map(slow_first, range(30), workers=3)) == [i * i for i in range(30)]
    assert list(ordered_map(slow_first, range(5), workers=1)) == [i * i for i in range(5)]

    started = []

    def record(i):
        started.append(i)
        return i
    gen = ordered_map(record, range(100), workers=2)
    assert next(gen) == 0
    time.sleep(0.05)
    assert len(started) <= 3, started     # bounded: never more than workers + 1 items taken
    gen.close()

    def fails_at_4(i):
        if i == 4:
            raise ValueError("item 4")
        return i
    got = []
    with pytest.raises(ValueError, match="item 4"):
        for x in ordered_map(fails_at_4, range(10)):
            got.append(x)
    assert got == [0, 1, 2, 3]

    def source_breaks():
        yield from range(5)
        raise OSError("truncated")
    got = []
    with pytest.raises(OSError, match="truncated"):
        for x in ordered_map(lambda i: i, source_breaks(), workers=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]       # what was read before the break still comes out, in order
