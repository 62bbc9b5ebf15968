"""Inputs that must not load as if they were fine (issue 12, items 5-8), in every format the readers take:

- values no star has (±inf, overflow, NaN or |ρ| > 1 correlations, errors ≤ 0, G flux ≤ 0): the row is
  reported with file, row and column and skipped, the others load unchanged;
- a source repeated inside one file: reported as a duplicate, the first row kept, and the counts reconcile
  (read = loaded + skipped + duplicates);
- a VOTable whose FIELD declarations do not fit its data: the file fails, never "ok, 0 rows";
- a line longer than the cap: reported (file, row) and skipped, without holding it in memory.

Files are built from real Gaia records (reference/data/gaia_xp) with one value changed, so every other row has a truth.
"""
from __future__ import annotations

import base64
import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from ingest.readers import ReaderError, read_catalogue, read_photometry, read_xp
from ingest.readers.textio import MAX_LINE_BYTES
from shared.xp import ReadReport, XPBatch
from simulator.writers import write_xp_csv, write_xp_ecsv, write_xp_fits

REAL = "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW_with_missing_BP"


@pytest.fixture(params=["compiled", "pure"])
def engine(request, monkeypatch):
    """Both array-text engines: what is refused must not depend on which one parsed the text."""
    from ingest.readers import numbers
    monkeypatch.setattr(numbers, "COMPILED", request.param == "compiled")
    return request.param


def load(path: Path, **kw) -> tuple[XPBatch, ReadReport]:
    rep = ReadReport(str(path))
    return XPBatch.concat(list(read_xp(path, report=rep, **kw))), rep


@pytest.fixture(scope="module")
def real(shared_dir) -> XPBatch:
    return XPBatch.concat(list(read_xp(shared_dir / f"{REAL}.fits")))


# --- 5. values no star has, in every format -------------------------------------------------------------------
# (band, field, element, value, message fragment)
BAD_VALUES = {
    "inf_coefficient": ("bp", "coefficients", 4, np.inf, "value 5 is inf"),
    "minus_inf_coefficient": ("rp", "coefficients", 0, -np.inf, "value 1 is -inf"),
    "negative_error": ("rp", "coefficient_errors", 3, -2.0, "value 4 is -2: an error must be > 0"),
    "zero_error": ("bp", "coefficient_errors", 54, 0.0, "value 55 is 0: an error must be > 0"),
    "inf_error": ("rp", "coefficient_errors", 10, np.inf, "value 11 is inf"),
    "nan_correlation": ("rp", "coefficient_correlations", 10, np.nan, "1 of 1485 values are NaN"),
    "correlation_above_one": ("bp", "coefficient_correlations", 7, 1.5, "value 8 is 1.5: a correlation must"),
    "correlation_below_minus_one": ("rp", "coefficient_correlations", 1484, -3.0, "value 1485 is -3"),
}


def _write_archive(batch: XPBatch, path: Path, fmt: str) -> Path:
    if fmt == "csv":
        return write_xp_csv(batch, path.with_suffix(".csv"))
    if fmt == "ecsv.gz":
        return write_xp_ecsv(batch, path.with_suffix(".ecsv.gz"))
    return write_xp_fits(batch, path.with_suffix(".fits"))


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
@pytest.mark.parametrize("fmt", ["csv", "ecsv.gz", "fits"])
def test_unphysical_value_is_refused_per_row_in_archive_formats(real, tmp_path, engine, case, fmt):
    band, fieldname, k, value, fragment = BAD_VALUES[case]
    col = f"{band}_{fieldname}"
    i = int(np.flatnonzero(~real[f"{band}_missing"])[-1])          # a row where the band is present
    bad = XPBatch({c: v.copy() for c, v in real.columns.items()})
    bad[col][i, k] = value
    path = _write_archive(bad, tmp_path / "bad", fmt)
    got, rep = load(path)
    assert [(b.file, b.row, b.column) for b in rep.bad_rows] == [(str(path), i + 1, col)]
    assert fragment in rep.bad_rows[0].message
    keep = np.arange(len(real)) != i
    for c in real.columns:
        np.testing.assert_array_equal(got[c], real[c][keep], err_msg=c)
    assert rep.rows_read == len(real) and rep.rows_ok == len(real) - 1


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
@pytest.mark.parametrize("serialization", ["binary2", "tabledata"])
def test_unphysical_value_is_refused_per_row_in_votables(shared_dir, tmp_path, case, serialization):
    from astropy.table import Table
    band, fieldname, k, value, fragment = BAD_VALUES[case]
    col = f"{band}_{fieldname}"
    t = Table.read(shared_dir / f"{REAL}.xml")          # its variable-length cells are edited in place
    i = max(j for j in range(len(t)) if len(t[f"{band}_coefficients"][j]) == 55)
    t[col][i][k] = value
    path = tmp_path / f"bad_{serialization}.xml"
    t.write(path, format="votable", tabledata_format=serialization)
    got, rep = load(path)
    assert [(b.row, b.column) for b in rep.bad_rows] == [(i + 1, col)] and fragment in rep.bad_rows[0].message
    assert len(got) == len(t) - 1 and int(t["source_id"][i]) not in set(got["source_id"].tolist())


def test_garbage_fits_data_area_loads_nothing(shared_dir, tmp_path):
    """Random bytes over a FITS table's rows and heap: whatever decodes is refused row by row (NaN or
    absurd correlations, errors ≤ 0, wrong lengths, no band at all) or the file fails; nothing loads."""
    from astropy.io import fits
    src = shared_dir / f"{REAL}.fits"
    raw = src.read_bytes()
    with fits.open(src) as h:
        start = h[1]._data_offset
        size = h[1].header["NAXIS1"] * h[1].header["NAXIS2"] + h[1].header["PCOUNT"]
    outcomes = set()
    for seed in range(12):
        rng = np.random.default_rng(1000 + seed)
        blob = bytearray(raw)
        first = start if seed % 2 else start + 336      # odd: rows and heap; even: the heap only
        blob[first:start + size] = rng.integers(0, 256, start + size - first, dtype=np.uint8).tobytes()
        path = tmp_path / f"garbage{seed}.fits"
        path.write_bytes(bytes(blob))
        try:
            got, rep = load(path)
        except ReaderError as exc:
            assert str(path) in str(exc)
            outcomes.add("file refused")
            continue
        assert len(got) == 0, (seed, got["source_id"])
        assert rep.rows_read == 3 and len(rep.bad_rows) + len(rep.duplicates) == 3
        outcomes.add("rows refused")
    assert "rows refused" in outcomes


def test_flat_catalogue_names_the_value_column(shared_dir, tmp_path):
    from astropy.table import Table
    t = Table.read(shared_dir / "data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits")[:50]
    t["e_bp_coeff_3"][5] = -1.0
    t["rp_coeff_54"][7] = np.inf
    t["e_rp_coeff_0"][9] = 0.0
    path = tmp_path / "flat.fits"
    t.write(path)
    got, rep = load(path)
    assert [(b.row, b.column) for b in rep.bad_rows] == [(6, "e_bp_coeff_3"), (8, "rp_coeff_54"),
                                                        (10, "e_rp_coeff_0")]
    assert "value 4 is -1: an error must be > 0" in rep.bad_rows[0].message
    assert len(got) == 47


def test_photometry_refuses_flux_not_above_zero_and_infinities(tmp_path, engine):
    path = tmp_path / "phot.csv"
    path.write_text("source_id,phot_g_mean_flux,phot_g_mean_mag,phot_bp_mean_mag,phot_rp_mean_mag\n"
                    "1,1000.0,17.2,17.5,16.8\n"
                    "2,-5.0,17.2,17.5,16.8\n"          # negative G flux
                    "3,0,17.2,17.5,16.8\n"             # zero G flux
                    "4,1e400,17.2,17.5,16.8\n"         # overflow
                    "5,1000.0,17.2,inf,16.8\n"         # infinite magnitude
                    "6,,17.2,17.5,16.8\n"              # unknown flux: allowed (NaN)
                    "7,2000.0,17.0,17.3,-Infinity\n")
    rep = ReadReport(str(path))
    got = {k: np.concatenate([c[k] for c in read_photometry(path, report=rep)]) for k in ("source_id",)}
    assert got["source_id"].tolist() == [1, 6]
    assert [(b.row, b.column) for b in rep.bad_rows] == [(2, "phot_g_mean_flux"), (3, "phot_g_mean_flux"),
                                                        (4, "phot_g_mean_flux"), (5, "phot_bp_mean_mag"),
                                                        (7, "phot_rp_mean_mag")]
    assert "must be > 0" in rep.bad_rows[0].message and "not a finite number" in rep.bad_rows[2].message


def test_magnitude_whose_flux_overflows_is_refused(tmp_path):
    path = tmp_path / "mags.csv"
    path.write_text("source_id,phot_g_mean_mag\n1,12.0\n2,-1000.0\n")
    rep = ReadReport(str(path))
    got = list(read_photometry(path, report=rep))
    assert np.concatenate([c["source_id"] for c in got]).tolist() == [1]
    assert [(b.row, b.column) for b in rep.bad_rows] == [(2, "phot_g_mean_mag")]


def _catalogue(path: Path, n: int = 6, ids=None) -> None:
    from astropy.table import Table
    rng = np.random.default_rng(12)
    errs = np.abs(rng.normal(size=(n, 110))) + 0.01
    errs[1, 70] = -0.5                                  # a negative RP error
    errs[2, 3] = 1e39                                   # beyond float32
    flux = np.full(n, 1.0e5)
    flux[3] = -1.0                                      # a negative G flux
    t = Table({"ids": np.asarray(ids if ids is not None else np.arange(100, 100 + n), np.int64),
               "coeffs": rng.normal(size=(n, 110)), "coeff_errs": errs, "phot_g_mean_flux": flux,
               "TEFF": np.full(n, 4800.0, np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t.write(path, path="__astropy_table__", serialize_meta=True, overwrite=True)


def test_published_catalogue_refuses_bad_rows_in_all_three_parts(tmp_path):
    path = tmp_path / "xp_apogee_cat.h5"
    _catalogue(path, ids=[100, 101, 102, 103, 104, 100])        # the last row repeats the first id
    rep = ReadReport(str(path))
    parts = list(read_catalogue(path, chunk_rows=4, report=rep))
    ids = np.concatenate([p[0]["source_id"] for p in parts])
    assert ids.tolist() == [100, 104]
    assert [(b.row, b.column) for b in rep.bad_rows] == [(2, "rp_coefficient_errors"),
                                                        (3, "bp_coefficient_errors"), (4, "phot_g_mean_flux")]
    assert "value 16 is -0.5" in rep.bad_rows[0].message and "float32" in rep.bad_rows[1].message
    assert [(d.row, d.column) for d in rep.duplicates] == [(6, "ids")]
    for part in parts:      # labels and photometry stay row-aligned with the spectra
        assert np.array_equal(part[1]["gaia_source_id"], part[0]["source_id"])
        assert np.array_equal(part[2]["source_id"], part[0]["source_id"])
    assert rep.rows_read == rep.rows_ok + len(rep.bad_rows) + len(rep.duplicates) == 6


# --- 6. duplicates inside one file -----------------------------------------------------------------------------
def _replicated_rows(shared_dir, n: int) -> tuple[str, list[str]]:
    lines = (shared_dir / f"{REAL}.csv").read_text().splitlines()
    rows = lines[1:]
    return lines[0], [f"{7_000_000 + i}{rows[i % len(rows)][rows[i % len(rows)].index(','):]}" for i in range(n)]


def test_repeated_source_is_reported_first_row_kept(shared_dir, tmp_path, engine):
    header, rows = _replicated_rows(shared_dir, 300)
    first = rows[4]
    sid = first.split(",")[0]
    rows[5] = sid + rows[6][rows[6].index(","):]            # same block as row 5, different data
    rows[279] = sid + rows[7][rows[7].index(","):]          # a later parse block, different data
    rows[280] = rows[280].replace(",", ",,", 1)             # and one bad row, for the counts
    path = tmp_path / "dups.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    got, rep = load(path, chunk_rows=100)
    assert [(d.file, d.row, d.column) for d in rep.duplicates] == [(str(path), 6, "source_id"),
                                                                 (str(path), 280, "source_id")]
    assert all(f"repeats source_id {sid} of data row 5" in d.message for d in rep.duplicates)
    assert len(rep.bad_rows) == 1 and rep.bad_rows[0].row == 281
    assert rep.rows_read == 300 == rep.rows_ok + len(rep.bad_rows) + len(rep.duplicates)
    assert len(got) == 297 and len(set(got["source_id"].tolist())) == 297
    ref, _ = load(write_single(tmp_path, header, first))
    kept = got.take(got["source_id"] == int(sid))
    for c in ref.columns:
        np.testing.assert_array_equal(kept[c], ref[c], err_msg=c)


def write_single(tmp_path: Path, header: str, row: str) -> Path:
    path = tmp_path / "one.csv"
    path.write_text(header + "\n" + row + "\n")
    return path


def test_repeats_in_fits_and_photometry(real, tmp_path):
    both = XPBatch.concat([real, real.take(slice(0, 2))])       # rows 4, 5 repeat rows 1, 2
    path = write_xp_fits(both, tmp_path / "twice.fits")
    got, rep = load(path, chunk_rows=2)
    assert [(d.row, d.column) for d in rep.duplicates] == [(4, "source_id"), (5, "source_id")]
    assert "of data row 1" in rep.duplicates[0].message and len(got) == len(real)
    phot = tmp_path / "phot.csv"
    phot.write_text("source_id,phot_g_mean_flux\n1,10.0\n2,20.0\n1,30.0\n3,40.0\n2,50.0\n")
    prep = ReadReport(str(phot))
    chunks = list(read_photometry(phot, report=prep, chunk_rows=2))
    flux = dict(zip(np.concatenate([c["source_id"] for c in chunks]).tolist(),
                    np.concatenate([c["phot_g_mean_flux"] for c in chunks]).tolist()))
    assert flux == {1: 10.0, 2: 20.0, 3: 40.0}
    assert [d.row for d in prep.duplicates] == [3, 5] and prep.rows_ok == 3 and prep.rows_read == 5


def test_ingest_summary_counts_reconcile(sqlite_url, shared_dir, tmp_path):
    """The job's numbers: read = loaded + skipped + duplicates, and the database holds `loaded` rows."""
    import sqlalchemy as sa

    from db.engine import create_engine
    from ingest.load import ingest_gaia_xp
    from xpvae.summaries import describe_result
    header, rows = _replicated_rows(shared_dir, 20)
    rows[7] = rows[2].split(",")[0] + rows[7][rows[7].index(","):]     # a repeat
    rows[9] = rows[9].replace("(", "(inf, ", 1)                         # a bad row (56 values)
    path = tmp_path / "mixed.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    eng = create_engine(sqlite_url)
    with eng.begin() as conn:
        conn.execute(sa.text("DELETE FROM xp_correlations"))
        conn.execute(sa.text("DELETE FROM xp_spectra"))
    summary = ingest_gaia_xp(eng, path)
    d = summary.to_dict()
    assert (d["rows_read"], d["rows_loaded"], d["rows_skipped"], d["rows_duplicate"]) == (20, 18, 1, 1)
    assert d["files"][0]["rows_duplicate"] == 1 and "repeats source_id" in d["duplicate_rows"][0]
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM xp_spectra")).scalar_one() == 18
    text = describe_result("ingest", d)
    assert "rows read 20, loaded 18, skipped 1, duplicates 1" in text
    assert any(line.startswith(f"DUPLICATE {path}: row 8, column source_id") for line in text.splitlines())
    eng.dispose()


# --- 7. VOTables whose declarations do not fit their data ------------------------------------------------------
def test_binary2_with_misdeclared_columns_fails_instead_of_loading_nothing(shared_dir, tmp_path):
    """astropy re-serialises a parsed archive VOTable as BINARY2 declaring the errors and correlations float
    while writing doubles: the issue's file. It held 2 rows and read as "ok, 0 rows"."""
    from astropy.io.votable import parse, writeto
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vot = parse(shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.xml")
        vot.get_first_table().format = "binary2"
        path = tmp_path / "misdeclared.xml"
        writeto(vot, str(path))
    assert 'name="bp_coefficient_errors"' in path.read_text() and 'datatype="float"' in path.read_text()
    with pytest.raises(ReaderError, match=r"misdeclared.xml: VOTable TABLE 1: the 0 rows decoded account for 0 "
                                          r"of its 51,224 bytes"):
        load(path)


def _with_datatype(text: str, column: str, datatype: str) -> str:
    field = re.search(rf"<FIELD[^>]*name=['\"]{column}['\"][^>]*>", text).group(0)
    return text.replace(field, re.sub(r"datatype=(['\"])\w+\1", f'datatype="{datatype}"', field), 1)


@pytest.mark.parametrize("column,datatype,binary2,tabledata", [
    # wider than the data: BINARY2 rows shift and the stream "ends" mid-row; TABLEDATA text still parses
    ("bp_n_parameters", "int", "account for", None),
    ("rp_coefficient_errors", "double", "account for", None),
    # same width, wrong kind: BINARY2 would decode plausible garbage; TABLEDATA text does not parse
    ("rp_chi_squared", "int", "column rp_chi_squared is declared datatype='int'", "rp_chi_squared"),
    # an id as a float loses digits in either serialisation
    ("source_id", "double", "column source_id is declared datatype='double'",
     "column source_id is declared datatype='double'"),
])
def test_misdeclared_field_fails_the_file(shared_dir, tmp_path, column, datatype, binary2, tabledata):
    for name, fragment in (("XP_CONTINUOUS_RAW.xml", binary2), ("XP_CONTINUOUS_RAW_plain.xml", tabledata)):
        src = (shared_dir / "data/gaia_xp/gaiaxpy_tests" / name).read_text()
        path = tmp_path / name
        path.write_text(_with_datatype(src, column, datatype))
        if fragment is None:
            got, rep = load(path)
            assert len(got) == 2 and not rep.bad_rows
            continue
        with pytest.raises(ReaderError, match=re.escape(fragment)):
            load(path)


def test_cut_binary_stream_and_missing_tr_rows_fail(shared_dir, tmp_path):
    src = (shared_dir / f"{REAL}.xml").read_text()
    body = re.search(r"<STREAM[^>]*>(.*?)</STREAM>", src, re.S)
    data = "".join(body.group(1).split())
    cut = base64.b64encode(base64.b64decode(data)[:-40]).decode()        # the last row loses 40 bytes
    path = tmp_path / "cut.xml"
    path.write_text(src[:body.start(1)] + cut + src[body.end(1):])
    with pytest.raises(ReaderError, match="cut.xml: VOTable TABLE 1: the 2 rows decoded"):
        load(path)
    # positive controls: the real files and an astropy BINARY / BINARY2 / TABLEDATA rewrite read whole
    from astropy.table import Table
    t = Table.read(shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.xml")
    for fmt in ("binary", "binary2", "tabledata"):
        out = tmp_path / f"ok_{fmt}.xml"
        t.write(out, format="votable", tabledata_format=fmt)
        got, rep = load(out)
        assert len(got) == 2 and not rep.bad_rows
    gz = tmp_path / "ok.xml.gz"
    gz.write_bytes(gzip.compress((shared_dir / f"{REAL}.xml").read_bytes()))
    assert len(load(gz)[0]) == 3


def test_photometry_votable_that_decodes_to_nothing_fails(tmp_path):
    from astropy.table import Table
    t = Table({"source_id": np.array([11, 12, 13], np.int64), "phot_g_mean_flux": np.array([1.0, 2.0, 3.0])})
    good = tmp_path / "phot.xml"
    t.write(good, format="votable", tabledata_format="binary2")
    rep = ReadReport(str(good))
    assert sum(len(c["source_id"]) for c in read_photometry(good, report=rep)) == 3
    bad = tmp_path / "phot_bad.xml"
    bad.write_text(_with_datatype(good.read_text(), "phot_g_mean_flux", "float"))
    with pytest.raises(ReaderError, match="phot_bad.xml: VOTable TABLE 1"):
        list(read_photometry(bad))


# --- 8. overlong lines -------------------------------------------------------------------------------------------
def test_overlong_line_is_a_bad_row_and_the_rest_loads(shared_dir, tmp_path, engine):
    header, rows = _replicated_rows(shared_dir, 6)
    rows[2] = rows[2].replace("(", "(" + "1.0, " * (MAX_LINE_BYTES // 5 + 10), 1)
    path = tmp_path / "long.csv.gz"
    path.write_bytes(gzip.compress((header + "\n" + "\n".join(rows) + "\n").encode(), compresslevel=1))
    got, rep = load(path)
    assert [(b.file, b.row, b.column) for b in rep.bad_rows] == [(str(path), 3, "(whole row)")]
    assert f"longer than the {MAX_LINE_BYTES:,}-byte limit" in rep.bad_rows[0].message
    assert len(got) == 5 and rep.rows_read == 6


def test_overlong_header_fails_the_file_and_photometry_skips_long_rows(tmp_path):
    path = tmp_path / "noline.csv"
    path.write_bytes(b"source_id," + b"x" * (MAX_LINE_BYTES + 1))
    with pytest.raises(ReaderError, match=r"noline.csv: line 1: 16,777,2\d\d bytes without a line end"):
        load(path)
    phot = tmp_path / "phot.csv"
    phot.write_bytes(b"source_id,phot_g_mean_flux\n1,10.0\n2," + b"9" * (MAX_LINE_BYTES + 5) + b"\n3,30.0\n")
    rep = ReadReport(str(phot))
    ids = np.concatenate([c["source_id"] for c in read_photometry(phot, report=rep)])
    assert ids.tolist() == [1, 3] and [(b.row, b.column) for b in rep.bad_rows] == [(2, "(whole row)")]


def test_line_splitting_matches_a_plain_split_for_any_block_size():
    """iter_lines against bytes.split for random texts, block sizes and caps (CR/LF across block edges)."""
    import io
    import random

    from ingest.readers.textio import LongLine, iter_lines
    rng = random.Random(20261201)
    for _ in range(1500):
        lines = [bytes(rng.choice(b"ab\r") for _ in range(rng.choice([0, 1, 2, 5, 20, 40])))
                 for _ in range(rng.randint(0, 40))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        block, cap = rng.randint(1, 16), rng.randint(1, 30)
        got = [("long", x.length) if isinstance(x, LongLine) else x
               for x in iter_lines(io.BytesIO(data), "f", read_bytes=block, max_line=cap)]
        want = data.split(b"\n")
        if want[-1] == b"":
            want.pop()
        want = [("long", len(x)) if len(x) > cap else (x[:-1] if x.endswith(b"\r") else x) for x in want]
        assert got == want, (data, block, cap)
