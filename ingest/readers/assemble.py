"""Turn per-column arrays (from any format) into an XPBatch, enforcing the band rules of docs/data-formats.md §1.

A band is missing when its coefficients are absent (empty field, NaN, zero-length array); then its arrays are
NaN and its scalars -1/NaN. A row is bad — reported and dropped, never half-loaded — when its band is half
there (coefficients without errors, or the reverse) or a present band holds a value that cannot be physical
(``check_values``): NaN or ±inf anywhere (inf is also what an overflow parses to: 1e400, or 1e39 for a
float32 field), errors that are not > 0, correlations outside [-1, 1], an infinite scalar; and a row with
neither band, which holds no spectrum at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.xp import BAND_SCALAR_DTYPES, BANDS, N_COEFF, XPBatch

RowProblems = dict[int, tuple[str, str]]     # row index in the block -> (column, message); first one wins


@dataclass
class BandColumns:
    """One band's columns for n rows; ``None`` means the file has no such column (or it was not wanted)."""
    coefficients: np.ndarray | None = None           # (n, 55) float64, NaN rows where absent
    coefficients_present: np.ndarray | None = None   # (n,) bool
    errors: np.ndarray | None = None                 # (n, 55) float32
    errors_present: np.ndarray | None = None
    correlations: np.ndarray | None = None           # (n, 1485) float32
    correlations_present: np.ndarray | None = None
    scalars: dict[str, np.ndarray] = field(default_factory=dict)   # subset of BAND_SCALAR_DTYPES
    # per-element column names where the file has one column per value (flat layout), for the reports
    element_columns: dict[str, list[str]] = field(default_factory=dict)   # "coefficients"/"errors" -> names


def add_problems(problems: RowProblems, bad: dict[int, str], column: str) -> None:
    for i, msg in bad.items():
        problems.setdefault(int(i), (column, msg))


def missing_scalar(dtype) -> float | int:
    return np.nan if np.issubdtype(dtype, np.floating) else -1


def assemble(source_id: np.ndarray, solution_id: np.ndarray | None, bands: dict[str, BandColumns],
             problems: RowProblems, with_correlations: bool) -> XPBatch:
    """Build the batch of the rows without problems (``problems`` is extended in place)."""
    n = len(source_id)
    cols: dict[str, np.ndarray] = {
        "source_id": np.asarray(source_id, np.int64),
        "solution_id": (np.full(n, -1, np.int64) if solution_id is None else np.asarray(solution_id, np.int64)),
    }
    keep_corr = with_correlations and all(bands[b].correlations is not None for b in BANDS)
    for i in np.flatnonzero(cols["source_id"] <= 0):       # Gaia source ids are positive; -1 is "missing"
        problems.setdefault(int(i), ("source_id", "missing or not a positive source id"))
    for b in BANDS:
        bc = bands[b]
        if bc.coefficients is None:
            present = np.zeros(n, bool)
            coef = np.full((n, N_COEFF), np.nan, np.float64)
        else:
            present = bc.coefficients_present
            coef = bc.coefficients
        _check_companion(problems, present, bc.errors_present, f"{b}_coefficient_errors", f"{b}_coefficients")
        if keep_corr:
            _check_companion(problems, present, bc.correlations_present, f"{b}_coefficient_correlations",
                             f"{b}_coefficients")
        errs = bc.errors if bc.errors is not None else np.full((n, N_COEFF), np.nan, np.float32)
        check_values(problems, present, f"{b}_coefficients", coef, bc.element_columns.get("coefficients"))
        if bc.errors is not None:      # an absent errors column is allowed (NaN errors); NaN inside is not
            check_values(problems, present, f"{b}_coefficient_errors", errs, bc.element_columns.get("errors"))
        if keep_corr:
            check_values(problems, present, f"{b}_coefficient_correlations", bc.correlations)
        cols[f"{b}_missing"] = ~present
        cols.update(_band_scalars(problems, b, bc, ~present))
        cols[f"{b}_coefficients"] = np.asarray(coef, np.float64)
        cols[f"{b}_coefficient_errors"] = np.asarray(errs, np.float32)
        if keep_corr:
            cols[f"{b}_coefficient_correlations"] = np.asarray(bc.correlations, np.float32)
    for i in np.flatnonzero(cols["bp_missing"] & cols["rp_missing"]):
        problems.setdefault(int(i), ("bp_coefficients", "neither BP nor RP coefficients: no spectrum"))
    batch = XPBatch(cols)
    if problems:
        keep = np.ones(n, bool)
        keep[list(problems)] = False
        batch = batch.take(keep)
    return batch


def _band_scalars(problems: RowProblems, b: str, bc: BandColumns, absent: np.ndarray) -> dict[str, np.ndarray]:
    """The band's scalar fields in their dtypes, "missing" where the band is absent or the field not given."""
    out = {}
    for f, dt in BAND_SCALAR_DTYPES.items():
        v = bc.scalars.get(f)
        v = np.full(len(absent), missing_scalar(dt), dt) if v is None else np.asarray(v).astype(dt, copy=True)
        v[absent] = missing_scalar(dt)
        if np.issubdtype(dt, np.floating):       # NaN is "not given"; inf is an overflow or a broken writer
            for i in np.flatnonzero(np.isinf(v)):
                problems.setdefault(int(i), (f"{b}_{f}", f"{v[i]} is not a finite number"))
        out[f"{b}_{f}"] = v
    return out


# What a present value must satisfy, by column suffix: (test, what a failing value breaks). NaN fails them all.
_VALUE_RULES = {
    "_correlations": (lambda x: (x >= -1) & (x <= 1), "a correlation must lie in [-1, 1]"),
    "_errors": (lambda x: (x > 0) & (x < np.inf), "an error must be > 0"),
}
_FINITE = (lambda x: (x > -np.inf) & (x < np.inf), "")


def check_values(problems: RowProblems, present: np.ndarray, name: str, arr: np.ndarray,
                 element_columns: list[str] | None = None) -> None:
    """Flag the present rows of an (n, k) array holding a value no XP record can hold (see module doc);
    the report names ``element_columns[j]`` for value j when the file has a column per value.

    Two reductions per array, no temporary of its size: the min and max of each row propagate NaN, so one
    range test on them catches NaN, ±inf and out-of-range values at once; messages are built only for the
    rows that fail."""
    inside, what = next((rule for suffix, rule in _VALUE_RULES.items() if name.endswith(suffix)), _FINITE)
    with np.errstate(invalid="ignore"):
        ok = inside(arr.min(axis=1)) & inside(arr.max(axis=1))
    k = arr.shape[1]
    for i in np.flatnonzero(present & ~ok):
        row = arr[i]
        nan = np.isnan(row)
        with np.errstate(invalid="ignore"):
            j = int(np.argmax(nan)) if nan.any() else int(np.argmin(inside(row)))
        column = element_columns[j] if element_columns else name
        if nan.any():
            msg = f"{int(nan.sum())} of {k} values are NaN"
        elif np.isinf(row[j]):
            limit = "float32's ±3.4e38" if arr.dtype == np.float32 else "float64's ±1.8e308"
            msg = f"value {j + 1} is {row[j]} (written as inf, or beyond {limit})"
        else:
            msg = f"value {j + 1} is {float(row[j]):.9g}: {what}"
        problems.setdefault(int(i), (column, msg))


def _check_companion(problems: RowProblems, present: np.ndarray, other: np.ndarray | None, name: str,
                     main: str) -> None:
    """Errors/correlations must be there exactly when the coefficients are."""
    if other is None:
        return
    for i in np.flatnonzero(present != other):
        what = "missing while" if present[i] else "present although"
        problems.setdefault(int(i), (name, f"{what} {main} is {'present' if present[i] else 'missing'}"))
