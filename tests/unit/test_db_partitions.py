"""Sky-region partitions of xp_spectra, xp_correlations and inference_results (PostgreSQL): the bounds, where
rows land, the migration of a filled database in place and back, and reads/shards that follow the bounds."""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from test_dbio_spectra import make_batch
from testdb import PG_ADMIN_URL, _pg_url_for

from db import parallel_read, partitions
from db.bulk import analyze, upsert_rows
from db.engine import create_engine
from db.migrate import alembic_config, downgrade, upgrade
from db.partitions import PARTITIONED_TABLES, healpix_pixel, inner_bounds, partition_name, pixel_span
from db.selection import Selection
from db.spectra import quantile_ranges, read_spectra, write_photometry, write_xp_batch

SPAN = pixel_span(1)                       # source_ids per level-1 pixel: 2**57
# stars on both sides of several bounds, the first and last possible ids, and ids past the last pixel
IDS = np.array([1, SPAN - 1, SPAN, SPAN + 7, 5 * SPAN + 3, 47 * SPAN, 48 * SPAN + 11, 2 ** 63 - 1], np.int64)


def test_bounds_tile_the_source_id_line_one_level1_pixel_each():
    assert pixel_span(12) == 2 ** 35 and SPAN == 2 ** 57
    b = inner_bounds(1)
    assert len(b) == 47 and np.all(np.diff(b) == SPAN) and b[0] == SPAN
    ddl = partitions.partition_ddl("xp_spectra", 1)
    assert len(ddl) == 48 and "FROM (MINVALUE)" in ddl[0] and "TO (MAXVALUE)" in ddl[-1]
    assert partition_name("xp_spectra", 7) == "xp_spectra_l1_07"
    # Gaia DR3 4295806720 lies in level-12 pixel 0; the second id is 1 past the start of level-1 pixel 5
    assert healpix_pixel(4295806720, 12) == 0 and healpix_pixel(2 ** 35 * 4 ** 11 * 5 + 1, 1) == 5
    with pytest.raises(ValueError):
        pixel_span(13)


def test_snap_moves_only_cuts_near_a_bound():
    values = np.arange(0, 1000, dtype=np.int64) * 10          # 0 … 9990
    # a bound at 5010 (position 501) is 1 away from the cut at 500: taken; 2555 is 245 away from 10: not
    assert partitions.snap_cuts(values, [500, 10], np.array([5010, 2555]), 5) == [(10, None), (501, 5010)]
    # two cuts near the same bound merge; bounds outside the values are ignored
    assert partitions.snap_cuts(values, [499, 502], np.array([5005, -4, 10 ** 9]), 5) == [(501, 5005)]
    assert partitions.snap_cuts(values[:0], [0], np.array([5]), 5) == []


def test_inference_shards_cover_every_id_once_and_break_at_sky_bounds():
    rng = np.random.default_rng(11)
    ids = np.unique(np.concatenate([rng.integers(0, SPAN, 700), rng.integers(SPAN, 3 * SPAN, 290)]))
    shards = quantile_ranges(ids, 4)
    assert sum(n for *_, n in shards) == len(ids)
    joined = np.concatenate([ids[(ids >= lo) & (ids <= hi)] for lo, hi, _ in shards])
    assert joined.tolist() == ids.tolist()
    assert any(hi == ids[ids < SPAN][-1] for _, hi, _ in shards)           # a shard ends at the bound
    assert all(len(ids) / 8 <= n <= 1.5 * len(ids) / 4 + 1 for *_, n in shards)
    # without bounds nearby: the plain near-equal split
    small = np.arange(1, 46, dtype=np.int64)
    assert [n for *_, n in quantile_ranges(small, 4)] == [12, 11, 11, 11]


def _partition_of_rows(conn, table: str) -> dict[int, str]:
    rows = conn.exec_driver_sql(f"SELECT source_id, tableoid::regclass::text FROM {table}").all()
    return {int(s): p for s, p in rows}


def _results(ids, model_id: int, job_id: int, z1) -> dict:
    return {"model_id": np.full(len(ids), model_id), "source_id": ids, "job_id": np.full(len(ids), job_id),
            "z1": np.asarray(z1, np.float32), "split": ["train"] * len(ids)}


def _model(conn) -> int:
    return conn.exec_driver_sql("INSERT INTO models (name, kind, path) VALUES ('m', 'svae', '/m') "
                                "RETURNING id").scalar_one()


@pytest.mark.integration
def test_rows_land_in_their_sky_region_and_upserts_and_shard_replacement_work(pg_engine):
    batch = make_batch(IDS, seed=3, missing_rp=[2])
    with pg_engine.begin() as conn:
        for t in PARTITIONED_TABLES:
            assert partitions.table_partition_bounds(conn, t) == inner_bounds().tolist(), t
        write_xp_batch(conn, batch, "a.csv")
        model = _model(conn)
        upsert_rows(conn, "inference_results", _results(IDS, model, 1, np.arange(len(IDS))),
                    key=("model_id", "source_id"))
    expected = {int(s): partition_name("x", int(min(healpix_pixel(s), 47)))[2:] for s in IDS}
    with pg_engine.connect() as conn:
        for t in PARTITIONED_TABLES:
            got = _partition_of_rows(conn, t)
            assert got == {s: f"{t}_{suffix}" for s, suffix in expected.items()}, t
    # a second write of changed rows goes through the ON CONFLICT path on the partitioned parents
    again = make_batch(IDS, seed=4)
    with pg_engine.begin() as conn:
        write_xp_batch(conn, again, "b.csv")
        # an inference shard replaces its range: the rows of the first two sky regions only
        lo, hi = int(IDS[0]), int(IDS[3])
        conn.execute(sa.text("DELETE FROM inference_results WHERE model_id = :m AND source_id BETWEEN :lo AND :hi"),
                     {"m": model, "lo": lo, "hi": hi})
        upsert_rows(conn, "inference_results", _results(IDS[:4], model, 2, [-1, -2, -3, -4]),
                    key=("model_id", "source_id"))
    out = read_spectra(pg_engine, Selection.everything(), with_correlations=True)
    assert out["source_id"].tolist() == sorted(IDS.tolist())
    order = np.argsort(IDS)
    assert np.array_equal(out["correlations"][:, 0].view(np.uint32),
                          again["bp_coefficient_correlations"][order].view(np.uint32))
    with pg_engine.connect() as conn:
        z = dict(conn.exec_driver_sql("SELECT source_id, z1 FROM inference_results ORDER BY source_id").all())
        n_files = conn.exec_driver_sql("SELECT count(DISTINCT source_file) FROM xp_spectra").scalar_one()
    assert [z[int(s)] for s in IDS] == [-1, -2, -3, -4, 4, 5, 6, 7] and n_files == 1
    # a row put straight into the wrong sky region's partition is refused
    with pg_engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql(f"INSERT INTO xp_spectra_l1_47 (source_id, bp_missing, rp_missing) "
                             f"VALUES ({5 * SPAN + 3}, true, true)")


def _snapshot(engine) -> dict:
    out = read_spectra(engine, Selection.everything(), with_correlations=True)
    with engine.connect() as conn:
        out["results"] = conn.exec_driver_sql(
            "SELECT model_id, source_id, z1, split FROM inference_results ORDER BY 1, 2").all()
        out["views"] = [conn.exec_driver_sql(f"SELECT count(*) FROM {v}").scalar_one()
                        for v in ("latents", "xp_apogee")]
        out["kinds"] = conn.exec_driver_sql(
            "SELECT relname, relkind FROM pg_class WHERE relname IN ('xp_spectra', 'xp_correlations', "
            "'inference_results') ORDER BY 1").all()
    return out


def _same_reads(a: dict, b: dict) -> None:
    for key in ("source_id", "coefficients", "errors", "correlations", "bp_missing", "rp_missing",
                "has_correlations", "phot_g_mean_flux"):
        assert np.array_equal(np.ascontiguousarray(a[key]).view(np.uint8),
                              np.ascontiguousarray(b[key]).view(np.uint8)), key
    assert a["results"] == b["results"] and a["views"] == b["views"]


@pytest.fixture
def fresh_pg():
    name = f"xpvae_test_part_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng = create_engine(_pg_url_for(name))
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.integration
def test_a_filled_database_is_partitioned_in_place_and_back(fresh_pg):
    before = ScriptDirectory.from_config(alembic_config()).get_revision("0003").down_revision
    upgrade(fresh_pg, before)
    rng = np.random.default_rng(5)
    ids = np.unique(np.concatenate([IDS, rng.integers(1, 2 ** 63 - 1, 300, dtype=np.int64)]))
    with fresh_pg.begin() as conn:
        write_xp_batch(conn, make_batch(ids, seed=9, missing_bp=[4, 7]), "old.csv")
        write_xp_batch(conn, make_batch(ids[-5:], seed=1, correlations=False), "new.csv")   # keeps correlations
        write_photometry(conn, {"source_id": ids[::3], "phot_g_mean_flux": rng.random(len(ids[::3]))})
        conn.exec_driver_sql(f"INSERT INTO apogee_labels (apogee_id, gaia_source_id, is_primary) "
                             f"VALUES ('2M1', {int(ids[3])}, true)")
        upsert_rows(conn, "inference_results", _results(ids, _model(conn), 1, rng.random(len(ids))),
                    key=("model_id", "source_id"))
    plain = _snapshot(fresh_pg)
    assert {k for _, k in plain["kinds"]} == {"r"}
    upgrade(fresh_pg, "0003")
    parted = _snapshot(fresh_pg)
    assert {k for _, k in parted["kinds"]} == {"p"}
    _same_reads(plain, parted)
    with fresh_pg.connect() as conn:
        assert _partition_of_rows(conn, "xp_correlations")[int(IDS[2])] == "xp_correlations_l1_01"
        fks = conn.exec_driver_sql("SELECT conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
                                   "AND conrelid IN ('xp_correlations'::regclass, 'inference_results'::regclass)"
                                   ).scalars().all()
    assert sorted(fks) == ["fk_inference_results_model_id_models", "fk_xp_correlations_source_id_xp_spectra"]
    # two streams split at a partition bound read what one stream reads
    old = parallel_read.PARALLEL_MIN_ROWS
    parallel_read.PARALLEL_MIN_ROWS = 10
    try:
        two = read_spectra(fresh_pg, Selection.everything(), with_correlations=True, streams=2)
    finally:
        parallel_read.PARALLEL_MIN_ROWS = old
    two.update({k: parted[k] for k in ("results", "views")})
    _same_reads(parted, two)
    # the foreign key still cascades across the partitioned pair
    with fresh_pg.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM xp_spectra WHERE source_id = {int(ids[0])}")
        assert conn.exec_driver_sql(f"SELECT count(*) FROM xp_correlations WHERE source_id = {int(ids[0])}"
                                    ).scalar_one() == 0
        write_xp_batch(conn, make_batch(ids[:1], seed=9), "old.csv")
    downgrade(fresh_pg, before)
    back = _snapshot(fresh_pg)
    assert {k for _, k in back["kinds"]} == {"r"}
    assert back["source_id"].tolist() == plain["source_id"].tolist() and back["results"] == plain["results"]
    upgrade(fresh_pg, "head")


@pytest.mark.integration
def test_stream_splits_move_onto_a_partition_bound(pg_engine):
    rng = np.random.default_rng(2)
    # 60 % of the stars below the first bound: the even split (50 %) is 10 % away, within a quarter of a part
    ids = np.unique(np.concatenate([rng.integers(1, SPAN, 600), rng.integers(SPAN, 2 * SPAN, 400)]))
    with pg_engine.begin() as conn:
        write_xp_batch(conn, make_batch(ids, correlations=False), "a.csv")
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE xp_spectra")
    assert parallel_read._histogram_splits(pg_engine, Selection.everything(), 2) == [SPAN - 1]


def _analyze_counts(conn) -> dict[str, int]:
    return dict(conn.exec_driver_sql("SELECT relname, analyze_count FROM pg_stat_user_tables "
                                     "WHERE relname LIKE 'xp_spectra%%' OR relname = 'photometry'").all())


@pytest.mark.integration
def test_a_load_analyses_only_the_partitions_it_wrote_and_the_streams_split_on_them(pg_engine):
    """Ingest's ANALYZE covers the partitions holding the sky pixels it loaded (and unpartitioned tables whole),
    never the 48 partitions and the parent; the parallel read still splits, from the partitions' statistics."""
    rng = np.random.default_rng(31)
    ids = np.unique(np.concatenate([rng.integers(1, SPAN, 600), rng.integers(5 * SPAN, 5 * SPAN + SPAN // 3, 400)]))
    with pg_engine.begin() as conn:
        write_xp_batch(conn, make_batch(ids, correlations=False), "a.csv")
        write_photometry(conn, {"source_id": ids, "phot_g_mean_flux": np.ones(len(ids))})
    assert partitions.touched_pixels(ids) == set((ids >> (35 + 2 * (12 - partitions.TOUCH_LEVEL))).tolist())
    with pg_engine.connect() as conn:
        before = _analyze_counts(conn)
        assert partitions.partitions_touched(conn, "xp_spectra", partitions.touched_pixels(ids)) == [
            partition_name("xp_spectra", 0), partition_name("xp_spectra", 5)]
        assert partitions.partitions_touched(conn, "photometry", {1}) is None      # not partitioned: whole
        # a pixel at the very end of the id line lands in the last partition (MAXVALUE)
        last = (2 ** 63 - 1) >> (35 + 2 * (12 - partitions.TOUCH_LEVEL))
        assert partitions.partitions_touched(conn, "xp_spectra", {last}) == [partition_name("xp_spectra", 47)]
    analyze(pg_engine, ("xp_spectra", "photometry"), partitions.touched_pixels(ids))
    with pg_engine.connect() as conn:
        after = _analyze_counts(conn)
    grew = sorted(name for name in after if after[name] > before.get(name, 0))
    assert grew == ["photometry", partition_name("xp_spectra", 0), partition_name("xp_spectra", 5)]
    old = parallel_read.PARALLEL_MIN_ROWS
    parallel_read.PARALLEL_MIN_ROWS = 10
    try:
        splits = parallel_read._histogram_splits(pg_engine, Selection.everything(), 2)
        two = read_spectra(pg_engine, Selection(), streams=2)
    finally:
        parallel_read.PARALLEL_MIN_ROWS = old
    assert splits == [SPAN - 1]          # 600 of 1000 stars below the bound: the even cut moves onto it
    one = read_spectra(pg_engine, Selection(), expected_rows=1)
    assert two.keys() == one.keys() and len(one["source_id"]) == len(ids)
    for k in one:
        assert np.array_equal(np.ascontiguousarray(two[k]).view(np.uint8),
                              np.ascontiguousarray(one[k]).view(np.uint8)), k


@pytest.mark.integration
def test_a_sky_region_splits_into_its_four_children_with_its_rows(pg_engine):
    rng = np.random.default_rng(8)
    ids = np.unique(np.concatenate([IDS, 20 * SPAN + rng.integers(0, SPAN, 40), [20 * SPAN, 21 * SPAN - 1]]))
    with pg_engine.begin() as conn:
        write_xp_batch(conn, make_batch(ids, seed=6), "a.csv")
        upsert_rows(conn, "inference_results", _results(ids, _model(conn), 1, np.arange(len(ids))),
                    key=("model_id", "source_id"))
    before = read_spectra(pg_engine, Selection.everything(), with_correlations=True)
    with pg_engine.begin() as conn:
        partitions.split_partition(conn, 20)
        with pytest.raises(ValueError, match="inference_results has no partition inference_results_l1_20"):
            with conn.begin_nested():
                partitions.split_partition(conn, 20)
    with pytest.raises(ValueError, match="no HEALPix level-1 pixel 48"):
        with pg_engine.begin() as conn:
            partitions.split_partition(conn, 48)
    after = read_spectra(pg_engine, Selection.everything(), with_correlations=True)
    for key in ("source_id", "coefficients", "correlations", "has_correlations"):
        assert np.array_equal(before[key].view(np.uint8), after[key].view(np.uint8)), key
    quarter = pixel_span(2)
    with pg_engine.connect() as conn:
        assert partitions.table_partition_bounds(conn, "xp_correlations") == sorted(
            set(inner_bounds().tolist()) | {20 * SPAN + k * quarter for k in (1, 2, 3)})
        for t in PARTITIONED_TABLES:
            where = _partition_of_rows(conn, t)
            assert len(where) == len(ids), t
            for s in ids[(ids >= 20 * SPAN) & (ids < 21 * SPAN)]:
                assert where[int(s)] == partition_name(t, int(healpix_pixel(s, 2)), 2), (t, s)
        assert conn.exec_driver_sql("SELECT count(*) FROM inference_results WHERE source_id BETWEEN "
                                    f"{20 * SPAN} AND {21 * SPAN - 1}").scalar_one() == 42
