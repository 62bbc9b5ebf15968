"""Broken input: one bad row is reported (file, data row, column) and skipped while every other row loads
unchanged; a broken file raises ReaderError naming it. The files are real archive rows, replicated with new
source ids and then damaged, so the truth for every good row is the undamaged original."""
from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ingest.readers import ReaderError, UnknownFormatError, read_xp
from shared.xp import ReadReport, XPBatch

@pytest.fixture(autouse=True, params=["compiled", "pure"])
def engine(request, monkeypatch):
    """Every case here runs on both array-text engines: the fast path must not change what is reported."""
    from ingest.readers import numbers
    monkeypatch.setattr(numbers, "COMPILED", request.param == "compiled")
    return request.param


N_ROWS = 300          # > 1 parse block of 256 rows; the bad row sits inside a vectorised block
BAD_INDEX = 150       # data row 151, a full record (150 % 3 == 0)


@pytest.fixture(scope="module")
def real_lines(shared_dir) -> list[str]:
    return (shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW_with_missing_BP.csv").read_text().splitlines()


def replicate(real_lines: list[str], n: int) -> tuple[str, list[str]]:
    rows = real_lines[1:]
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        out.append(f"{1_000_000 + i}{row[row.index(','):]}")
    return real_lines[0], out


@pytest.fixture(scope="module")
def clean(real_lines, tmp_path_factory) -> tuple[str, list[str], XPBatch]:
    header, rows = replicate(real_lines, N_ROWS)
    ref, _ = load(write(tmp_path_factory.mktemp("clean") / "clean.csv", header, rows))
    return header, rows, ref


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def load(path, **kw) -> tuple[XPBatch, ReadReport]:
    rep = ReadReport(str(path))
    return XPBatch.concat(list(read_xp(path, report=rep, **kw))), rep


def corrupt_field(row: str, k: int, fn) -> str:
    """Apply fn to the k-th quoted array field (0 = bp_coefficients … 5 = rp_coefficient_correlations)."""
    parts = row.split('"')
    parts[2 * k + 1] = fn(parts[2 * k + 1])
    return '"'.join(parts)


def replace_value(field: str, k: int, token: str) -> str:
    values = field.strip("()").split(", ")
    values[k] = token
    return "(" + ", ".join(values) + ")"


CASES = {
    # name: (row transform applied to a full (not missing-BP) row, expected column, message fragment)
    "short_array": (lambda r: corrupt_field(r, 1, lambda s: s[:s.rindex(",")] + ")"),
                    "bp_coefficient_errors", "expected 55 values, found 54"),
    "long_correlations": (lambda r: corrupt_field(r, 5, lambda s: s[:-1] + ", 0.5)"),
                          "rp_coefficient_correlations", "expected 1485 values, found 1486"),
    "bad_number": (lambda r: corrupt_field(r, 3, lambda s: replace_value(s, 1, "0.1x2")),
                   "rp_coefficients", "value 2 is not a number: '0.1x2'"),
    "broken_quoting": (lambda r: r.replace('"', "", 1), "bp_coefficients", "broken quoting"),
    "missing_column": (lambda r: r[:r.rindex(",")], "rp_relative_shrinking", "expected 26 columns, found 25"),
    "bad_integer": (lambda r: r.replace(",56,", ",5x6,", 1), "bp_basis_function_id", "not an integer"),
    "half_band": (lambda r: corrupt_field(r, 1, lambda s: "").replace(',"",', ",,", 1),
                  "bp_coefficient_errors", "missing while bp_coefficients is present"),
    "truncated_array": (lambda r: corrupt_field(r, 2, lambda s: s[:-1]), "bp_coefficient_correlations",
                        "not closed"),
}


@pytest.mark.parametrize("case,ext", [(c, "csv") for c in sorted(CASES)]
                         + [("bad_number", "csv.gz"), ("broken_quoting", "csv.gz")])
def test_one_bad_row_is_reported_and_the_rest_loads(clean, tmp_path, case, ext):
    transform, column, fragment = CASES[case]
    header, rows, ref = clean
    rows = list(rows)
    bad_index = BAD_INDEX
    assert rows[bad_index].split(",")[2] == "56"
    rows[bad_index] = transform(rows[bad_index])
    path = write(tmp_path / "bad.csv", header, rows)
    if ext == "csv.gz":
        gz = tmp_path / "bad.csv.gz"
        gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        path = gz
    got, rep = load(path, chunk_rows=100)
    assert rep.rows_read == N_ROWS and rep.rows_ok == N_ROWS - 1 and len(got) == N_ROWS - 1
    assert len(rep.bad_rows) == 1
    bad = rep.bad_rows[0]
    assert (bad.file, bad.row, bad.column) == (str(path), bad_index + 1, column)
    assert fragment in bad.message
    keep = np.arange(N_ROWS) != bad_index
    want = ref.take(keep)
    for k in want.columns:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_every_row_bad_in_a_block_still_loads_the_next(clean, tmp_path):
    header, rows, _ = clean
    rows = list(rows)
    for i in range(0, 256):
        rows[i] = rows[i].replace(",", ",,", 1)      # an extra column in each of the first 256 rows
    got, rep = load(write(tmp_path / "x.csv", header, rows))
    assert len(got) == N_ROWS - 256 and len(rep.bad_rows) == 256
    assert [b.row for b in rep.bad_rows] == list(range(1, 257))


def test_null_inside_an_ecsv_array_is_nan_not_an_error(shared_dir, tmp_path):
    text = (shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.ecsv").read_text()
    lines = text.splitlines()
    data_at = next(i for i, ln in enumerate(lines) if ln.startswith("5853498713190525696"))
    head, rest = lines[data_at].split('"[', 1)
    lines[data_at] = head + '"[null' + rest[rest.index(","):]     # first coefficient -> null, still 55
    path = tmp_path / "null.ecsv"
    path.write_text("\n".join(lines) + "\n")
    got, rep = load(path)
    # a NaN coefficient cannot be used: the row is reported, not silently loaded with a hole
    assert len(got) == 1 and len(rep.bad_rows) == 1
    assert rep.bad_rows[0].column == "bp_coefficients" and "1 of 55 values are NaN" in rep.bad_rows[0].message


def test_truncated_gzip_raises_naming_the_file_after_only_complete_rows(clean, tmp_path):
    header, rows, ref = clean
    raw = (header + "\n" + "\n".join(rows) + "\n").encode()
    gz = tmp_path / "XpContinuousMeanSpectrum_614517-614573.csv.gz"
    blob = gzip.compress(raw, compresslevel=1)
    gz.write_bytes(blob[: int(len(blob) * 0.7)])
    rep = ReadReport(str(gz))
    got = []
    with pytest.raises(ReaderError, match="XpContinuousMeanSpectrum_614517-614573.csv.gz.*truncated"):
        for b in read_xp(gz, report=rep, chunk_rows=50):
            got.append(b)
    assert rep.error and str(gz) in rep.error
    got = XPBatch.concat(got)
    # documented contract: whatever was yielded before the error is complete, correct rows
    assert 0 < len(got) < N_ROWS
    idx = got["source_id"] - 1_000_000
    for k in ("bp_coefficients", "rp_coefficient_correlations", "rp_n_parameters"):
        np.testing.assert_array_equal(got[k], ref[k][idx], err_msg=k)


def test_cut_plain_file_reports_last_row(real_lines, tmp_path):
    header, rows = replicate(real_lines, 10)
    path = tmp_path / "cut.csv"
    text = header + "\n" + "\n".join(rows)
    path.write_text(text[: len(text) - 5000])          # the last row ends inside rp_coefficient_correlations
    got, rep = load(path)
    assert len(got) == 9 and [b.row for b in rep.bad_rows] == [10]


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(ReaderError, match="missing.csv"):
        list(read_xp(tmp_path / "missing.csv"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(UnknownFormatError, match="junk.bin"):
        list(read_xp(junk))
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("a,b\n1,2\n")
    with pytest.raises(ReaderError, match="nocols.csv.*no XP columns"):
        list(read_xp(nocols))


def test_truncated_fits_raises_naming_the_file(shared_dir, tmp_path):
    src = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.fits"
    cut = tmp_path / "cut.fits"
    cut.write_bytes(src.read_bytes()[:8000])
    with pytest.raises(ReaderError, match="cut.fits"):
        list(read_xp(cut))


def test_corrupt_zip_member_raises_naming_member(shared_dir, tmp_path):
    src = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
    zpath = tmp_path / "dl.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src, "XP_CONTINUOUS_RAW.csv")
    blob = bytearray(zpath.read_bytes())
    start = blob.index(b"XP_CONTINUOUS_RAW.csv") + 200       # inside the deflated data
    blob[start:start + 400] = bytes(400)
    zpath.write_bytes(bytes(blob))
    with pytest.raises(ReaderError, match="dl.zip::XP_CONTINUOUS_RAW.csv"):
        list(read_xp(zpath))
