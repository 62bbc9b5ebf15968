"""ingest.load and the `ingest` commands on the real reference files, bad rows, broken files and re-loads."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db.labels import read_labels
from db.spectra import read_spectra
from ingest.load import ingest_apogee, ingest_catalogue, ingest_gaia_xp
from ingest.readers.xp import read_xp
from shared.xp import XPBatch

XP_FILES = ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv", "XP_CONTINUOUS_RAW.fits", "XP_CONTINUOUS_RAW.xml",
            "XP_CONTINUOUS_RAW_plain.xml", "XP_CONTINUOUS_RAW_with_missing_BP.csv",
            "XP_CONTINUOUS_RAW_with_missing_BP.ecsv", "XP_CONTINUOUS_RAW_with_missing_BP.fits",
            "XP_CONTINUOUS_RAW_with_missing_BP.xml"]


@pytest.fixture(scope="module")
def xp_dir(shared_dir) -> Path:
    return shared_dir / "data" / "gaia_xp" / "gaiaxpy_tests"


def _table_counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                     for t in ("xp_spectra", "xp_correlations"))


def _sorted_batch(path: Path) -> XPBatch:
    b = XPBatch.concat(read_xp(path))
    return b.take(np.argsort(b["source_id"]))


def test_every_real_xp_format_loads_the_same_values(engine, xp_dir):
    """Each Gaia download format of the same real sources ends up as the same bytes in the database (the
    FITS binary table is the reference: its values need no text parsing), the star lacking BP included."""
    ref = _sorted_batch(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.fits")
    for name in XP_FILES:
        summary = ingest_gaia_xp(engine, [xp_dir / name])
        assert summary.files_failed == 0 and summary.rows_skipped == 0, summary.to_dict()
        n = 3 if "missing_BP" in name else 2
        assert summary.rows_loaded == n and summary.rows_read == n
        out = read_spectra(engine, np.asarray(ref["source_id"]), with_correlations=True)
        keep = np.isin(ref["source_id"], out["source_id"])
        want = ref.take(keep)
        assert np.array_equal(out["coefficients"], want.coefficients110(), equal_nan=True), name
        assert np.array_equal(out["correlations"][:, 1], want["rp_coefficient_correlations"], equal_nan=True)
        assert out["bp_missing"].tolist() == want["bp_missing"].tolist()
    assert _table_counts(engine) == (3, 3)
    missing = read_spectra(engine, [5405570973190252288], with_correlations=True)
    assert missing["bp_missing"][0] and np.isnan(missing["correlations"][0, 0]).all()
    assert np.isfinite(missing["correlations"][0, 1]).all()


def test_reingest_changes_nothing(engine, xp_dir):
    ingest_gaia_xp(engine, [xp_dir])
    first, counts = read_spectra(engine, with_correlations=True), _table_counts(engine)
    summary = ingest_gaia_xp(engine, [str(xp_dir / "*.csv"), xp_dir])
    assert summary.files_failed == 0
    assert _table_counts(engine) == counts == (3, 3)
    again = read_spectra(engine, with_correlations=True)
    for key in first:
        assert np.array_equal(first[key], again[key], equal_nan=True), key


def test_bad_row_is_reported_and_the_rest_loads(engine, xp_dir, tmp_path):
    lines = (xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv").read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"(', '"(abc, ', 1)        # data row 3: 56 values in bp_coefficients
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    summary = ingest_gaia_xp(engine, [bad])
    assert (summary.files_ok, summary.rows_read, summary.rows_loaded, summary.rows_skipped) == (1, 3, 2, 1)
    row = summary.bad_rows[0]
    assert (row.file, row.row, row.column) == (str(bad), 3, "bp_coefficients")
    assert "row 3, column bp_coefficients" in summary.to_dict()["bad_rows"][0]
    assert read_spectra(engine)["source_id"].tolist() == [5405570973190252288, 5853498713190525696]


def test_truncated_gzip_fails_alone_and_leaves_nothing(engine, xp_dir, tmp_path):
    """A 300-row bulk-style .csv.gz (the real rows replicated under new source ids) cut at 80 %: the reader
    yields ~230 rows in chunks of 10 before the gzip stream breaks, so chunks ARE written first; the file's
    single transaction must roll them back, while the healthy file in the same call loads."""
    lines = (xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv").read_text().splitlines(keepends=True)
    body = [f"{1000 + i}{line[line.index(','):]}" for i, line in enumerate(lines[1:] * 100)]
    data = gzip.compress((lines[0] + "".join(body)).encode(), compresslevel=1)
    broken = tmp_path / "XpContinuousMeanSpectrum_000000-000001.csv.gz"
    broken.write_bytes(data[: int(len(data) * 0.8)])
    chunks: list[str] = []
    summary = ingest_gaia_xp(engine, [broken, xp_dir / "XP_CONTINUOUS_RAW.fits"], chunk_rows=10,
                             progress=lambda done, total, message: chunks.append(message))
    assert any(m.startswith(broken.name) and "rows so far" in m and not m.endswith(" 0 rows so far")
               for m in chunks), "no chunk was written before the break: the test would prove nothing"
    assert (summary.files_ok, summary.files_failed) == (1, 1)
    assert str(broken) in summary.to_dict()["failed_files"][0]
    assert summary.rows_loaded == 2
    assert read_spectra(engine)["source_id"].tolist() == [5762406957886626816, 5853498713190525696]
    assert _table_counts(engine) == (2, 2)


def test_flat_table_of_2000_real_sources(engine, shared_dir):
    path = shared_dir / "data" / "gaia_xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"
    summary = ingest_gaia_xp(engine, [path])
    assert summary.files_failed == 0 and summary.rows_loaded == 2000
    out = read_spectra(engine, with_correlations=True)
    assert len(out["source_id"]) == 2000 and not out["has_correlations"].any()
    assert _table_counts(engine) == (2000, 0)
    ref = _sorted_batch(path)
    assert np.array_equal(out["coefficients"], ref.coefficients110(), equal_nan=True)


def test_real_apogee_subset(engine, shared_dir):
    """1612 real stars, each with its own Gaia id: every one becomes the primary of its source; re-loading
    leaves the table as it was."""
    path = shared_dir / "data" / "apogee" / "Apogee_data_filtered_1612.fits"
    summary = ingest_apogee(engine, path)
    assert summary.files_failed == 0 and summary.rows_loaded == 1612, summary.to_dict()
    query = sa.text("SELECT COUNT(*), SUM(CASE WHEN is_primary THEN 1 ELSE 0 END), "
                    "COUNT(DISTINCT gaia_source_id) FROM apogee_labels")
    with engine.connect() as conn:
        before = tuple(conn.execute(query).one())
    assert before == (1612, 1612, 1612)
    ingest_apogee(engine, path)
    with engine.connect() as conn:
        assert tuple(conn.execute(query).one()) == before


def _write_catalogue(path: Path, ids: np.ndarray, coeffs: np.ndarray) -> None:
    from astropy.table import Table
    n = len(ids)
    t = Table({"ids": ids, "coeffs": coeffs, "coeff_errs": np.abs(coeffs) * 0.01 + 1.0,
               "phot_g_mean_flux": np.full(n, 1e5), "TEFF": np.full(n, 4500.0), "TEFF_ERR": np.full(n, 10.0),
               "LOGG": np.full(n, 2.5), "LOGG_ERR": np.full(n, 0.02), "M_H": np.full(n, -0.1),
               "M_H_ERR": np.full(n, 0.01), "ALPHA_M": np.full(n, 0.2), "ALPHA_M_ERR": np.full(n, 0.01),
               "FE_H": np.full(n, -0.1), "MG_FE": np.full(n, 0.25), "STARFLAG": np.zeros(n, np.int64),
               "ASPCAPFLAG": np.zeros(n, np.int64), "GAIAEDR3_PHOT_G_MEAN_MAG": np.full(n, 12.0),
               "GAIAEDR3_PHOT_BP_MEAN_MAG": np.full(n, 12.5), "GAIAEDR3_PHOT_RP_MEAN_MAG": np.full(n, 11.5)})
    t.write(path, path="__astropy_table__", serialize_meta=True)


def test_catalogue_with_norm(engine, tmp_path):
    """A small file in the published catalogue's layout: spectra (no correlations), photometry and labels
    arrive and join in the xp_apogee view; the norm is stored under $XPVAE_HOME/norms."""
    rng = np.random.default_rng(5)
    ids = np.array([11, 22, 33], np.int64)
    coeffs = rng.normal(size=(3, 110))
    _write_catalogue(tmp_path / "xp_apogee_cat.h5", ids, coeffs)
    np.savez(tmp_path / "apogee_norm.npz", mu=np.zeros(110), sig=np.ones(110))
    summary = ingest_catalogue(engine, tmp_path / "xp_apogee_cat.h5", norm=tmp_path / "apogee_norm.npz",
                               norms_dir=tmp_path / "home" / "norms")
    assert summary.files_failed == 0 and summary.rows_loaded == 3, summary.to_dict()
    assert Path(summary.norm_path).parent == tmp_path / "home" / "norms"
    assert np.array_equal(np.load(summary.norm_path)["sig"], np.ones(110))
    out = read_spectra(engine, with_correlations=True)
    assert np.array_equal(out["coefficients"], coeffs) and np.all(out["phot_g_mean_flux"] == 1e5)
    assert not out["has_correlations"].any()
    labels = read_labels(engine, ids)
    assert labels["labelled"].all() and labels["pristine"].all() and labels["high_alpha"].all()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM xp_apogee")).scalar_one() == 3
    ingest_catalogue(engine, tmp_path / "xp_apogee_cat.h5")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM apogee_labels")).scalar_one() == 3


def test_cli_summary_and_exit_codes(sqlite_url, xp_dir, tmp_path, monkeypatch):
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    runner = CliRunner()
    ok = runner.invoke(main, ["ingest", "gaia-xp", str(xp_dir / "*RAW.csv"), "--no-correlations"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[0] == ("ingest gaia-xp: files ok 1, failed 0; rows read 2, loaded 2, "
                                         "skipped 0, duplicates 0")
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress((xp_dir / "XP_CONTINUOUS_RAW.csv").read_bytes())[:500])
    bad = runner.invoke(main, ["ingest", "gaia-xp", str(broken), str(xp_dir / "XP_CONTINUOUS_RAW.fits")])
    assert bad.exit_code == 1
    assert any(line.startswith(f"FAILED {broken}") for line in bad.stdout.splitlines())


def test_repeated_apogee_rows_are_reported_not_silently_merged(engine, tmp_path):
    """Two rows with the same (APOGEE_ID, TELESCOPE, FIELD) would collapse into one in the upsert: the repeat
    is reported as a duplicate with its row, the first row is kept, nothing else is lost."""
    from astropy.table import Table

    from ingest.load import ingest_apogee
    n = 4
    t = Table({"APOGEE_ID": ["2M1", "2M2", "2M1", "2M3"], "TELESCOPE": ["apo25m"] * n,
               "FIELD": ["F1", "F1", "F1", "F2"], "GAIAEDR3_SOURCE_ID": np.array([11, 12, 11, 13], np.int64),
               "TEFF": np.array([4800.0, 5000.0, 9999.0, 5200.0], np.float32), "SNR": np.full(n, 100.0, np.float32),
               "EXTRATARG": np.zeros(n, np.int32)})
    path = tmp_path / "allStar-repeat.fits"
    t.write(path)
    summary = ingest_apogee(engine, path)
    assert (summary.rows_read, summary.rows_loaded, summary.rows_skipped, summary.rows_duplicate) == (4, 3, 0, 1)
    bad = summary.duplicates[0]
    assert (bad.row, bad.column) == (3, "APOGEE_ID") and "repeats data row 1" in bad.message
    with engine.connect() as conn:
        teff = conn.execute(sa.text("SELECT teff FROM apogee_labels WHERE apogee_id = '2M1'")).scalar_one()
    assert teff == 4800.0
