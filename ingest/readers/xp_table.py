"""XP spectra from binary tables: FITS BINTABLE (memory-mapped, read in row slices) and VOTable.

FITS: variable-length ``PD(55)``/``PE(55)``/``PE(1485)`` arrays (zero length = missing band), integer
``TNULL`` (-32768 in the archive files) mapped to -1. VOTable: astropy parses TABLEDATA and BINARY2; only the
needed columns are parsed, but the whole table is in memory (DataLink VOTables hold at most 5000 sources).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ingest.readers.errors import ReaderError, WrongKindError
from ingest.readers.fitsio import open_fits
from ingest.readers.layout import build_reported, flat_names, layout_of
from ingest.readers.repeats import keep_first
from ingest.readers.votable import parse_votable, tables_checked
from shared.progress import Progress, report_progress
from shared.xp import BAND_FIELDS, BAND_SCALAR_DTYPES, BANDS, ReadReport, XPBatch


def _filled(a: Any, fill) -> np.ndarray:
    return np.ma.filled(a, fill) if np.ma.isMaskedArray(a) else np.asarray(a)


class TableColumns:
    """A ColumnSource over already-decoded columns (numpy / masked / variable-length object arrays)."""

    def __init__(self, columns: Mapping[str, Any], n: int, nulls: Mapping[str, int] | None = None):
        self._columns = columns
        self._n = n
        self._nulls = nulls or {}
        self.names = set(columns)

    def __len__(self) -> int:
        return self._n

    def ints(self, name, dtype, required=False):
        if name not in self._columns:
            return None
        a = self._columns[name]
        missing = np.ma.getmaskarray(a) if np.ma.isMaskedArray(a) else np.zeros(self._n, bool)
        raw = _filled(a, -1)
        wrong = np.zeros(self._n, bool)
        if np.issubdtype(raw.dtype, np.floating):      # ints stored as floats: NaN is missing
            missing = missing | np.isnan(raw)
            raw = np.where(np.isnan(raw), -1, raw)
            wrong = raw != np.round(raw)
        info = np.iinfo(dtype)            # a wider integer (or a float) must fit, not wrap around
        with np.errstate(invalid="ignore"):
            wrong = ~missing & (wrong | (raw < info.min) | (raw > info.max))
        bad = {int(i): f"{raw[i]} is not an integer within {np.dtype(dtype).name}" for i in np.flatnonzero(wrong)}
        raw = np.where(wrong, -1, raw)
        if name in self._nulls:
            missing = missing | (raw == self._nulls[name])
        out = np.where(missing, -1, raw).astype(dtype)
        if required:
            bad.update({int(i): "missing value" for i in np.flatnonzero(missing)})
        return out, bad

    def floats(self, name, dtype):
        if name not in self._columns:
            return None
        a = self._columns[name]
        out = _filled(a.astype(np.float64) if np.ma.isMaskedArray(a) else a, np.nan).astype(dtype)
        if name in self._nulls and np.issubdtype(np.asarray(a).dtype, np.integer):
            out[np.asarray(a) == self._nulls[name]] = np.nan
        return out, {}

    def arrays(self, name, length, dtype):
        if name not in self._columns:
            return None
        a = self._columns[name]
        n = self._n
        out = np.full((n, length), np.nan, dtype)
        present = np.zeros(n, bool)
        bad: dict[int, str] = {}
        if isinstance(a, np.ndarray) and a.dtype != object and a.ndim == 2:   # fixed-length column
            if a.shape[1] != length:
                raise ValueError(f"column {name} holds {a.shape[1]} values per row, expected {length}")
            vals = _filled(a.astype(dtype) if np.ma.isMaskedArray(a) else a, np.nan).astype(dtype)
            present = ~np.isnan(vals).all(axis=1)
            out[present] = vals[present]
            return out, present, bad
        rows = list(a)
        lens = np.fromiter((0 if r is None or r is np.ma.masked else len(r) for r in rows), np.int64, n)
        ok = lens == length
        if ok.all() and not any(np.ma.isMaskedArray(r) and r.mask.any() for r in rows):
            return np.asarray(np.stack(rows), dtype), ok, bad
        for i in range(n):
            if lens[i] == length:
                out[i] = _filled(np.ma.asarray(rows[i]).astype(np.float64), np.nan)
                present[i] = True
            elif lens[i]:
                bad[i] = f"expected {length} values, found {lens[i]}"
        return out, present, bad


def _wanted(names: set[str], correlations: bool) -> set[str]:
    want = {"source_id", "solution_id"}
    for b in BANDS:
        want |= {f"{b}_{f}" for f in BAND_FIELDS if correlations or f != "coefficient_correlations"}
        want |= set(flat_names(b, False)) | set(flat_names(b, True))
    return want & names


def _emit(src: TableColumns, layout: str, file: str, first_row: int, correlations: bool,
          report: ReadReport) -> XPBatch:
    batch, rows = build_reported(src, layout, correlations, file, range(first_row, first_row + len(src)), report)
    keep = keep_first(batch["source_id"], rows, file, report)
    if not keep.all():
        batch = batch.take(keep)
    report.rows_read += len(src)
    report.rows_ok += len(batch)
    return batch


def read_fits_xp(path: str | Path, file: str | None = None, *, correlations: bool = True,
                 chunk_rows: int = 5000, report: ReadReport | None = None,
                 progress: Progress | None = None) -> Iterator[XPBatch]:
    """Yield batches from the first BINTABLE HDU holding XP columns, ``chunk_rows`` rows at a time."""
    from astropy.io import fits

    file = file or str(path)
    report = report if report is not None else ReadReport(file)
    with open_fits(path, file) as hdul:
        try:
            hdu, actual = None, {}
            for h in hdul[1:]:
                if isinstance(h, fits.BinTableHDU):
                    cand = {c.name.lower(): c.name for c in h.columns}
                    if layout_of(set(cand)) and "source_id" in cand:
                        hdu, actual = h, cand
                        break
        except (OSError, ValueError, IndexError) as exc:
            raise ReaderError(file, f"unreadable FITS structure: {exc}") from exc
        if hdu is None:
            raise WrongKindError(file, "no BINTABLE HDU with source_id and XP coefficient columns")
        layout = layout_of(set(actual))
        want = _wanted(set(actual), correlations)
        nulls = {c.name.lower(): int(c.null) for c in hdu.columns
                 if c.null is not None and str(c.null).lstrip("-").isdigit()}
        nrows = int(hdu.header["NAXIS2"])
        try:
            data = hdu.data
            for start in range(0, nrows, chunk_rows):
                part = data[start:start + chunk_rows]
                cols = {nm: part[actual[nm]] for nm in want}
                batch = _emit(TableColumns(cols, len(part), nulls), layout, file, start + 1, correlations, report)
                report_progress(progress, min(start + chunk_rows, nrows), nrows, f"{file}: rows")
                if len(batch):
                    yield batch
        except (OSError, ValueError, IndexError, TypeError) as exc:
            raise ReaderError(file, f"FITS data unreadable after {report.rows_read} rows "
                                    f"(truncated file?): {exc}") from exc


_FLOAT_TYPES = ("float", "double")


def _is_floating(name: str) -> bool:
    """Whether an XP column holds floating-point values (coefficients, errors, correlations, fit statistics)."""
    for b in BANDS:
        if name.startswith(f"{b}_") or name.startswith(f"e_{b}_"):
            field = name.split("_", 2 if name.startswith("e_") else 1)[-1]
            return field.startswith("coeff") or np.issubdtype(BAND_SCALAR_DTYPES.get(field, np.int16), np.floating)
    return False


def _check_declared(table: Any, names: set[str], file: str) -> None:
    """A VOTable's FIELD datatypes are promises the data may not keep: a floating-point column declared as
    an integer type of the same width decodes into plausible-looking garbage, and a source id read as a
    float loses digits. Refuse declarations no XP file has."""
    for f in table.fields:
        nm = (f.name or f.ID or "").lower()
        if nm not in names:
            continue
        if nm in ("source_id", "solution_id"):
            need = ("long",)          # 64-bit ids: no float holds them exactly, no narrower int at all
        elif _is_floating(nm):
            need = _FLOAT_TYPES
        else:
            continue                  # counts: any number type, checked value by value (TableColumns.ints)
        if f.datatype not in need:
            raise ReaderError(file, f"column {nm} is declared datatype={f.datatype!r}, but XP files hold "
                                    f"{' or '.join(need)} values there: a mis-declared FIELD?")


def _first_xp_table(vot, payloads, file: str) -> tuple[Any, np.ndarray, dict[str, str], Any]:
    """(TABLE element, rows, lower-case → declared column names, layout) of the first TABLE with XP columns."""
    for table, arr in tables_checked(vot, payloads, file):
        actual = {nm.lower(): nm for nm in (arr.dtype.names or ())}
        layout = layout_of(set(actual))
        if layout and "source_id" in actual:
            return table, arr, actual, layout
    raise WrongKindError(file, "no VOTable TABLE with source_id and XP coefficient columns")


def read_votable_xp(path_or_stream, file: str, *, correlations: bool = True, chunk_rows: int = 5000,
                    report: ReadReport | None = None, progress: Progress | None = None) -> Iterator[XPBatch]:
    """Yield batches from the first VOTable TABLE holding XP columns (TABLEDATA or BINARY/BINARY2)."""
    report = report if report is not None else ReadReport(file)
    vot, payloads = parse_votable(path_or_stream, file)
    table, arr, actual, layout = _first_xp_table(vot, payloads, file)
    want = _wanted(set(actual), correlations)
    _check_declared(table, want, file)
    n = len(arr)
    for start in range(0, n, chunk_rows):
        part = arr[start:start + chunk_rows]
        cols = {nm: part[actual[nm]] for nm in want}
        batch = _emit(TableColumns(cols, len(part)), layout, file, start + 1, correlations, report)
        report_progress(progress, min(start + chunk_rows, n), n, f"{file}: rows")
        if len(batch):
            yield batch
