"""db.labels and shared.quality: the APOGEE cross-match primary, quality flags, the xp_apogee view."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from db.labels import read_labels, write_apogee
from db.selection import Selection
from db.spectra import count, write_photometry, write_xp_batch
from shared.quality import primary_mask, quality_flags
from shared.xp import APOGEE_COLUMNS, XPBatch


def labels_table(n: int, **cols) -> dict[str, np.ndarray]:
    """n rows of a plain, clearly pristine cool giant; override columns by keyword."""
    base = {"apogee_id": [f"2M{i:08d}" for i in range(n)], "telescope": ["apo25m"] * n, "field": ["F"] * n,
            "gaia_source_id": np.arange(1, n + 1), "gaia_g_mag": np.full(n, 12.0), "gaia_bp_mag": np.full(n, 12.6),
            "gaia_rp_mag": np.full(n, 11.4), "teff": np.full(n, 4600.0), "teff_err": np.full(n, 10.0),
            "logg": np.full(n, 2.4), "logg_err": np.full(n, 0.03), "m_h": np.full(n, -0.2),
            "m_h_err": np.full(n, 0.01), "alpha_m": np.full(n, 0.05), "fe_h": np.full(n, -0.2),
            "mg_fe": np.full(n, 0.05), "snr": np.full(n, 100.0), "aspcapflag": np.zeros(n, np.int64),
            "starflag": np.zeros(n, np.int64), "extratarg": np.zeros(n, np.int64)}
    base.update(cols)
    return {k: (np.asarray(v) if not isinstance(v, list) else v) for k, v in base.items()}


def _primaries(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(
            "SELECT gaia_source_id, apogee_id FROM apogee_labels WHERE is_primary")))


def test_duplicates_one_primary_per_source(engine):
    """Source 7 has four rows: the highest SNR one is flagged DUPLICATE (EXTRATARG bit 4) and must lose to the
    best clean row; source 0 (unmatched) never gets a primary; the answer does not depend on load order or
    on loading the same file twice."""
    labels = labels_table(
        6, apogee_id=["a", "b", "c", "d", "e", "f"], gaia_source_id=np.array([7, 7, 7, 7, 0, 8]),
        snr=np.array([50.0, 300.0, 80.0, np.nan, 500.0, 20.0]), extratarg=np.array([0, 16, 0, 0, 0, 16 | 2]))
    with engine.begin() as conn:
        write_apogee(conn, labels, "allStar.fits")
    assert _primaries(engine) == [(7, "c")]         # source 8's only row is a duplicate: no primary
    rev = {k: (v[::-1] if isinstance(v, np.ndarray) else list(reversed(v))) for k, v in labels.items()}
    with engine.begin() as conn:
        write_apogee(conn, rev, "allStar.fits")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM apogee_labels")).scalar_one() == 6
    assert _primaries(engine) == [(7, "c")]
    # A re-processed row moves to another star: both the old and the new source are recomputed.
    with engine.begin() as conn:
        write_apogee(conn, labels_table(1, apogee_id=["c"], gaia_source_id=np.array([9]), snr=np.array([80.0])),
                     "fix.fits")
    assert _primaries(engine) == [(7, "a"), (9, "c")]


def test_sql_primary_agrees_with_numpy_on_random_duplicates(engine):
    """Two independent implementations (SQL window function, numpy lexsort) agree on 400 random rows with
    many duplicates, duplicate bits and unknown SNRs (distinct SNRs, so no tie rule is involved)."""
    rng = np.random.default_rng(3)
    n = 400
    snr = rng.permutation(n).astype(float) + 1
    snr[rng.random(n) < 0.1] = np.nan
    labels = labels_table(n, apogee_id=[f"s{i}" for i in range(n)], gaia_source_id=rng.integers(-1, 120, n),
                          snr=snr, extratarg=np.where(rng.random(n) < 0.3, 16, 0))
    with engine.begin() as conn:
        write_apogee(conn, labels, "x.fits")
    want = primary_mask(labels["gaia_source_id"], labels["extratarg"], labels["snr"])
    expected = sorted((int(g), a) for g, a, w in zip(labels["gaia_source_id"], labels["apogee_id"], want) if w)
    assert _primaries(engine) == expected
    assert len(expected) > 50


def test_quality_flags_at_the_cut_edges():
    """Stars just inside / outside each cut of docs/science.md §9.1, and the Patil split on both sides of its
    boundary ([Mg/Fe]_b(0) = 0.1353): each row differs from a pristine cool giant in one value."""
    n = 9
    lab = labels_table(n)
    lab["teff_err"] = np.array([10, 47, 10, 10, 10, 10, 10, 10, 10.0])     # 4600/47 = 97.9 < 100: not pristine
    lab["logg_err"] = np.array([.03, .03, .3, .03, .03, .03, .03, .03, .03])  # 0.3: good only
    lab["starflag"] = np.array([0, 0, 0, 4, 0, 0, 0, 0, 0])                  # any STARFLAG bit: neither
    lab["aspcapflag"] = np.array([0, 0, 0, 0, 8, 1 << 23, 0, 0, 0])         # bit 3 fails; bit 23 not a §9 cut
    lab["gaia_g_mag"] = np.array([12, 12, 12, 12, 12, 12, 17.6, np.nan, 12.0])
    lab["teff"] = np.array([4600, 4600, 4600, 4600, 4600, 4600, 4600, 4600, 5100.0])  # 5100 K: giant, not cool
    lab["fe_h"] = np.zeros(n)
    lab["mg_fe"] = np.array([0.14, 0.13, 0.14, 0.13, 0.14, 0.13, 0.14, 0.13, np.nan])
    lab["alpha_m"] = np.full(n, 0.3)
    lab["m_h"] = np.zeros(n)
    f = quality_flags(lab)
    assert f["pristine"].tolist() == [True, False, False, False, False, True, False, False, True]
    assert f["good"].tolist() == [True, True, True, False, False, True, False, False, True]
    assert f["giant"].all()
    assert f["cool_giant"].tolist() == [True] * 8 + [False]
    assert f["high_alpha"].tolist() == [True, False, True, False, True, False, True, False, True]  # last: fallback
    assert f["high_alpha_known"].all()


def test_xp_apogee_view_and_read_labels(engine):
    """The view joins spectra to primary labels only; read_labels aligns with the requested ids."""
    batch = XPBatch.empty(3, with_correlations=False)
    batch.columns["source_id"][:] = [1, 2, 50]
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "xp.csv")
        write_photometry(conn, {"source_id": np.array([1, 2, 50]), "phot_g_mean_flux": np.ones(3)})
        write_apogee(conn, labels_table(3, snr=np.array([10.0, 20, 30]),
                                        gaia_source_id=np.array([1, 1, 2]), teff=np.array([4000.0, 4100, 4200])),
                     "allStar.fits")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, teff, pristine FROM xp_apogee ORDER BY source_id")).all()
    assert [(r[0], r[1]) for r in rows] == [(1, 4100.0), (2, 4200.0)] and all(r[2] for r in rows)
    out = read_labels(engine, [50, 2, 1, 2])
    assert out["labelled"].tolist() == [False, True, True, True]
    assert np.array_equal(out["teff"], [np.nan, 4200, 4100, 4200], equal_nan=True)
    assert out["apogee_id"].tolist() == ["", "2M00000002", "2M00000001", "2M00000002"]
    assert out["pristine"].tolist() == [False, True, True, True]
    assert set(APOGEE_COLUMNS) <= set(out)
    sel = Selection(require_both_bands=False, quality=("pristine", "cool_giant"))
    assert count(engine, sel) == 2
    assert read_labels(engine, sel)["source_id"].tolist() == [1, 2]
    assert count(engine, Selection(require_both_bands=False, labelled=False)) == 1


def _stored_flag_ids(engine, flag: str) -> list[int]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.text(
            f"SELECT gaia_source_id FROM apogee_labels WHERE is_primary AND {flag} ORDER BY gaia_source_id")))


def test_sql_flags_and_analysis_samples_select_the_same_stars(engine):
    """`WHERE pristine` / `WHERE good` in SQL and analysis.samples on the labels read back pick the same stars,
    including stars whose STARFLAG / ASPCAPFLAG are NULL (unknown flags fail: docs/science.md §9.1) and a file
    that lacks the flag columns altogether."""
    from analysis.samples import select_samples
    rng = np.random.default_rng(20261201)
    n = 240
    flag_values, p = np.array([0, -1, np.nan, 4, 1 << 3, 1 << 23]), [.5, .1, .1, .1, .1, .1]   # -1, NaN: NULL
    lab = labels_table(n, teff_err=rng.choice([10.0, 40.0, 300.0], n, p=[.7, .2, .1]),
                       logg_err=rng.choice([0.03, 0.3, 0.5], n, p=[.7, .2, .1]),
                       gaia_g_mag=rng.choice([12.0, 17.6, np.nan], n, p=[.8, .1, .1]),
                       starflag=rng.choice(flag_values, n, p=p), aspcapflag=rng.choice(flag_values, n, p=p))
    no_flags = {k: v for k, v in labels_table(20, gaia_source_id=np.arange(n + 1, n + 21),
                                              apogee_id=[f"2N{i:08d}" for i in range(20)]).items()
                if k not in ("starflag", "aspcapflag")}
    with engine.begin() as conn:
        write_apogee(conn, lab, "allStar.fits")
        write_apogee(conn, no_flags, "subset.fits")
    ids = np.arange(1, n + 21)
    masks = select_samples(read_labels(engine, ids)).masks
    unknown = np.isnan(lab["starflag"]) | (lab["starflag"] < 0) | np.isnan(lab["aspcapflag"]) | (lab["aspcapflag"] < 0)
    for flag in ("pristine", "good"):
        stored = _stored_flag_ids(engine, flag)
        assert stored == ids[masks[flag]].tolist(), flag
        assert not set(stored) & set(ids[:n][unknown].tolist()) and max(stored) <= n    # unknown flags never pass
        assert len(stored) > 10                                                       # the comparison has teeth
