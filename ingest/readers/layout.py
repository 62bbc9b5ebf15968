"""Map a table's columns, whatever the format, onto the XPBatch fields.

Two layouts exist in the wild (docs/data-formats.md §1): the archive layout (``bp_coefficients`` arrays, 26
columns, any subset of them) and the flat layout (``bp_coeff_0 … bp_coeff_54``, ``e_bp_coeff_0 …``). A
ColumnSource hides how a format stores a column; ``build_batch`` applies the layout.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ingest.readers.assemble import BandColumns, RowProblems, add_problems, assemble
from ingest.readers.errors import ReaderError
from shared.xp import BAND_SCALAR_DTYPES, BANDS, N_COEFF, N_CORR, BadRow, ReadReport, XPBatch

ARRAY_FIELDS = {"coefficients": (N_COEFF, np.float64), "coefficient_errors": (N_COEFF, np.float32),
                "coefficient_correlations": (N_CORR, np.float32)}
Parsed = tuple[np.ndarray, dict[int, str]]


class ColumnSource(Protocol):
    """Typed access to the columns of one block of rows; each method returns None for an absent column."""
    names: set[str]

    def __len__(self) -> int: ...

    def ints(self, name: str, dtype, required: bool = False) -> Parsed | None: ...

    def floats(self, name: str, dtype) -> Parsed | None: ...

    def arrays(self, name: str, length: int, dtype) -> tuple[np.ndarray, np.ndarray, dict[int, str]] | None: ...


def layout_of(names: set[str]) -> str | None:
    """"archive", "flat" or None (no XP coefficients in the table)."""
    if any(f"{b}_coefficients" in names for b in BANDS):
        return "archive"
    if any(f"{b}_coeff_0" in names for b in BANDS):
        return "flat"
    return None


def flat_names(band: str, errors: bool) -> list[str]:
    return [f"{'e_' if errors else ''}{band}_coeff_{k}" for k in range(N_COEFF)]


def build_batch(src: ColumnSource, layout: str, with_correlations: bool) -> tuple[XPBatch, RowProblems]:
    """The rows of ``src`` that load, and the problems of those that do not (index -> (column, message))."""
    problems: RowProblems = {}
    n = len(src)
    got = src.ints("source_id", np.int64, required=True)
    if got is None:
        raise KeyError("source_id")
    source_id, bad = got
    add_problems(problems, bad, "source_id")
    solution_id = None
    got = src.ints("solution_id", np.int64)
    if got is not None:
        solution_id, bad = got
        add_problems(problems, bad, "solution_id")
    bands = {}
    for b in BANDS:
        bc = _archive_band(src, b, with_correlations, problems) if layout == "archive" else \
            _flat_band(src, b, n, problems)
        for f, dt in BAND_SCALAR_DTYPES.items():
            got = (src.ints if np.issubdtype(dt, np.integer) else src.floats)(f"{b}_{f}", dt)
            if got is not None:
                bc.scalars[f], bad = got
                add_problems(problems, bad, f"{b}_{f}")
        bands[b] = bc
    return assemble(source_id, solution_id, bands, problems, with_correlations), problems


def _archive_band(src: ColumnSource, b: str, with_correlations: bool, problems: RowProblems) -> BandColumns:
    bc = BandColumns()
    for f, (length, dt) in ARRAY_FIELDS.items():
        if f == "coefficient_correlations" and not with_correlations:
            continue                    # never parsed: ~89 % of the text
        got = src.arrays(f"{b}_{f}", length, dt)
        if got is None:
            continue
        arr, present, bad = got
        add_problems(problems, bad, f"{b}_{f}")
        attr = {"coefficients": "coefficients", "coefficient_errors": "errors",
                "coefficient_correlations": "correlations"}[f]
        setattr(bc, attr, arr)
        setattr(bc, f"{attr}_present", present)
    return bc


def _flat_band(src: ColumnSource, b: str, n: int, problems: RowProblems) -> BandColumns:
    bc = BandColumns()
    for errors in (False, True):
        names = flat_names(b, errors)
        if names[0] not in src.names:
            continue
        arr = np.full((n, N_COEFF), np.nan, np.float32 if errors else np.float64)
        for k, name in enumerate(names):
            got = src.floats(name, arr.dtype)
            if got is None:      # a table design error, not a row error: the whole file is unusable
                raise ValueError(f"column {name} absent although {names[0]} is present")
            arr[:, k], bad = got
            add_problems(problems, bad, name)
        # all-NaN is a missing band; a partly NaN row is caught by assemble()
        present = ~np.isnan(arr).all(axis=1)
        if errors:
            bc.errors, bc.errors_present = arr, present
        else:
            bc.coefficients, bc.coefficients_present = arr, present
        bc.element_columns["errors" if errors else "coefficients"] = names
    return bc


def build_reported(src: ColumnSource, layout: str, with_correlations: bool, file: str, row_numbers: Sequence[int],
                   report: ReadReport) -> tuple[XPBatch, np.ndarray]:
    """``build_batch`` for a reader: each problem row becomes a BadRow with its data-row number
    (``row_numbers[i]`` for row i of ``src``); a block that cannot be built at all is a ReaderError.
    Returns the batch and the data-row numbers of its rows."""
    try:
        batch, problems = build_batch(src, layout, with_correlations)
    except ValueError as exc:
        raise ReaderError(file, str(exc)) from exc
    for i in sorted(problems):
        col, msg = problems[i]
        report.bad_rows.append(BadRow(file, row_numbers[i], col, msg))
    kept = np.ones(len(src), bool)
    kept[list(problems)] = False
    return batch, np.asarray(row_numbers, np.int64)[kept]
