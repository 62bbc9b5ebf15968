"""ra, dec with the photometry: read when a file has both, off-sky values reported and skipped, stored by
ingest (migration 0002), and kept when a later file without positions updates the same stars."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from astropy.table import Table

from ingest.load import ingest_photometry
from ingest.readers import read_photometry
from shared.xp import PHOTOMETRY_COLUMNS, POSITION_COLUMNS, ReadReport


def _table() -> Table:
    return Table({"source_id": np.array([11, 12, 13, 14, 15, 16], np.int64),
                  "phot_g_mean_mag": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
                  "ra": [0.0, 359.75, np.nan, 400.0, 12.5, 360.0],
                  "dec": [-90.0, 45.125, np.nan, 10.0, -91.0, 90.0]})


def test_positions_are_read_and_off_sky_rows_reported(tmp_path):
    for fmt, name in (("ascii.csv", "p.csv"), ("fits", "p.fits"), ("votable", "p.xml")):
        _table().write(tmp_path / name, format=fmt)
        rep = ReadReport(name)
        chunks = list(read_photometry(tmp_path / name, chunk_rows=4, report=rep))
        got = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        assert set(got) == set(PHOTOMETRY_COLUMNS + POSITION_COLUMNS)
        np.testing.assert_array_equal(got["source_id"], [11, 12, 13, 16])
        np.testing.assert_array_equal(got["ra"], [0.0, 359.75, np.nan, 360.0])
        np.testing.assert_array_equal(got["dec"], [-90.0, 45.125, np.nan, 90.0])
        assert sorted((b.row, b.column) for b in rep.bad_rows) == [(4, "ra"), (5, "dec")], name
        assert rep.rows_ok == 4


def test_ingest_stores_positions_and_a_file_without_them_keeps_them(engine, tmp_path):
    _table().write(tmp_path / "with.csv", format="ascii.csv")
    s = ingest_photometry(engine, tmp_path / "with.csv")
    assert s.files[0].rows_loaded == 4
    Table({"source_id": np.array([11, 12], np.int64), "phot_g_mean_mag": [9.5, 10.5]}).write(
        tmp_path / "without.csv", format="ascii.csv")
    ingest_photometry(engine, tmp_path / "without.csv")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, ra, dec, phot_g_mean_mag FROM photometry "
                                    "ORDER BY source_id")).all()
    assert [tuple(r) for r in rows] == [(11, 0.0, -90.0, 9.5), (12, 359.75, 45.125, 10.5),
                                        (13, None, None, 12.0), (16, 360.0, 90.0, 15.0)]
    # "any positions?" is answered from the partial index, not by scanning photometry
    explain = ("EXPLAIN SELECT 1 FROM photometry WHERE ra IS NOT NULL LIMIT 1" if engine.dialect.name == "postgresql"
               else "EXPLAIN QUERY PLAN SELECT 1 FROM photometry WHERE ra IS NOT NULL LIMIT 1")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SET enable_seqscan = off"))   # 4 rows: the planner would scan them anyway
        plan = " ".join(str(r) for r in conn.execute(sa.text(explain)).all())
    assert "ix_photometry_positioned" in plan, plan


def test_migration_0002_round_trips_and_keeps_rows(tmp_path):
    from db.engine import create_engine
    from db.migrate import current_revision, downgrade, upgrade
    eng = create_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    upgrade(eng, "0001")
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO photometry (source_id, phot_g_mean_mag) VALUES (5, 12.5)"))
    upgrade(eng)
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE photometry SET ra = 1.5, dec = -2.5"))
    downgrade(eng, "0001")
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM photometry")).all() == [(5, None, 12.5, None, None)]
        conn.execute(sa.text("SELECT * FROM xp_apogee")).all()       # the view over photometry still works
    upgrade(eng, "0002")
    assert current_revision(eng) == "0002"
    eng.dispose()
