"""The simulator's files: formats readable by astropy / GaiaXPy / the project's readers, exact values,
determinism, the output-directory contract and the CLI."""
from __future__ import annotations

import csv
import gzip
import json
import re

import numpy as np
import pytest

from shared.xp import APOGEE_COLUMNS, ARCHIVE_COLUMNS, BANDS, G_ZERO_POINT, N_COEFF, N_CORR, XPBatch
from simulator import generate, simulate_survey, writers
from simulator.formatting import java_floats
from simulator.survey import ALLSTAR_FILE, PHOTOMETRY_FILE, TRUTH_FILE
from simulator.xp_basis import xp_basis

REAL_CSV = "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW_with_missing_BP.csv"


@pytest.fixture(scope="module")
def small():
    """40 stars whose first row lacks BP and second lacks RP (forced, to test missing bands everywhere)."""
    batch, truth, labels, phot = generate(400, seed=21)
    keep = np.r_[np.flatnonzero(batch["bp_missing"])[:1], np.flatnonzero(batch["rp_missing"])[:1],
                 np.flatnonzero(~(batch["bp_missing"] | batch["rp_missing"]))[:38]]
    if keep.size < 40:   # too few natural missing bands in 400 stars: blank them ourselves
        keep = np.flatnonzero(~(batch["bp_missing"] | batch["rp_missing"]))[:40]
        cols = {k: v[keep].copy() for k, v in batch.columns.items()}
        for row, band in ((0, "bp"), (1, "rp")):
            cols[f"{band}_missing"][row] = True
            for k in cols:
                if k.startswith(band + "_") and k != f"{band}_missing":
                    cols[k][row] = np.nan if cols[k].dtype.kind == "f" else -1
        return XPBatch(cols), truth
    return batch.take(keep), truth


def _parse_tuple(text: str) -> np.ndarray:
    return np.array(text.strip("()[]").replace(" ", "").split(","), dtype=np.float64)


def test_java_floats_round_trip_exactly_and_use_java_style():
    """Every float32/float64 text parses back to the identical value; style: '1.0' for integers, 'E-4' style
    exponents outside [1e-3, 1e7), plain decimals inside (as the archive's Java writer)."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(20000) * 10.0 ** rng.uniform(-9, 9, 20000)).astype(dtype)
        x[:4] = [1.0, -0.0, 1e7, 0.001]
        text = java_floats(x).to_pylist()
        assert np.array_equal(np.array(text, dtype=np.float64).astype(dtype), x)
        for t, v in zip(text, x):
            if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e7):
                assert re.fullmatch(r"-?\d\.\d+E-?\d+", t), t
            else:
                assert re.fullmatch(r"-?\d+\.\d+", t), t
        assert text[:4] == ["1.0", "-0.0", "1.0E7", "0.001"]


def test_archive_csv_layout_matches_real_file_style(tmp_path, small, shared_dir):
    """Header = the 26 archive names; arrays as quoted '(a, b, …)'; a missing band is 12 empty fields;
    values round-trip exactly (float64 coefficients, float32 errors/correlations) — like the real CSV."""
    batch, _ = small
    path = writers.write_xp_csv(batch, tmp_path / "XP_CONTINUOUS_RAW.csv")
    real_header = (shared_dir / REAL_CSV).read_text().splitlines()[0]
    text = path.read_text()
    assert text.splitlines()[0] == real_header == ",".join(ARCHIVE_COLUMNS)
    assert text.endswith("\n") and "\r" not in text
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(batch)
    assert rows[0]["bp_coefficients"] == "" and rows[0]["bp_n_relevant_bases"] == "" and rows[0]["rp_coefficients"]
    assert rows[1]["rp_coefficients"] == "" and rows[1]["rp_standard_deviation"] == ""
    raw_line = text.splitlines()[3]
    assert '"(' in raw_line and ", " in raw_line
    for i in (0, 2, 5):
        for band in BANDS:
            if batch[f"{band}_missing"][i]:
                continue
            c = _parse_tuple(rows[i][f"{band}_coefficients"])
            assert np.array_equal(c, batch[f"{band}_coefficients"][i])
            e = _parse_tuple(rows[i][f"{band}_coefficient_errors"]).astype(np.float32)
            assert np.array_equal(e, batch[f"{band}_coefficient_errors"][i])
            r = _parse_tuple(rows[i][f"{band}_coefficient_correlations"]).astype(np.float32)
            assert r.size == N_CORR and np.array_equal(r, batch[f"{band}_coefficient_correlations"][i])
            assert int(rows[i][f"{band}_basis_function_id"]) == {"bp": 56, "rp": 57}[band]


def test_fit_columns_are_consistent(small):
    """dof = n_measurements − 55, σ² = χ²/dof, n_parameters 55, relative_shrinking = ‖c[:n_rel]‖/‖c‖."""
    batch, _ = small
    for band in BANDS:
        ok = ~batch[f"{band}_missing"]
        dof = batch[f"{band}_degrees_of_freedom"][ok].astype(int)
        assert np.array_equal(dof, batch[f"{band}_n_measurements"][ok].astype(int) - N_COEFF)
        assert np.all(batch[f"{band}_n_parameters"][ok] == N_COEFF)
        sigma = batch[f"{band}_standard_deviation"][ok].astype(float)
        assert np.allclose(sigma**2, batch[f"{band}_chi_squared"][ok] / dof, rtol=1e-5)
        c = batch[f"{band}_coefficients"][ok]
        n_rel = batch[f"{band}_n_relevant_bases"][ok]
        expect = [np.linalg.norm(row[:k]) / np.linalg.norm(row) for row, k in zip(c, n_rel)]
        assert np.allclose(batch[f"{band}_relative_shrinking"][ok], expect, rtol=1e-6)
        assert np.all(np.isnan(batch[f"{band}_coefficients"][~ok]))


def test_gaiaxpy_calibrates_simulated_csv_like_a_real_file(tmp_path, small):
    """GaiaXPy reads our CSV and its calibrate() equals the sampled bases applied to the written coefficients
    (1e-6 relative: only text round-off), and the noise-free spectrum equals the star's SED within 3 % of its
    peak (the regularised projection's fidelity)."""
    from gaiaxpy import calibrate
    batch, truth = small
    both = np.flatnonzero(~(batch["bp_missing"] | batch["rp_missing"]))[:3]
    sub = batch.take(both)
    path = writers.write_xp_csv(sub, tmp_path / "XP_CONTINUOUS_RAW.csv")
    df, sampling = calibrate(str(path), save_file=False)
    basis = xp_basis()
    assert np.allclose(sampling, basis.wavelength)
    flux = np.stack([np.asarray(f, float) for f in df.sort_values("source_id")["flux"]])
    order = np.argsort(sub["source_id"])
    expect = basis.sample(sub.coefficients110()[order])
    assert np.allclose(flux, expect, rtol=1e-6, atol=1e-6 * np.abs(expect).max())


def test_ecsv_fits_and_bulk_files_read_with_astropy(tmp_path, small):
    from astropy.table import Table
    batch, _ = small
    ecsv = writers.write_xp_ecsv(batch, tmp_path / "x.ecsv")
    fits_path = writers.write_xp_fits(batch, tmp_path / "x.fits")
    bulk = writers.write_xp_ecsv(batch, tmp_path / writers.bulk_file_name(batch["source_id"]))
    assert re.fullmatch(r"XpContinuousMeanSpectrum_\d{6}-\d{6}\.csv\.gz", bulk.name)
    with gzip.open(bulk, "rt") as f:
        assert f.readline().startswith("# %ECSV")
    for path in (ecsv, fits_path, bulk):
        t = Table.read(path, format="ascii.ecsv" if path != fits_path else None)
        assert t.colnames == list(ARCHIVE_COLUMNS) and len(t) == len(batch)
        got = np.asarray(t["rp_coefficients"][5], float)
        assert np.array_equal(got, batch["rp_coefficients"][5])
        assert len(t["bp_coefficients"][0]) == 0             # a missing band: zero-length array …
        assert np.ma.is_masked(t["bp_n_measurements"][0])    # … and a null int


def test_round_trip_through_project_reader(tmp_path, small):
    """simulate → CSV/ECSV/FITS → ingest.readers.xp.read_xp gives back the same arrays (float32 precision)."""
    readers = pytest.importorskip("ingest.readers.xp")
    batch, _ = small
    for path in (writers.write_xp_csv(batch, tmp_path / "r.csv"), writers.write_xp_fits(batch, tmp_path / "r.fits"),
                 writers.write_xp_ecsv(batch, tmp_path / "r.csv.gz")):
        got = XPBatch.concat(readers.read_xp(path, correlations=True))
        assert np.array_equal(got["source_id"], batch["source_id"])
        for band in BANDS:
            assert np.array_equal(got[f"{band}_missing"], batch[f"{band}_missing"])
            for key in ("coefficients", "coefficient_errors", "coefficient_correlations"):
                a, b = got[f"{band}_{key}"], batch[f"{band}_{key}"]
                assert np.allclose(a, b, rtol=1e-7, equal_nan=True), (path.name, band, key)
            for key in ("n_measurements", "degrees_of_freedom", "n_relevant_bases"):
                assert np.array_equal(got[f"{band}_{key}"], batch[f"{band}_{key}"]), (path.name, band, key)


@pytest.fixture(scope="module")
def survey_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "survey"
    summary = simulate_survey(900, seed=8, label_fraction=0.5, out_dir=out,
                              formats=("csv", "fits", "bulk", "catalogue"), chunk_size=400)
    return out, summary


def test_survey_directory_contents(survey_dir):
    out, summary = survey_dir
    assert sorted(summary.files["csv"]) == [f"xp/csv/XP_CONTINUOUS_RAW_{i:04d}.csv" for i in range(3)]
    assert len(summary.files["bulk"]) == 3 and len(summary.files["fits"]) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_stars"] == 900 and manifest["seed"] == 8
    assert not list(out.parent.glob(".survey.tmp-*"))          # no half-written sibling left behind
    n_rows = sum(len((out / p).read_text().splitlines()) - 1 for p in summary.files["csv"])
    assert n_rows == 900


def test_photometry_and_truth_files(survey_dir):
    import pyarrow.parquet as pq
    from astropy.table import Table
    out, _ = survey_dir
    phot = Table.read(out / PHOTOMETRY_FILE, format="ascii.csv")
    assert phot.colnames == ["source_id", "phot_g_mean_flux", "phot_g_mean_mag", "phot_bp_mean_mag",
                             "phot_rp_mean_mag"]
    g = G_ZERO_POINT - 2.5 * np.log10(np.asarray(phot["phot_g_mean_flux"]))
    assert np.allclose(g, phot["phot_g_mean_mag"], atol=1e-5)          # G = −2.5 log10(flux) + 25.6874
    truth = pq.read_table(out / TRUTH_FILE)
    assert truth.num_rows == 900
    assert np.array_equal(truth["source_id"].to_numpy(), np.asarray(phot["source_id"]))
    coeffs = np.stack(truth["coefficients_true"].to_numpy(zero_copy_only=False))
    assert coeffs.shape == (900, 2 * N_COEFF)
    assert set(truth["population"].to_pylist()) <= {"thin", "thick", "halo"}


def test_allstar_file_follows_dr17_conventions(survey_dir):
    from astropy.io import fits
    out, _ = survey_dir
    with fits.open(out / ALLSTAR_FILE) as hdul:
        data = hdul[1].data
        names = set(data.columns.names)
        assert {"APOGEE_ID", "TELESCOPE", "FIELD", "GAIAEDR3_SOURCE_ID", "GAIAEDR3_PHOT_G_MEAN_MAG",
                "GAIAEDR3_PHOT_BP_MEAN_MAG", "GAIAEDR3_PHOT_RP_MEAN_MAG", "GAIAEDR3_PARALLAX",
                "GAIAEDR3_PARALLAX_ERROR", "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "M_H", "M_H_ERR", "ALPHA_M",
                "ALPHA_M_ERR", "FE_H", "FE_H_ERR", "MG_FE", "MG_FE_ERR", "SNR", "J", "H", "K", "ASPCAPFLAG",
                "STARFLAG", "EXTRATARG", "SFD_EBV"} <= names
        assert data["TEFF"].dtype == np.dtype(">f4") and data["ASPCAPFLAG"].dtype == np.dtype(">i8")
        assert data["EXTRATARG"].dtype == np.dtype(">i4") and data["GAIAEDR3_SOURCE_ID"].dtype == np.dtype(">i8")
        dup = (data["EXTRATARG"] & 16) != 0
        assert dup.any() and (~dup).any()
        # a duplicate has a lower S/N than its primary row (same APOGEE_ID)
        primary_snr = {a: s for a, s, d in zip(data["APOGEE_ID"], data["SNR"], dup) if not d}
        assert all(s < primary_snr[a] for a, s, d in zip(data["APOGEE_ID"], data["SNR"], dup) if d)
        assert (data["GAIAEDR3_SOURCE_ID"] == 0).any()
        assert np.isnan(data["MG_FE"]).any()
    assert set(APOGEE_COLUMNS) <= set(writers.ALLSTAR_NAMES)


def test_catalogue_h5_layout(survey_dir):
    import h5py
    from astropy.table import Table
    out, _ = survey_dir
    with h5py.File(out / "xp_apogee_cat.h5") as f:
        assert "__astropy_table__" in f
    t = Table.read(out / "xp_apogee_cat.h5", path="__astropy_table__")
    assert t["coeffs"].shape[1] == 110 and t["coeff_errs"].shape[1] == 110
    assert {"ids", "phot_g_mean_flux", "TEFF", "ALPHA_M", "MG_FE", "SFD_EBV", "Lz", "jz", "jr"} <= set(t.colnames)


def test_chunking_and_determinism(tmp_path):
    """Same seed ⇒ identical files whatever chunk_size; another seed ⇒ different stars."""
    def data_lines(out):
        return [ln for p in sorted((out / "xp" / "csv").glob("*.csv")) for ln in p.read_text().splitlines()[1:]]
    a = simulate_survey(120, seed=4, out_dir=tmp_path / "a", chunk_size=50)
    b = simulate_survey(120, seed=4, out_dir=tmp_path / "b", chunk_size=120)
    simulate_survey(120, seed=5, out_dir=tmp_path / "c", chunk_size=120)
    assert len(a.files["csv"]) == 3 and len(b.files["csv"]) == 1
    assert data_lines(tmp_path / "a") == data_lines(tmp_path / "b")
    assert data_lines(tmp_path / "a") != data_lines(tmp_path / "c")
    assert (tmp_path / "a" / ALLSTAR_FILE).read_bytes() == (tmp_path / "b" / ALLSTAR_FILE).read_bytes()


def test_refuses_non_empty_directory_and_bad_arguments(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        simulate_survey(10, seed=1, out_dir=busy)
    assert (busy / "keep.txt").exists() and len(list(busy.iterdir())) == 1
    for kwargs, msg in (({"n_stars": 0}, "n_stars"), ({"label_fraction": 1.5}, "label_fraction"),
                        ({"mag_range": (17, 9)}, "mag_range"), ({"formats": ("xml",)}, "format"),
                        ({"alpha_signal": -1.0}, "alpha_signal"), ({"population_mix": {"bulge": 1}}, "bulge")):
        args = {"n_stars": 10, "seed": 1, "out_dir": tmp_path / "new", **kwargs}
        with pytest.raises(ValueError, match=msg):
            simulate_survey(**args)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    simulate_survey(10, seed=1, out_dir=empty)          # an empty existing directory is fine
    assert (empty / "manifest.json").exists()


def test_cli_writes_survey_and_reports_bad_parameters(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import simulate
    runner = CliRunner()
    res = runner.invoke(simulate, ["--n-stars", "30", "--seed", "2", "--out", str(tmp_path / "s"), "--format", "csv",
                                   "--format", "ecsv", "--population-mix", "thin=1,thick=1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "xp" / "ecsv" / "XP_CONTINUOUS_RAW_0000.ecsv").exists()
    bad = runner.invoke(simulate, ["--n-stars", "30", "--out", str(tmp_path / "t"), "--mag-min", "18",
                                   "--mag-max", "10"])
    assert bad.exit_code != 0 and "mag_range" in bad.output
    bad_mix = runner.invoke(simulate, ["--out", str(tmp_path / "u"), "--population-mix", "thin:1"])
    assert bad_mix.exit_code != 0 and "NAME=WEIGHT" in bad_mix.output
