"""The XP readers on the real Gaia files: every format must give the same numbers for the same sources.

Truth: the FITS files hold the archive's binary float64/float32 values, so any text parser that rounds
wrongly, mis-orders or drops a value shows up as an exact mismatch. An independent check re-parses the CSV
tuples with Python's ``float`` (correctly rounded) without our code.
"""
from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ingest.readers import read_xp
from shared.xp import N_COEFF, N_CORR, ReadReport, XPBatch, covariance_matrix

FORMATS = ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv", "XP_CONTINUOUS_RAW.xml",
           "XP_CONTINUOUS_RAW_plain.xml"]
MISSING_BP = ["XP_CONTINUOUS_RAW_with_missing_BP.csv", "XP_CONTINUOUS_RAW_with_missing_BP.ecsv",
              "XP_CONTINUOUS_RAW_with_missing_BP.xml"]


@pytest.fixture(scope="module")
def xp_dir(shared_dir) -> Path:
    return shared_dir / "data/gaia_xp/gaiaxpy_tests"


def load(path, **kw) -> tuple[XPBatch, ReadReport]:
    rep = ReadReport(str(path))
    batch = XPBatch.concat(list(read_xp(path, report=rep, **kw)))
    return batch, rep


def assert_same(a: XPBatch, b: XPBatch) -> None:
    assert set(a.columns) == set(b.columns)
    for k in a.columns:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)   # NaN == NaN for assert_array_equal


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_matches_fits_exactly(xp_dir, name):
    ref, _ = load(xp_dir / "XP_CONTINUOUS_RAW.fits")
    got, rep = load(xp_dir / name)
    assert len(ref) == 2 and rep.rows_ok == 2 and not rep.bad_rows and rep.error is None
    assert_same(ref, got)


@pytest.mark.parametrize("name", MISSING_BP)
def test_missing_bp_variant_marks_band_missing(xp_dir, name):
    ref, _ = load(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.fits")
    got, rep = load(xp_dir / name)
    assert len(got) == 3 and not rep.bad_rows
    assert_same(ref, got)
    i = int(np.flatnonzero(got["source_id"] == 5405570973190252288)[0])
    assert got["bp_missing"].tolist() == [i == k for k in range(3)]
    assert not got["rp_missing"].any()
    assert np.isnan(got["bp_coefficients"][i]).all() and np.isnan(got["bp_coefficient_correlations"][i]).all()
    assert got["bp_n_parameters"][i] == -1 and np.isnan(got["bp_standard_deviation"][i])
    assert got["rp_n_parameters"][i] == 55 and np.isfinite(got["rp_coefficients"][i]).all()


def test_csv_values_match_an_independent_parse(xp_dir):
    """Python's float() on the raw tuple text, no reader code involved."""
    text = (xp_dir / "XP_CONTINUOUS_RAW.csv").read_text().splitlines()
    got, _ = load(xp_dir / "XP_CONTINUOUS_RAW.csv")
    for r, line in enumerate(text[1:]):
        quoted = line.split('"')[1::2]        # the 6 array fields, in archive order
        assert len(quoted) == 6
        want = [np.array([float(x) for x in q.strip("()").split(",")]) for q in quoted]
        assert int(line.split(",")[0]) == got["source_id"][r]
        np.testing.assert_array_equal(got["bp_coefficients"][r], want[0])
        np.testing.assert_array_equal(got["bp_coefficient_errors"][r], want[1].astype(np.float32))
        np.testing.assert_array_equal(got["bp_coefficient_correlations"][r], want[2].astype(np.float32))
        np.testing.assert_array_equal(got["rp_coefficient_correlations"][r], want[5].astype(np.float32))


def test_correlations_give_positive_definite_covariances(xp_dir):
    """docs/data-formats.md: every real Σ is positive definite; a mis-ordered triangle generally is not."""
    got, _ = load(xp_dir / "XP_CONTINUOUS_RAW.ecsv")
    for b in ("bp", "rp"):
        cov = covariance_matrix(got[f"{b}_coefficient_errors"], got[f"{b}_coefficient_correlations"])
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        np.testing.assert_allclose(np.sqrt(np.diagonal(cov, axis1=1, axis2=2)), got[f"{b}_coefficient_errors"],
                                   rtol=1e-6)


@pytest.mark.parametrize("name", ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.fits", "XP_CONTINUOUS_RAW.xml"])
def test_without_correlations_drops_only_them(xp_dir, name):
    full, _ = load(xp_dir / name)
    lean, _ = load(xp_dir / name, correlations=False)
    assert not lean.has_correlations and full.has_correlations
    assert_same(full.without_correlations(), lean)


def test_chunking_preserves_rows_and_order(xp_dir):
    batches = list(read_xp(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv", chunk_rows=1))
    assert [len(b) for b in batches] == [1, 1, 1]
    whole, _ = load(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv")
    assert_same(XPBatch.concat(batches), whole)


def test_flat_table_reads_all_2000_sources(shared_dir):
    path = shared_dir / "data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits"
    rep = ReadReport(str(path))
    batches = list(read_xp(path, chunk_rows=700, report=rep))
    assert [len(b) for b in batches] == [700, 700, 600]
    got = XPBatch.concat(batches)
    assert rep.rows_ok == 2000 and not rep.bad_rows
    assert not got.has_correlations
    assert len(np.unique(got["source_id"])) == 2000
    from astropy.io import fits  # independent read of a few columns
    with fits.open(path) as h:
        d = h[1].data
        np.testing.assert_array_equal(got["source_id"], d["source_id"])
        np.testing.assert_array_equal(got["rp_coefficients"][:, 54], d["rp_coeff_54"].astype(np.float64))
        np.testing.assert_array_equal(got["bp_coefficient_errors"][:, 3], d["e_bp_coeff_3"])
        np.testing.assert_array_equal(got["bp_n_relevant_bases"], d["bp_n_relevant_bases"])


def test_flat_csv_matches_flat_fits(shared_dir, tmp_path):
    """The same flat table written as CSV by astropy goes through the text path."""
    from astropy.table import Table
    path = shared_dir / "data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits"
    t = Table.read(path)[:50]
    t.write(tmp_path / "flat.csv", format="ascii.csv")
    ref, _ = load(path)
    got, rep = load(tmp_path / "flat.csv")
    assert rep.rows_ok == 50 and not rep.bad_rows
    assert_same(ref.take(slice(0, 50)), got)


def test_bulk_style_gzipped_ecsv(xp_dir, tmp_path):
    gz = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    with open(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv", "rb") as fi, gzip.open(gz, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    ref, _ = load(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.fits")
    got, rep = load(gz)
    assert_same(ref, got)


def test_datalink_zip_one_file_per_source(xp_dir, tmp_path):
    """Split the real CSV into per-source members named like DataLink, plus one FITS member."""
    lines = (xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv").read_text().splitlines()
    zpath = tmp_path / "datalink.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for line in lines[1:]:
            zf.writestr(f"XP_CONTINUOUS-Gaia DR3 {line.split(',')[0]}.csv", lines[0] + "\n" + line + "\n")
        zf.write(xp_dir / "XP_CONTINUOUS_RAW.fits", "XP_CONTINUOUS_COMBINED.fits")
    got, rep = load(zpath)
    ref3, _ = load(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.fits")
    ref2, _ = load(xp_dir / "XP_CONTINUOUS_RAW.fits")
    # the combined FITS repeats two per-source members: one zip is one file, so they are duplicates, loaded once
    assert len(got) == 3 and rep.rows_ok == 3 and not rep.bad_rows and rep.rows_read == 5
    fits_member = f"{zpath}::XP_CONTINUOUS_COMBINED.fits"
    assert [(d.file, d.row, d.column) for d in rep.duplicates] == [(fits_member, 1, "source_id"),
                                                                 (fits_member, 2, "source_id")]
    assert all("Gaia DR3" in d.message for d in rep.duplicates)      # names the member read first
    order = np.argsort(got["source_id"][:3])       # members come in name order
    per_source = got.take(np.arange(3)[order])
    assert_same(per_source, ref3.take(np.argsort(ref3["source_id"])))
    assert set(ref2["source_id"]) < set(got["source_id"])


def test_zip_combined_votable_member(xp_dir, tmp_path):
    zpath = tmp_path / "combined.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.xml", "XP_CONTINUOUS_RAW.xml")
    got, _ = load(zpath)
    ref, _ = load(xp_dir / "XP_CONTINUOUS_RAW_with_missing_BP.fits")
    assert_same(ref, got)


def test_expand_inputs_walks_dirs_and_globs_and_says_which_were_named(xp_dir, tmp_path):
    from ingest.load import IngestSummary, expand_inputs
    from ingest.readers.xp import XP_SUFFIXES
    (tmp_path / "sub").mkdir()
    for name in ("a.csv", "sub/b.fits", "sub/c.csv.gz", "notes.txt", "manifest.json"):
        (tmp_path / name).write_bytes(b"x")
    summary = IngestSummary("gaia-xp")
    got = expand_inputs([tmp_path], summary, suffixes=XP_SUFFIXES)
    assert [f.path.relative_to(tmp_path).as_posix() for f in got] == ["a.csv", "sub/b.fits", "sub/c.csv.gz"]
    assert not any(f.named for f in got)
    assert sorted(Path(f.path).name for f in summary.files) == ["manifest.json", "notes.txt"]   # said, not read
    assert all(f.skipped and f.ok for f in summary.files)
    globbed = expand_inputs([str(xp_dir / "*_with_missing_BP.*")], summary)
    assert [f.path.name for f in globbed] == sorted(p.name for p in xp_dir.glob("*_with_missing_BP.*"))
    assert not any(f.named for f in globbed)
    both = expand_inputs([tmp_path / "a.csv", str(tmp_path / "*.csv")], summary)
    assert len(both) == 1 and both[0].named             # no duplicates; the first mention wins
    expand_inputs([tmp_path / "nothing-here*"], summary)
    assert summary.files_failed == 1 and "nothing-here" in summary.files[-1].error


def test_shapes_and_dtypes(xp_dir):
    got, _ = load(xp_dir / "XP_CONTINUOUS_RAW.csv")
    assert got["bp_coefficients"].shape == (2, N_COEFF) and got["bp_coefficients"].dtype == np.float64
    assert got["rp_coefficient_correlations"].shape == (2, N_CORR)
    assert got["rp_coefficient_errors"].dtype == np.float32 and got["bp_n_parameters"].dtype == np.int16


@pytest.mark.parametrize("name", ["XP_CONTINUOUS_RAW_with_missing_BP.csv", "XP_CONTINUOUS_RAW_with_missing_BP.fits"])
def test_progress_reports_rows_done(xp_dir, name):
    calls = []
    list(read_xp(xp_dir / name, chunk_rows=1, progress=lambda d, t, m: calls.append((d, t, m))))
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[-1] == 3 and calls[-1][1] == 3
    assert all(name in m for _, _, m in calls)
