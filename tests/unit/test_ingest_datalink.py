"""DataLink downloads as the archive writes them (several products, per source or combined, four formats, zipped
or unpacked), and files of the wrong kind: passed over when a walk or glob finds them, refused when named."""
from __future__ import annotations

import shutil
import warnings
import zipfile

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db.spectra import read_spectra
from ingest.load import ingest_apogee, ingest_gaia_xp, ingest_photometry
from ingest.readers import WrongKindError, read_xp
from ingest.readers.products import product_of
from shared.xp import ReadReport, XPBatch
from simulator import generate
from simulator.writers import (
    write_allstar_fits,
    write_datalink,
    write_other_product,
    write_photometry_csv,
    write_xp_csv,
)

ALL_PRODUCTS = ("XP_CONTINUOUS", "XP_SAMPLED", "MCMC_GSPPHOT", "MCMC_MSC", "EPOCH_PHOTOMETRY", "RVS")
FORMATS = ("csv", "ecsv", "fits", "votable")


@pytest.fixture(scope="module")
def survey():
    """Five simulated stars, the first lacking a band (to check that a missing band survives every layout),
    with their photometry and APOGEE-like labels."""
    batch, _truth, labels, phot = generate(300, seed=13)
    gap = np.flatnonzero(batch["bp_missing"] | batch["rp_missing"])
    rows = np.r_[gap[:1], np.flatnonzero(~(batch["bp_missing"] | batch["rp_missing"]))[:4]]
    assert len(rows) == 5 and (batch["bp_missing"][rows[0]] or batch["rp_missing"][rows[0]])
    return batch.take(rows), labels, phot


def _sorted(batch: XPBatch) -> XPBatch:
    return batch.take(np.argsort(batch["source_id"], kind="stable"))


def _assert_same(a: XPBatch, b: XPBatch) -> None:
    a, b = _sorted(a), _sorted(b)
    for k in a.columns:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _other_counts(structure: str, n: int) -> dict[str, int]:
    return {p: (n if structure == "INDIVIDUAL" else 1) for p in ALL_PRODUCTS[1:]}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("structure", ["INDIVIDUAL", "COMBINED"])
def test_mixed_product_zip_yields_the_xp_spectra_once_and_counts_the_rest(survey, tmp_path, fmt, structure):
    batch = survey[0]
    zpath = write_datalink(batch, tmp_path / "datalink.zip", fmt, structure, ALL_PRODUCTS)
    names = zipfile.ZipFile(zpath).namelist()
    assert len(names) == len(ALL_PRODUCTS) * (len(batch) if structure == "INDIVIDUAL" else 1)
    assert {product_of(n) for n in names} == set(ALL_PRODUCTS)      # every member named as the archive does
    rep = ReadReport(str(zpath))
    got = XPBatch.concat(list(read_xp(zpath, report=rep)))
    _assert_same(batch, got)
    assert rep.other_products == _other_counts(structure, len(batch))
    assert not rep.bad_rows and not rep.notes and rep.rows_read == len(batch)


@pytest.mark.parametrize("fmt", FORMATS)
def test_member_named_xp_continuous_but_holding_another_product_is_passed_over_with_a_note(survey, tmp_path, fmt):
    batch = survey[0]
    zpath = write_datalink(batch, tmp_path / "dl.zip", fmt, "COMBINED", ("XP_CONTINUOUS", "MCMC_GSPPHOT"))
    impostor = tmp_path / f"impostor.{fmt}"
    write_other_product("XP_SAMPLED", batch["source_id"], impostor, fmt)
    member = f"XP_CONTINUOUS-Gaia DR3 {int(batch['source_id'][0])}.{'xml' if fmt == 'votable' else fmt}"
    with zipfile.ZipFile(zpath, "a") as zf:
        zf.write(impostor, member)
    rep = ReadReport(str(zpath))
    got = XPBatch.concat(list(read_xp(zpath, report=rep)))
    _assert_same(batch, got)                       # the real XP member is loaded, once
    assert rep.other_products == {"MCMC_GSPPHOT": 1}
    assert len(rep.notes) == 1 and member in rep.notes[0] and "named XP_CONTINUOUS" in rep.notes[0]
    # with only the impostor the zip holds no XP spectra at all: the file fails and says so
    lone = tmp_path / "lone.zip"
    with zipfile.ZipFile(lone, "w") as zf:
        zf.write(impostor, member)
    with pytest.raises(WrongKindError, match="no XP continuous spectra in this zip"):
        list(read_xp(lone))


@pytest.mark.parametrize("fmt", ["csv", "votable"])
def test_zip_without_xp_member_fails_naming_the_products_it_holds(survey, tmp_path, fmt):
    zpath = write_datalink(survey[0], tmp_path / "other.zip", fmt, "INDIVIDUAL", ("XP_SAMPLED", "MCMC_GSPPHOT"))
    rep = ReadReport(str(zpath))
    with pytest.raises(WrongKindError) as err:
        list(read_xp(zpath, report=rep))
    assert "XP_SAMPLED (5 files)" in str(err.value) and "MCMC_GSPPHOT (5 files)" in str(err.value)
    assert str(zpath) in str(err.value) and rep.error == str(err.value)


def _xp_rows(engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text("SELECT source_id FROM xp_spectra")).scalars())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("structure", ["INDIVIDUAL", "COMBINED"])
def test_unpacked_folder_loads_xp_files_and_passes_over_other_products(sqlite_engine, survey, tmp_path, fmt,
                                                                       structure):
    batch = survey[0]
    folder = write_datalink(batch, tmp_path / "datalink", fmt, structure, ALL_PRODUCTS, packed=False)
    summary = ingest_gaia_xp(sqlite_engine, [folder])
    n_xp = len(batch) if structure == "INDIVIDUAL" else 1
    assert (summary.files_ok, summary.files_failed, summary.rows_loaded) == (n_xp, 0, len(batch)), summary.to_dict()
    assert summary.other_products == _other_counts(structure, len(batch))
    assert summary.files_skipped == sum(summary.other_products.values())
    assert _xp_rows(sqlite_engine) == sorted(batch["source_id"].tolist())
    _check_stored(sqlite_engine, batch)
    # the same folder zipped and loaded again changes nothing and says the same
    zsum = ingest_gaia_xp(sqlite_engine, [write_datalink(batch, tmp_path / "dl.zip", fmt, structure, ALL_PRODUCTS)])
    assert (zsum.files_ok, zsum.files_failed, zsum.rows_loaded) == (1, 0, len(batch))
    assert zsum.other_products == summary.other_products
    assert _xp_rows(sqlite_engine) == sorted(batch["source_id"].tolist())
    _check_stored(sqlite_engine, batch)


def _check_stored(engine, batch: XPBatch) -> None:
    """The database holds exactly the simulated values (coefficients, missing bands, correlations)."""
    out = read_spectra(engine, np.asarray(batch["source_id"]), with_correlations=True)
    ref = _sorted(batch)
    assert np.array_equal(out["source_id"], ref["source_id"])
    assert np.array_equal(out["coefficients"], ref.coefficients110(), equal_nan=True)
    assert np.array_equal(out["bp_missing"], ref["bp_missing"]) and np.array_equal(out["rp_missing"], ref["rp_missing"])
    assert np.array_equal(out["correlations"][:, 1], ref["rp_coefficient_correlations"], equal_nan=True)


@pytest.fixture
def sqlite_engine(sqlite_url):
    from testdb import _empty_tables

    from db.engine import create_engine
    eng = create_engine(sqlite_url)
    _empty_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def mixed_dir(survey, tmp_path):
    """A survey folder as people keep one: XP spectra, photometry, an allStar, a manifest, a DataLink zip of
    other products only, and notes."""
    batch, labels, phot = survey
    d = tmp_path / "survey"
    d.mkdir()
    write_xp_csv(batch, d / "XP_CONTINUOUS_RAW.csv")
    sid = set(batch["source_id"].tolist())
    keep = np.array([s in sid for s in phot["source_id"]])
    write_photometry_csv({k: v[keep] for k, v in phot.items()}, d / "photometry.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_allstar_fits({k: v[:7] for k, v in labels.items()}, d / "allStar-dr17-synspec_rev1.fits")
    (d / "manifest.json").write_text('{"files": 3}')
    (d / "README.txt").write_text("downloaded on Monday\n")
    write_datalink(batch, d / "epoch.zip", "csv", "COMBINED", ("EPOCH_PHOTOMETRY",))
    return d


def test_gaia_xp_walk_passes_over_other_kinds_but_a_named_one_fails(sqlite_engine, survey, mixed_dir):
    summary = ingest_gaia_xp(sqlite_engine, [mixed_dir])
    d = summary.to_dict()
    assert (summary.files_ok, summary.files_failed, summary.rows_loaded) == (1, 0, 5), d
    skipped = {s.split(": ", 1)[0].rsplit("/", 1)[-1]: s for s in d["skipped_files"]}
    assert set(skipped) == {"photometry.csv", "allStar-dr17-synspec_rev1.fits", "epoch.zip", "manifest.json",
                            "README.txt"}
    assert skipped["README.txt"].endswith("not a data file by its name")       # listed, never read
    assert "EPOCH_PHOTOMETRY (1 file)" in skipped["epoch.zip"]
    for name in ("photometry.csv", "allStar-dr17-synspec_rev1.fits", "epoch.zip"):
        named = ingest_gaia_xp(sqlite_engine, [mixed_dir / name])
        assert named.files_failed == 1 and named.files_skipped == 0
        assert str(mixed_dir / name) in named.files[0].error
    # a glob behaves like a walk
    globbed = ingest_gaia_xp(sqlite_engine, [str(mixed_dir / "*.csv")])
    assert (globbed.files_ok, globbed.files_failed, globbed.files_skipped) == (1, 0, 1)


def test_photometry_refuses_an_allstar_and_keeps_the_measured_flux(sqlite_engine, survey, mixed_dir):
    """The allStar carries Gaia magnitudes; read as photometry it would replace measured G fluxes with values
    derived from them (#12 item 13)."""
    first = ingest_photometry(sqlite_engine, [mixed_dir / "photometry.csv"])
    assert first.files_ok == 1 and first.rows_loaded == 5
    with sqlite_engine.connect() as conn:
        before = dict(conn.execute(sa.text("SELECT source_id, phot_g_mean_flux FROM photometry")).all())
    named = ingest_photometry(sqlite_engine, [mixed_dir / "allStar-dr17-synspec_rev1.fits"])
    assert named.files_failed == 1 and "APOGEE" in named.files[0].error and "ingest apogee" in named.files[0].error
    walked = ingest_photometry(sqlite_engine, [mixed_dir])
    assert (walked.files_ok, walked.files_failed, walked.files_skipped) == (1, 0, 5), walked.to_dict()
    reasons = {p.rsplit("/", 1)[-1].split(":")[0]: p for p in walked.to_dict()["skipped_files"]}
    assert set(reasons) == {"XP_CONTINUOUS_RAW.csv", "allStar-dr17-synspec_rev1.fits", "README.txt",
                            "manifest.json", "epoch.zip"}
    assert all(reasons[n].endswith("not a data file by its name") for n in ("README.txt", "manifest.json",
                                                                           "epoch.zip"))
    xp = ingest_photometry(sqlite_engine, [mixed_dir / "XP_CONTINUOUS_RAW.csv"])
    assert xp.files_failed == 1 and "ingest gaia-xp" in xp.files[0].error
    with sqlite_engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT source_id, phot_g_mean_flux FROM photometry")).all())
    assert after == before


def test_flux_derived_from_magnitudes_is_said_in_the_summary(sqlite_engine, tmp_path):
    from xpvae.summaries import describe_result
    path = tmp_path / "mags.csv"
    path.write_text("source_id,phot_g_mean_mag,phot_bp_mean_mag,phot_rp_mean_mag\n"
                    "11,12.5,12.9,11.9\n12,15.0,15.4,14.4\n")
    summary = ingest_photometry(sqlite_engine, [path])
    assert summary.rows_loaded == 2
    text = describe_result("ingest", summary.to_dict())
    assert any(line.startswith(f"NOTE {path}: no phot_g_mean_flux column: G flux derived from phot_g_mean_mag")
               for line in text.splitlines()), text


def test_apogee_walk_passes_over_other_kinds(sqlite_engine, mixed_dir):
    summary = ingest_apogee(sqlite_engine, mixed_dir)
    assert (summary.files_ok, summary.files_failed, summary.rows_loaded) == (1, 0, 7), summary.to_dict()
    assert summary.files_skipped == 5            # photometry and XP spectra (no APOGEE_ID), 3 not data by name
    named = ingest_apogee(sqlite_engine, mixed_dir / "photometry.csv")
    assert named.files_failed == 1 and "APOGEE_ID" in named.files[0].error


@pytest.mark.parametrize("ingest", [ingest_gaia_xp, ingest_photometry, ingest_apogee])
def test_empty_or_unsuitable_directory_is_a_failure(sqlite_engine, tmp_path, ingest):
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = ingest(sqlite_engine, [empty] if ingest is not ingest_apogee else empty)
    assert summary.files_failed == 1 and summary.files_ok == 0 and str(empty) in summary.files[0].error
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.txt").write_text("nothing here\n")
    (notes / "list.csv").write_text("name,comment\nfoo,bar\n")
    summary = ingest(sqlite_engine, [notes] if ingest is not ingest_apogee else notes)
    assert summary.files_failed == 1 and summary.files_ok == 0, summary.to_dict()
    assert "passed over" in summary.files[-1].error


def test_cli_passes_globs_through_and_reports_other_products(sqlite_url, survey, mixed_dir, tmp_path, monkeypatch):
    from db.engine import get_engine
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    from testdb import _empty_tables
    _empty_tables(get_engine(sqlite_url))
    zpath = write_datalink(survey[0], mixed_dir / "datalink.zip", "fits", "INDIVIDUAL", ALL_PRODUCTS)
    runner = CliRunner()
    ok = runner.invoke(main, ["ingest", "gaia-xp", str(mixed_dir / "*")])
    assert ok.exit_code == 0, ok.output
    lines = ok.stdout.splitlines()
    # like a walk, a glob reads data files only: README.txt and manifest.json are listed, not read
    assert lines[0].startswith("ingest gaia-xp: files ok 2, failed 0, passed over 5; rows read 10, loaded 10")
    assert any(line.startswith("other DataLink products passed over") and "XP_SAMPLED (5 files)" in line
               and "EPOCH_PHOTOMETRY (6 files)" in line for line in lines), ok.output
    assert sum(line.startswith("PASSED OVER") for line in lines) == 5
    named = runner.invoke(main, ["ingest", "gaia-xp", str(mixed_dir / "photometry.csv"), str(zpath)])
    assert named.exit_code == 1
    assert any(line.startswith(f"FAILED {mixed_dir / 'photometry.csv'}") for line in named.stdout.splitlines())
    shutil.rmtree(mixed_dir)
