"""APOGEE labels, Gaia photometry, the published catalogue, the duplicate rules and the quality cuts.

Truths: the real DR17 subset read independently with astropy; small tables built here with known values
(sentinels, duplicates, boundary stars) where the expected output follows from docs/data-formats.md §3-4 and
docs/science.md §9 by hand; a brute-force per-group loop for the duplicate rule.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from ingest.readers import ReaderError, read_apogee, read_catalogue, read_norm_npz, read_photometry, read_xp
from shared.quality import primary_mask, quality_flags
from shared.xp import APOGEE_COLUMNS, G_ZERO_POINT, PHOTOMETRY_COLUMNS, ReadReport, XPBatch


def concat(chunks):
    chunks = list(chunks)
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def test_real_lowercase_subset(shared_dir):
    path = shared_dir / "data/apogee/Apogee_data_filtered_1612.fits"
    rep = ReadReport(str(path))
    chunks = list(read_apogee(path, rep, chunk_rows=1000))
    assert [len(c["teff"]) for c in chunks] == [1000, 612]
    got = concat(chunks)
    assert set(got) == set(APOGEE_COLUMNS)
    ref = Table.read(path)
    np.testing.assert_array_equal(got["gaia_source_id"], ref["dr3_source_id"])
    np.testing.assert_array_equal(got["teff"], np.asarray(ref["teff"], np.float32))
    np.testing.assert_array_equal(got["mg_fe_err"], np.asarray(ref["mg_fe_err"], np.float32))
    assert got["apogee_id"][0] == str(ref["apogee_id"][0]).strip() and got["apogee_id"].dtype.kind == "U"
    # the subset has no SNR, flags or 2MASS: filled, and said so
    assert np.isnan(got["snr"]).all() and (got["aspcapflag"] == 0).all() and np.isnan(got["j"]).all()
    assert any("SNR" in n for n in rep.notes) and any("ASPCAPFLAG" in n for n in rep.notes)
    assert rep.rows_ok == 1612 and not rep.bad_rows


def dr17_table() -> Table:
    """Five stars in DR17 upper-case naming with the sentinels the reader must clean."""
    return Table({
        "APOGEE_ID": ["2M000", "2M001", "2M002", "2M003", "2M004"],
        "TELESCOPE": ["apo25m", "lco25m", "apo25m", "apo1m", "apo25m"],
        "FIELD": ["F1", "F2", "F3", "F4", "F5"],
        "GAIAEDR3_SOURCE_ID": np.array([11, 0, 13, 13, 2 ** 62 + 5], np.int64),
        "GAIAEDR3_PHOT_G_MEAN_MAG": np.array([12.0, 13.0, 14.0, 14.1, 15.0], np.float32),
        "GAIAEDR3_PHOT_BP_MEAN_MAG": np.array([12.5, 13.6, 14.8, 14.9, 15.5], np.float32),
        "GAIAEDR3_PHOT_RP_MEAN_MAG": np.array([11.4, 12.3, 13.1, 13.2, 14.4], np.float32),
        "GAIAEDR3_PARALLAX": np.array([1.0, 0.5, -0.1, 0.2, 0.3], np.float32),
        "GAIAEDR3_PARALLAX_ERROR": np.full(5, 0.02, np.float32),
        "TEFF": np.array([4800.0, -9999.0, 4500.0, np.nan, 5200.0], np.float32),
        "TEFF_ERR": np.array([10.0, -9999.0, 12.0, 50.0, 30.0], np.float32),
        "LOGG": np.array([2.5, 4.4, 2.0, 2.1, 3.0], np.float32),
        "LOGG_ERR": np.full(5, 0.03, np.float32),
        "M_H": np.array([-0.3, 0.1, -1.0, -1.0, 0.0], np.float32),
        "M_H_ERR": np.full(5, 0.01, np.float32),
        "ALPHA_M": np.array([0.2, 0.0, 0.3, 0.3, -9999.0], np.float32),
        "ALPHA_M_ERR": np.full(5, 0.01, np.float32),
        "FE_H": np.array([-0.3, 0.1, -1.0, -1.0, 0.0], np.float32),
        "FE_H_ERR": np.full(5, 0.01, np.float32),
        "MG_FE": np.array([0.25, 0.0, 0.3, 0.3, 0.05], np.float32),
        "MG_FE_ERR": np.full(5, 0.02, np.float32),
        "SNR": np.array([100.0, 50.0, 80.0, 200.0, 90.0], np.float32),
        "J": np.array([10.0, 99.999, 11.0, 11.0, 12.0], np.float32),
        "H": np.array([9.5, 9.9, 10.5, 10.5, 11.5], np.float32),
        "K": np.array([9.4, 9.8, 99.999, 10.4, 11.4], np.float32),
        "SFD_EBV": np.full(5, 0.05, np.float32),
        "ASPCAPFLAG": np.array([0, 1 << 23, 0, 0, 1 << 3], np.int64),
        "STARFLAG": np.array([0, 0, 4, 0, 0], np.int64),
        "EXTRATARG": np.array([0, 0, 0, 16, 0], np.int32),
        "VHELIO_AVG": np.zeros(5, np.float32),          # an extra column to ignore
    })


@pytest.mark.parametrize("fmt", ["fits", "csv", "xml"])
def test_dr17_uppercase_names_and_sentinels(tmp_path, fmt):
    path = tmp_path / f"allStar.{fmt}"
    dr17_table().write(path, format={"fits": "fits", "csv": "ascii.csv", "xml": "votable"}[fmt])
    rep = ReadReport(str(path))
    got = concat(read_apogee(path, rep, chunk_rows=2))
    assert not getattr(rep, "notes", [])             # every column was present
    assert got["apogee_id"].tolist() == ["2M000", "2M001", "2M002", "2M003", "2M004"]
    assert got["telescope"][1] == "lco25m"
    np.testing.assert_array_equal(got["gaia_source_id"], [11, 0, 13, 13, 2 ** 62 + 5])
    assert np.isnan(got["teff"][[1, 3]]).all() and got["teff"][0] == 4800.0      # -9999 and NaN
    assert np.isnan(got["teff_err"][1]) and np.isnan(got["alpha_m"][4])
    assert np.isnan(got["j"][1]) and np.isnan(got["k"][2]) and got["h"][1] == np.float32(9.9)
    np.testing.assert_array_equal(got["extratarg"], [0, 0, 0, 16, 0])
    np.testing.assert_array_equal(got["aspcapflag"], [0, 1 << 23, 0, 0, 8])
    assert got["gaia_bp_mag"][2] == np.float32(14.8) and got["parallax"][2] == np.float32(-0.1)
    for k, dt in APOGEE_COLUMNS.items():
        assert (got[k].dtype.kind == "U") if dt is str else (got[k].dtype == dt), k


def test_apogee_without_id_column_is_rejected(tmp_path):
    path = tmp_path / "x.csv"
    Table({"TEFF": [5000.0], "GAIAEDR3_SOURCE_ID": [1]}).write(path, format="ascii.csv")
    with pytest.raises(ReaderError, match="APOGEE_ID"):
        list(read_apogee(path))


def brute_primary(sid, extratarg, snr):
    keep = np.zeros(len(sid), bool)
    for s in set(sid.tolist()):
        if s <= 0:
            continue
        rows = [i for i in range(len(sid)) if sid[i] == s and not extratarg[i] & 16]
        if rows:
            best = max(rows, key=lambda i: (-np.inf if np.isnan(snr[i]) else snr[i], -i))
            keep[best] = True
    return keep


def test_primary_mask_rules():
    t = dr17_table()
    got = primary_mask(t["GAIAEDR3_SOURCE_ID"], t["EXTRATARG"], t["SNR"])
    # row 1 unmatched (0); rows 2 and 3 share 13 but row 3 has the DUPLICATE bit despite its higher SNR
    assert got.tolist() == [True, False, True, False, True]
    sid = np.array([5, 5, 5, 7, 7, -3, 9], np.int64)
    snr = np.array([10.0, 30.0, 30.0, np.nan, 1.0, 99.0, np.nan])
    assert primary_mask(sid, np.zeros(7, int), snr).tolist() == [False, True, False, False, True, False, True]


def test_primary_mask_matches_brute_force_on_random_tables():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 200
        sid = rng.integers(-2, 40, n)
        ext = rng.choice([0, 16, 2, 18], n)
        snr = np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 20, n).astype(float))   # ties on purpose
        np.testing.assert_array_equal(primary_mask(sid, ext, snr), brute_primary(sid, ext, snr))


def test_quality_flags_each_cut_flips_one_star():
    base = dict(teff=4800.0, teff_err=10.0, logg=2.5, logg_err=0.05, m_h=-0.2, m_h_err=0.02, gaia_g_mag=12.0,
                gaia_bp_mag=12.6, gaia_rp_mag=11.4, aspcapflag=0, starflag=0)
    variants = [{}, {"teff_err": 60.0},           # Teff/σ = 80: good, not pristine
                {"logg_err": 0.2}, {"m_h_err": 0.1},                     # good only
                {"gaia_g_mag": 17.6}, {"gaia_bp_mag": 16.0},             # photometric cuts (BP-RP = 4.6)
                {"starflag": 4}, {"aspcapflag": 1 << 3}, {"aspcapflag": 1 << 23},
                {"teff": 5200.0, "teff_err": 20.0}, {"logg": 4.5}, {"gaia_g_mag": np.nan}]
    labels = {k: np.array([{**base, **v}[k] for v in variants]) for k in base}
    f = quality_flags(labels)
    # docs/science.md §9 names ASPCAPFLAG bits 2 and 3 only: STAR_BAD (bit 23) alone does not fail the cut
    assert f["pristine"].tolist() == [True, False, False, False, False, False, False, False, True, True,
                                      True, False]
    assert f["good"].tolist() == [True, True, True, True, False, False, False, False, True, True, True, False]
    # giant: logg < 5.9 - 4 Teff/1e4 -> 3.98 at 4800 K, 3.82 at 5200 K
    assert f["giant"].tolist() == [True] * 10 + [False, True]
    assert f["cool_giant"].tolist() == [True] * 9 + [False, False, True]
    # explicit photometry overrides the label magnitudes
    f2 = quality_flags(labels, bp_rp=np.full(12, 1.0), g=np.full(12, 12.0))
    assert f2["pristine"][4] and f2["pristine"][5] and f2["pristine"][11]


def test_photometry_formats_and_derived_flux(tmp_path):
    mags = np.array([10.0, 15.0, 20.0])
    t = Table({"source_id": np.array([1, 2, 3], np.int64), "phot_g_mean_mag": mags,
               "phot_bp_mean_mag": mags + 0.5, "phot_rp_mean_mag": mags - 0.5, "ra": [1.0, 2.0, 3.0]})
    for fmt, name in (("ascii.csv", "p.csv"), ("ascii.ecsv", "p.ecsv"), ("fits", "p.fits"), ("votable", "p.xml")):
        t.write(tmp_path / name, format=fmt)
        rep = ReadReport(name)
        got = concat(read_photometry(tmp_path / name, chunk_rows=2, report=rep))
        assert set(got) == set(PHOTOMETRY_COLUMNS)
        np.testing.assert_array_equal(got["source_id"], [1, 2, 3])
        # definition of the Gaia G zero point: a flux of 10**(ZP/2.5) e-/s is G = 0
        np.testing.assert_allclose(-2.5 * np.log10(got["phot_g_mean_flux"]) + G_ZERO_POINT, mags, rtol=1e-12)
        np.testing.assert_allclose(got["phot_g_mean_flux"][0], 10 ** ((G_ZERO_POINT - 10.0) / 2.5))
        np.testing.assert_array_equal(got["phot_rp_mean_mag"], mags - 0.5)
        assert any("derived" in n for n in rep.notes)


def test_photometry_flux_only_and_bad_source_id(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("source_id,phot_g_mean_flux\n5,1000.0\n,2000.0\n7,abc\n8,\n")
    rep = ReadReport(str(path))
    got = concat(read_photometry(path, report=rep))
    np.testing.assert_array_equal(got["source_id"], [5, 8])
    np.testing.assert_allclose(got["phot_g_mean_mag"][0], G_ZERO_POINT - 7.5)
    assert np.isnan(got["phot_g_mean_mag"][1]) and np.isnan(got["phot_bp_mean_mag"]).all()
    assert sorted((b.row, b.column) for b in rep.bad_rows) == [(2, "source_id"), (3, "phot_g_mean_flux")]


def write_catalogue(path, n=7):
    rng = np.random.default_rng(3)
    coeffs = rng.normal(size=(n, 110)) * 100
    coeffs[2, 60] = np.nan          # a broken row: reported, dropped from all three parts
    t = Table({"ids": np.arange(100, 100 + n, dtype=np.int64), "coeffs": coeffs,
               "coeff_errs": np.abs(rng.normal(size=(n, 110))).astype(np.float32),
               "phot_g_mean_flux": np.full(n, 10 ** ((G_ZERO_POINT - 12.0) / 2.5)),
               "TEFF": np.linspace(4000, 5000, n).astype(np.float32), "M_H": np.zeros(n, np.float32),
               "ALPHA_M": np.full(n, -9999.0, np.float32), "J": np.full(n, 99.999, np.float32),
               "GAIAEDR3_PHOT_BP_MEAN_MAG": np.full(n, 12.5, np.float32),
               "STARFLAG": np.zeros(n, np.int64), "Lz": np.arange(n, dtype=float), "jz": np.ones(n),
               "jr": np.ones(n)})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # astropy warns whenever the path is its own default
        t.write(path, path="__astropy_table__", serialize_meta=True, overwrite=True)
    return t


def test_catalogue_chunks_are_aligned_and_exact(tmp_path):
    path = tmp_path / "xp_apogee_cat.h5"
    t = write_catalogue(path)
    rep = ReadReport(str(path))
    parts = list(read_catalogue(path, chunk_rows=3, report=rep))
    assert len(parts) == 3
    batch = XPBatch.concat([p[0] for p in parts])
    labels = concat([p[1] for p in parts])
    phot = concat([p[2] for p in parts])
    keep = np.arange(7) != 2
    assert [(b.row, b.column) for b in rep.bad_rows] == [(3, "rp_coefficients")]
    np.testing.assert_array_equal(batch["source_id"], np.asarray(t["ids"])[keep])
    np.testing.assert_array_equal(batch.coefficients110(), np.asarray(t["coeffs"])[keep])
    np.testing.assert_array_equal(batch.errors110(), np.asarray(t["coeff_errs"], np.float64)[keep])
    assert not batch.has_correlations and not batch["bp_missing"].any()
    np.testing.assert_array_equal(labels["gaia_source_id"], batch["source_id"])
    np.testing.assert_array_equal(labels["teff"], np.asarray(t["TEFF"])[keep])
    assert np.isnan(labels["alpha_m"]).all() and np.isnan(labels["j"]).all()
    np.testing.assert_array_equal(labels["lz"], np.arange(7.0)[keep])
    np.testing.assert_allclose(phot["phot_g_mean_mag"], 12.0, rtol=1e-12)
    np.testing.assert_array_equal(phot["phot_bp_mean_mag"], 12.5)
    np.testing.assert_array_equal(phot["source_id"], batch["source_id"])
    # read_xp on the same file yields the spectra part
    assert len(XPBatch.concat(read_xp(path))) == 6


def test_norm_npz(tmp_path):
    mu, sig = np.arange(110.0), np.linspace(1, 2, 110)
    np.savez(tmp_path / "apogee_norm.npz", mu=mu, sig=sig)
    got_mu, got_sig = read_norm_npz(tmp_path / "apogee_norm.npz")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sig, sig)
    np.savez(tmp_path / "bad.npz", mu=mu, sig=-sig)
    with pytest.raises(ReaderError, match="bad.npz"):
        read_norm_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", mu=mu[:55], sig=sig[:55])
    with pytest.raises(ReaderError, match="110"):
        read_norm_npz(tmp_path / "short.npz")
