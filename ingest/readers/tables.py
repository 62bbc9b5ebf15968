"""Bounded-memory chunks of plain scalar tables (photometry, APOGEE labels) from CSV/ECSV/FITS/VOTable.

Only the requested columns are decoded: a FITS file is memory-mapped and sliced by rows, so a 3 GB allStar
with 234 columns costs the pages of ~30 columns. Column names are matched case-insensitively and returned
lower-cased; absent columns are simply absent from the chunk (the caller decides about defaults).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ingest.readers.errors import ReaderError, UnknownFormatError
from ingest.readers.fitsio import open_fits
from ingest.readers.gz import open_gzip
from ingest.readers.numbers import is_missing, parse_float_column, parse_int_column
from ingest.readers.sniff import sniff
from ingest.readers.textio import FieldError, LongLine, iter_lines, read_header, split_fields
from ingest.readers.votable import parse_votable, tables_checked
from shared.xp import BadRow, ReadReport

KINDS = ("int", "float", "str")
Chunk = dict[str, np.ndarray]
ROW = "__row__"     # key of the 1-based data-row numbers in every chunk, for the callers' own BadRows


def iter_table_chunks(path: str | Path, spec: Mapping[str, str], chunk_rows: int,
                      report: ReadReport) -> Iterator[tuple[Chunk, set[str]]]:
    """Yield (columns, names present in the file) for the columns of ``spec`` (name -> "int"/"float"/"str").
    Each chunk also holds ``ROW``: the data-row numbers of its rows.

    ints: missing -> -1 (FITS TNULL, masked, empty); floats: missing -> NaN; str: stripped, missing -> "".
    Rows with unparsable values are reported as BadRow and dropped.
    """
    path = Path(path)
    sniffed = sniff(path)
    file = str(path)
    try:
        if sniffed.kind in ("csv", "ecsv"):
            with (open_gzip(path) if sniffed.gzipped else open(path, "rb")) as stream:
                yield from _text_chunks(stream, file, spec, chunk_rows, report)
        elif sniffed.kind == "fits":
            yield from _fits_chunks(path, file, spec, chunk_rows, report)
        elif sniffed.kind == "votable":
            yield from _votable_chunks(path, file, spec, chunk_rows, report)
        else:
            raise UnknownFormatError(file, f"{sniffed.kind} is not a table format for this reader")
    except ReaderError as exc:
        report.error = str(exc)
        raise


def _text_chunks(stream, file, spec, chunk_rows, report):
    lines = iter_lines(stream, file)
    header = read_header(lines, file)
    index = {nm: j for j, nm in enumerate(header.names)}
    present = set(index) & set(spec)
    ncols = len(header.names)
    block: list[list[bytes]] = []
    rows: list[int] = []
    row = 0

    def emit():
        cols = list(zip(*block)) if block else [()] * ncols
        out: Chunk = {}
        problems: dict[int, tuple[str, str]] = {}
        for name in present:
            values = cols[index[name]]
            kind = spec[name]
            if kind == "str":
                out[name] = np.array(["" if is_missing(v) else v.decode("utf-8", "replace").strip().strip('"')
                                      for v in values], dtype=str) if values else np.zeros(0, str)
                continue
            arr, bad = (parse_int_column(values, np.int64) if kind == "int"
                        else parse_float_column(values, np.float64))
            out[name] = arr
            for i, msg in bad.items():
                problems.setdefault(i, (name, msg))
        return _drop(out, problems, rows, file, report)

    for line in lines:
        row += 1
        if isinstance(line, LongLine):
            report.bad_rows.append(BadRow(file, row, LongLine.COLUMN, str(line)))
            report.rows_read += 1
            continue
        if not line or line.isspace():
            continue
        try:
            fields = split_fields(line, header.delimiter)
        except FieldError as exc:
            report.bad_rows.append(BadRow(file, row, header.names[0], f"broken quoting: {exc}"))
            report.rows_read += 1
            continue
        if len(fields) != ncols:
            col = header.names[len(fields)] if len(fields) < ncols else header.names[-1]
            report.bad_rows.append(BadRow(file, row, col, f"expected {ncols} columns, found {len(fields)}"))
            report.rows_read += 1
            continue
        block.append(fields)
        rows.append(row)
        if len(block) >= chunk_rows:
            yield emit(), present
            block, rows = [], []
    if block:
        yield emit(), present


def _drop(out: Chunk, problems, rows, file, report) -> Chunk:
    n = len(rows)
    report.rows_read += n
    out[ROW] = np.asarray(rows, np.int64)
    if problems:
        for i in sorted(problems):
            report.bad_rows.append(BadRow(file, rows[i], *problems[i]))
        keep = np.ones(n, bool)
        keep[list(problems)] = False
        out = {k: v[keep] for k, v in out.items()}
    report.rows_ok += n - len(problems)
    return out


def _decode(values, kind: str, null) -> np.ndarray:
    a = values
    if kind == "str":
        a = np.ma.filled(a, "") if np.ma.isMaskedArray(a) else np.asarray(a)
        if a.dtype.kind == "S":
            a = np.char.decode(a, "utf-8", "replace")
        return np.char.strip(a.astype(str))
    if kind == "int":
        missing = np.ma.getmaskarray(a) if np.ma.isMaskedArray(a) else np.zeros(len(a), bool)
        raw = np.ma.filled(a, -1) if np.ma.isMaskedArray(a) else np.asarray(a)
        if raw.dtype.kind == "f":
            missing = missing | np.isnan(raw)
            raw = np.nan_to_num(raw, nan=-1)
        if null is not None:
            missing = missing | (raw == null)
        return np.where(missing, -1, raw).astype(np.int64)
    out = (np.ma.filled(a.astype(np.float64), np.nan) if np.ma.isMaskedArray(a)
           else np.asarray(a, dtype=np.float64)).copy()
    if null is not None and np.asarray(a).dtype.kind in "iu":
        out[np.asarray(a) == null] = np.nan
    return out


def _fits_chunks(path, file, spec, chunk_rows, report):
    from astropy.io import fits
    with open_fits(path, file) as hdul:
        hdu = next((h for h in hdul[1:] if isinstance(h, (fits.BinTableHDU, fits.TableHDU))), None)
        if hdu is None:
            raise ReaderError(file, "no table HDU")
        actual = {c.name.lower(): c for c in hdu.columns}
        present = set(actual) & set(spec)
        nrows = int(hdu.header["NAXIS2"])
        try:
            data = hdu.data
            for start in range(0, nrows, chunk_rows):
                part = data[start:start + chunk_rows]
                nulls = {nm: actual[nm].null for nm in present}
                out = {nm: _decode(part[actual[nm].name], spec[nm],
                                   nulls[nm] if isinstance(nulls[nm], (int, np.integer)) else None)
                       for nm in present}
                yield _drop(out, {}, range(start + 1, start + 1 + len(part)), file, report), present
        except (OSError, ValueError, IndexError, TypeError) as exc:
            raise ReaderError(file, f"FITS data unreadable after {report.rows_read} rows: {exc}") from exc


def _votable_chunks(path, file, spec, chunk_rows, report):
    vot, payloads = parse_votable(str(path), file)
    found = next(tables_checked(vot, payloads, file), None)
    if found is None:
        raise ReaderError(file, "no TABLE in the VOTable")
    arr = found[1]
    actual = {nm.lower(): nm for nm in arr.dtype.names}
    present = set(actual) & set(spec)
    for start in range(0, len(arr), chunk_rows):
        part = arr[start:start + chunk_rows]
        out = {nm: _decode(part[actual[nm]], spec[nm], None) for nm in present}
        yield _drop(out, {}, range(start + 1, start + 1 + len(part)), file, report), present


def add_note(report: ReadReport, note: str) -> None:
    """Attach a remark (e.g. "column SNR absent: filled with NaN") to a report, once."""
    if note not in report.notes:
        report.notes.append(note)
