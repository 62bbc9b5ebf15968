"""db.bulk / db.spectra on both backends: exact round trips, idempotent upserts, selections and shards."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from db.bulk import upsert_rows
from db.selection import Selection
from db.spectra import count, read_spectra, source_id_quantiles, write_photometry, write_xp_batch
from shared.xp import N_COEFF, N_CORR, XPBatch


def make_batch(ids, seed=0, missing_bp=(), missing_rp=(), correlations=True) -> XPBatch:
    """Random spectra with awkward float values (subnormals, -0.0, huge, tiny) to catch any lossy step."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    b = XPBatch.empty(n, with_correlations=correlations)
    c = b.columns
    c["source_id"][:] = ids
    c["solution_id"][:] = 4545469030156206080
    for band in ("bp", "rp"):
        c[f"{band}_missing"][:] = False
        coeff = rng.normal(size=(n, N_COEFF)) * 10.0 ** rng.integers(-300, 300, size=(n, N_COEFF))
        coeff[:, 0] = 5e-324          # subnormal float64
        coeff[:, 1] = -0.0
        c[f"{band}_coefficients"][:] = coeff
        err = rng.random((n, N_COEFF)).astype(np.float32)
        err[:, 0] = np.float32(1e-45)  # subnormal float32
        c[f"{band}_coefficient_errors"][:] = err
        if correlations:
            c[f"{band}_coefficient_correlations"][:] = rng.uniform(-1, 1, (n, N_CORR)).astype(np.float32)
        c[f"{band}_n_relevant_bases"][:] = rng.integers(3, 54, n)
        c[f"{band}_standard_deviation"][:] = rng.random(n).astype(np.float32)
    for band, rows in (("bp", missing_bp), ("rp", missing_rp)):
        for i in rows:
            c[f"{band}_missing"][i] = True
            c[f"{band}_coefficients"][i] = np.nan
            c[f"{band}_coefficient_errors"][i] = np.nan
            c[f"{band}_n_relevant_bases"][i] = -1
            c[f"{band}_standard_deviation"][i] = np.nan
            if correlations:
                c[f"{band}_coefficient_correlations"][i] = np.nan
    return b


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8)


def test_xp_round_trip_is_bit_exact(engine):
    """Every stored byte comes back: float64 coefficients, float32 errors and correlations compared as raw
    bits (so -0.0 and subnormals count), missing bands NaN and flagged, photometry NaN where absent."""
    ids = np.array([9, 3, 7_000_000_000_000_000_001, 5], np.int64)
    batch = make_batch(ids, missing_bp=[1], missing_rp=[3])
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "a.csv")
        write_photometry(conn, {"source_id": np.array([9, 5]), "phot_g_mean_flux": np.array([1.5e4, 2.25])})
    out = read_spectra(engine, with_correlations=True)
    order = np.argsort(ids)
    assert out["source_id"].tolist() == ids[order].tolist()
    want = batch.take(order)
    assert np.array_equal(_bits(out["coefficients"]), _bits(want.coefficients110()))
    errs = np.concatenate([want["bp_coefficient_errors"], want["rp_coefficient_errors"]], axis=1)
    assert out["errors"].dtype == np.float32 and np.array_equal(_bits(out["errors"]), _bits(errs))
    corr = np.stack([want["bp_coefficient_correlations"], want["rp_coefficient_correlations"]], axis=1)
    assert np.array_equal(_bits(out["correlations"]), _bits(corr))
    assert out["bp_missing"].tolist() == [True, False, False, False]    # ids sorted: 3, 5, 9, 7e18
    assert out["rp_missing"].tolist() == [False, True, False, False]
    assert np.isnan(out["coefficients"][0, :N_COEFF]).all() and np.isnan(out["errors"][0, :N_COEFF]).all()
    assert np.isnan(out["coefficients"][1, N_COEFF:]).all()
    assert out["has_correlations"].all()
    assert np.array_equal(out["phot_g_mean_flux"], [np.nan, 2.25, 1.5e4, np.nan], equal_nan=True)
    # A missing band is NULL in every one of its columns (db/__init__.py).
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT bp_coefficients, bp_coefficient_errors, bp_n_relevant_bases, "
                                   "bp_standard_deviation FROM xp_spectra WHERE source_id = 3")).one()
        assert tuple(row) == (None, None, None, None)
        length = conn.execute(sa.text("SELECT length(rp_coefficients) FROM xp_spectra WHERE source_id = 3"))
        assert length.scalar_one() == 440


def test_reload_is_idempotent_and_without_correlations_leaves_them(engine):
    """Loading the same batch twice changes no row; a later load without correlations updates the spectra
    but keeps the stored correlations (it has nothing to say about them)."""
    ids = np.arange(100, 160, dtype=np.int64)
    batch = make_batch(ids, seed=1)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "a.csv")
    first = read_spectra(engine, with_correlations=True)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "a.csv")
    again = read_spectra(engine, with_correlations=True)
    assert count(engine, Selection.everything()) == 60
    for k in first:
        assert np.array_equal(first[k], again[k], equal_nan=True), k
    changed = make_batch(ids, seed=2, correlations=False)
    with engine.begin() as conn:
        write_xp_batch(conn, changed, "b.csv")
    after = read_spectra(engine, with_correlations=True)
    assert np.array_equal(after["coefficients"], changed.coefficients110())
    assert np.array_equal(after["correlations"], first["correlations"])


def test_duplicate_keys_in_one_call_keep_the_last_row(engine):
    with engine.begin() as conn:
        upsert_rows(conn, "photometry", {"source_id": np.array([1, 2, 1]), "phot_g_mean_flux": [10.0, 20.0, 30.0]})
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, phot_g_mean_flux FROM photometry ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [(1, 30.0), (2, 20.0)]


def test_failure_inside_the_transaction_writes_nothing(engine):
    batch = make_batch(np.arange(1, 11, dtype=np.int64))
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            write_xp_batch(conn, batch, "a.csv")
            raise RuntimeError("reader broke after the first chunk")
    assert count(engine, Selection.everything()) == 0


def test_bad_input_is_named(engine):
    with engine.begin() as conn:
        with pytest.raises(KeyError, match="no column 'flux'"):
            upsert_rows(conn, "photometry", {"source_id": np.array([1]), "flux": np.array([1.0])})
        with pytest.raises(ValueError, match="phot_g_mean_flux.*2 rows"):
            upsert_rows(conn, "photometry", {"source_id": np.array([1]), "phot_g_mean_flux": np.array([1.0, 2])})


def test_selections_counts_and_shards(engine):
    """Selections against a hand-built table where every count is known by construction."""
    ids = np.arange(1000, 1100, dtype=np.int64)
    batch = make_batch(ids, missing_bp=range(0, 10), correlations=False)     # ids 1000..1009 lack BP
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "a.csv")
        write_photometry(conn, {"source_id": ids[::2], "phot_g_mean_flux": np.ones(50)})   # even ids
    assert count(engine, Selection.everything()) == 100
    assert count(engine, Selection(require_photometry=False)) == 90
    assert count(engine, Selection()) == 45                     # even ids among 1010..1099
    assert count(engine, Selection(source_id_lo=1050, source_id_hi=1059)) == 5
    assert count(engine, Selection(limit=7)) == 7
    got = read_spectra(engine, Selection(limit=7), chunk_rows=3)["source_id"]
    assert got.tolist() == list(range(1010, 1024, 2))
    shards = source_id_quantiles(engine, Selection(), 4)
    assert sum(n for _, _, n in shards) == 45
    covered = np.concatenate([read_spectra(engine, Selection(), source_id_range=(lo, hi))["source_id"]
                              for lo, hi, _ in shards])
    assert covered.tolist() == read_spectra(engine, Selection())["source_id"].tolist()
    by_ids = read_spectra(engine, [1003, 1001, 999_999, 1003])
    assert by_ids["source_id"].tolist() == [1001, 1003] and by_ids["bp_missing"].all()


def test_selection_round_trips_through_json():
    sel = Selection(source_id_lo=5, quality=("pristine", "cool_giant"), labelled=True, limit=10)
    assert Selection.from_dict(sel.to_dict()) == sel
    with pytest.raises(ValueError, match="unknown quality 'shiny'"):
        Selection(quality="shiny")


def test_output_sizing_never_changes_what_is_read(engine, monkeypatch):
    """read_spectra sizes its output from an estimate (planner rows or id-list length), grows it when low and
    trims it when high: with the estimate forced far too low or far too high, the arrays are the same."""
    import db.spectra_read as spectra
    ids = np.arange(5000, 5300, dtype=np.int64)
    with engine.begin() as conn:
        write_xp_batch(conn, make_batch(ids, seed=3, missing_rp=[7]), "s.csv")
        write_photometry(conn, {"source_id": ids, "phot_g_mean_flux": np.arange(300.0)})
    sel = Selection(source_id_lo=5010, source_id_hi=5250)
    ref = read_spectra(engine, sel, chunk_rows=64, expected_rows=241)
    assert len(ref["source_id"]) == 241
    for forced in (0, 5, 241, 10_000):
        monkeypatch.setattr(spectra, "_estimated_rows", lambda *a, forced=forced: forced)
        got = read_spectra(engine, sel, chunk_rows=64)
        assert got.keys() == ref.keys()
        for k in ref:
            assert got[k].shape == ref[k].shape and np.array_equal(_bits(got[k]), _bits(ref[k])), (forced, k)
    monkeypatch.undo()
    from db.bulk import analyze
    analyze(engine, ("xp_spectra", "photometry"))
    est = spectra._estimated_rows(engine, sel, False)
    if engine.dialect.name == "postgresql":
        assert 241 <= est <= 1.3 * 241 + 64, est      # the planner's figure after ANALYZE, padded
    else:
        assert est == 0
    assert spectra._estimated_rows(engine, Selection(source_ids=(5001, 5002, 5002)), False) == 2
