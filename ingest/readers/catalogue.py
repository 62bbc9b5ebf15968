"""The authors' published XP x APOGEE catalogue (``xp_apogee_cat.h5``) and model standardisation
(``apogee_norm.npz``), docs/data-formats.md §4.

The catalogue is an astropy Table written to HDF5: one compound dataset ``__astropy_table__`` (502,311 rows)
whose ``coeffs``/``coeff_errs`` fields are (110,) sub-arrays, BP then RP. It is read with h5py, only the
needed fields, ``chunk_rows`` rows at a time.

HDF5 lets a file point elsewhere: an external or soft link in place of the dataset, raw data kept in external
files, a virtual dataset mapped onto other files. h5py follows all of them silently, so a hostile catalogue
could load any local file's bytes. ``_inside_dataset`` refuses each before any data is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ingest.readers.apogee import normalise_labels
from ingest.readers.assemble import BandColumns, RowProblems, assemble
from ingest.readers.errors import ReaderError
from ingest.readers.photometry import unphysical
from ingest.readers.repeats import keep_first
from shared.progress import Progress, report_progress
from shared.xp import BANDS, N_COEFF, PHOTOMETRY_COLUMNS, BadRow, ReadReport, XPBatch, g_flux_from_mag, g_mag_from_flux

DATASET = "__astropy_table__"


def read_catalogue(path: str | Path, *, chunk_rows: int = 50_000, report: ReadReport | None = None,
                   progress: Progress | None = None,
                   ) -> Iterator[tuple[XPBatch, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Yield (XPBatch without correlations, labels keyed like APOGEE_COLUMNS (+ lz/jz/jr), photometry).

    The three parts of a chunk are row-aligned. Labels get ``gaia_source_id`` from ``ids``; photometry's
    G magnitude comes from ``phot_g_mean_flux`` (or the reverse), BP/RP from GAIAEDR3_PHOT_BP/RP_MEAN_MAG.
    A row whose coefficients, errors or G flux cannot be physical (NaN or infinite values, errors or flux
    not > 0) is a BadRow and is dropped from all three parts.
    """
    import h5py

    path = Path(path)
    file = str(path)
    report = report if report is not None else ReadReport(file)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        report.error = f"{file}: not a readable HDF5 file: {exc}"
        raise ReaderError(file, f"not a readable HDF5 file: {exc}") from exc
    with h5:
        ds = _inside_dataset(h5, file)
        names = list(ds.dtype.names or ())
        lower = {nm.lower(): nm for nm in names}
        for need in ("ids", "coeffs", "coeff_errs"):
            if need not in lower:
                raise ReaderError(file, f"catalogue column {need} missing")
        n_total = ds.shape[0]
        for start in range(0, n_total, chunk_rows):
            try:
                rec = ds[start:start + chunk_rows]
            except (OSError, ValueError) as exc:
                raise ReaderError(file, f"HDF5 data unreadable at row {start + 1}: {exc}") from exc
            raw = {nm.lower(): rec[nm] for nm in names}
            batch, labels, phot = _chunk(raw, file, start, report)
            report_progress(progress, min(start + chunk_rows, n_total), n_total, f"{file}: rows")
            yield batch, labels, phot


def _inside_dataset(h5, file: str):
    """The catalogue's dataset, provided its link and its data are inside this file; ReaderError otherwise.
    The link is looked at without being followed (``DATASET in h5`` would already open an external file)."""
    import h5py

    name = DATASET.encode()
    if not h5.id.links.exists(name):
        raise ReaderError(file, f"no {DATASET} dataset (not an astropy table written to HDF5)")
    kind = h5.id.links.get_info(name).type
    if kind != h5py.h5l.TYPE_HARD:
        what = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link"}.get(kind, "a link")
        _refuse(file, f"{DATASET} is {what}, not a dataset stored in the file")
    ds = h5[DATASET]
    if not isinstance(ds, h5py.Dataset):
        raise ReaderError(file, f"{DATASET} is not a dataset (not an astropy table written to HDF5)")
    if ds.is_virtual:
        _refuse(file, f"{DATASET} is a virtual dataset mapped onto other files")
    if ds.id.get_create_plist().get_external_count():
        _refuse(file, f"{DATASET} keeps its data in external files")
    return ds


def _refuse(file: str, what: str):
    raise ReaderError(file, f"{what}: refused, only data inside the file is read")


def _chunk(raw: dict[str, np.ndarray], file: str, start: int, report: ReadReport):
    ids = np.asarray(raw["ids"], np.int64)
    n = ids.shape[0]
    coeffs = np.asarray(raw["coeffs"], np.float64)
    errs = np.asarray(raw["coeff_errs"], np.float64)
    if coeffs.shape != (n, 2 * N_COEFF) or errs.shape != (n, 2 * N_COEFF):
        raise ReaderError(file, f"coeffs/coeff_errs must be (N, {2 * N_COEFF}), found {coeffs.shape}")
    bands = {}
    for k, b in enumerate(BANDS):
        c = coeffs[:, k * N_COEFF:(k + 1) * N_COEFF]
        with np.errstate(over="ignore"):      # beyond float32 becomes inf: a bad row, reported below
            e = errs[:, k * N_COEFF:(k + 1) * N_COEFF].astype(np.float32)
        present = ~np.isnan(c).all(axis=1)
        bands[b] = BandColumns(coefficients=c, coefficients_present=present, errors=e,
                               errors_present=~np.isnan(e).all(axis=1))
    phot = _photometry(raw, ids, n)
    problems: RowProblems = unphysical(phot, {c: c for c in phot})    # dropped from all three parts
    batch = assemble(ids, None, bands, problems, with_correlations=False)
    raw = {k: (np.char.decode(v, "utf-8", "replace") if v.dtype.kind == "S" else v) for k, v in raw.items()}
    raw["gaia_source_id"] = ids
    labels = normalise_labels(raw, n, report)
    report.rows_read += n
    keep = np.ones(n, bool)
    keep[list(problems)] = False
    for i in sorted(problems):
        report.bad_rows.append(BadRow(file, start + i + 1, *problems[i]))
    first = keep_first(ids[keep], start + 1 + np.flatnonzero(keep), file, report, column="ids")
    keep[keep] = first
    if not first.all():
        batch = batch.take(first)
    if not keep.all():
        labels = {k: v[keep] for k, v in labels.items()}
        phot = {k: v[keep] for k, v in phot.items()}
    report.rows_ok += len(batch)
    return batch, labels, phot


def _photometry(raw: dict[str, np.ndarray], ids: np.ndarray, n: int) -> dict[str, np.ndarray]:
    def col(*names):
        for nm in names:
            if nm in raw:
                return np.asarray(raw[nm], np.float64)
        return None
    flux = col("phot_g_mean_flux")
    g = col("phot_g_mean_mag", "gaiaedr3_phot_g_mean_mag")
    out = {"source_id": ids,
           "phot_g_mean_flux": flux if flux is not None else (g_flux_from_mag(g) if g is not None
                                                               else np.full(n, np.nan)),
           "phot_g_mean_mag": g_mag_from_flux(flux) if flux is not None else (g if g is not None
                                                                              else np.full(n, np.nan)),
           "phot_bp_mean_mag": col("phot_bp_mean_mag", "gaiaedr3_phot_bp_mean_mag"),
           "phot_rp_mean_mag": col("phot_rp_mean_mag", "gaiaedr3_phot_rp_mean_mag")}
    return {k: (v if v is not None else np.full(n, np.nan)) for k, v in out.items() if k in PHOTOMETRY_COLUMNS}


def read_norm_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sig), each (110,) float64, from ``apogee_norm.npz``; sig must be positive and finite."""
    path = Path(path)
    try:
        with np.load(path) as npz:
            if "mu" not in npz or "sig" not in npz:
                raise ReaderError(str(path), f"needs arrays mu and sig, found {sorted(npz.files)}")
            mu = np.asarray(npz["mu"], np.float64).reshape(-1)
            sig = np.asarray(npz["sig"], np.float64).reshape(-1)
    except (OSError, ValueError) as exc:
        raise ReaderError(str(path), f"not a readable .npz: {exc}") from exc
    if mu.shape != (2 * N_COEFF,) or sig.shape != (2 * N_COEFF,):
        raise ReaderError(str(path), f"mu and sig must have {2 * N_COEFF} values, found {mu.size}, {sig.size}")
    if not (np.isfinite(mu).all() and np.isfinite(sig).all() and (sig > 0).all()):
        raise ReaderError(str(path), "mu/sig hold non-finite values or non-positive sig")
    return mu, sig
