"""The in-memory form of Gaia DR3 XP continuous spectra and APOGEE labels that every reader produces and
every writer consumes (readers, simulator, database layer). Column names follow the Gaia archive."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

N_COEFF = 55                      # coefficients per band in DR3
N_CORR = N_COEFF * (N_COEFF - 1) // 2   # 1485: strict lower triangle, numpy.tril_indices(55, k=-1) order
BANDS = ("bp", "rp")
TRIL = np.tril_indices(N_COEFF, k=-1)

# The 26 archive columns, in archive order.
BAND_FIELDS = (
    "basis_function_id", "degrees_of_freedom", "n_parameters", "n_measurements", "n_rejected_measurements",
    "standard_deviation", "chi_squared", "coefficients", "coefficient_errors", "coefficient_correlations",
    "n_relevant_bases", "relative_shrinking",
)
ARCHIVE_COLUMNS = ("source_id", "solution_id") + tuple(f"{b}_{f}" for b in BANDS for f in BAND_FIELDS)

# dtypes of the scalar band fields; -1 (ints) or NaN (floats) stand for "missing" in memory.
BAND_SCALAR_DTYPES = {
    "basis_function_id": np.int16, "degrees_of_freedom": np.int16, "n_parameters": np.int16,
    "n_measurements": np.int16, "n_rejected_measurements": np.int16, "standard_deviation": np.float32,
    "chi_squared": np.float32, "n_relevant_bases": np.int16, "relative_shrinking": np.float32,
}
BAND_ARRAY_DTYPES = {"coefficients": np.float64, "coefficient_errors": np.float32,
                     "coefficient_correlations": np.float32}


@dataclass
class XPBatch:
    """A batch of N XP continuous spectra as column arrays.

    Keys: ``source_id`` (int64), ``solution_id`` (int64), and per band b in (bp, rp): ``b_missing`` (bool),
    the scalar fields of ``BAND_SCALAR_DTYPES`` (shape N), ``b_coefficients`` (N, 55) float64,
    ``b_coefficient_errors`` (N, 55) float32 and, unless correlations were dropped,
    ``b_coefficient_correlations`` (N, 1485) float32. A missing band has NaN arrays and -1/NaN scalars.
    """
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.columns["source_id"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]

    @property
    def has_correlations(self) -> bool:
        return all(f"{b}_coefficient_correlations" in self.columns for b in BANDS)

    def take(self, index) -> "XPBatch":
        return XPBatch({k: v[index] for k, v in self.columns.items()})

    def without_correlations(self) -> "XPBatch":
        return XPBatch({k: v for k, v in self.columns.items() if not k.endswith("_coefficient_correlations")})

    @classmethod
    def empty(cls, n: int, with_correlations: bool = True) -> "XPBatch":
        """A batch of n rows, every band missing; readers fill it in place."""
        cols: dict[str, np.ndarray] = {"source_id": np.zeros(n, np.int64), "solution_id": np.zeros(n, np.int64)}
        for b in BANDS:
            cols[f"{b}_missing"] = np.ones(n, bool)
            for f, dt in BAND_SCALAR_DTYPES.items():
                cols[f"{b}_{f}"] = np.full(n, np.nan if np.issubdtype(dt, np.floating) else -1, dt)
            cols[f"{b}_coefficients"] = np.full((n, N_COEFF), np.nan, np.float64)
            cols[f"{b}_coefficient_errors"] = np.full((n, N_COEFF), np.nan, np.float32)
            if with_correlations:
                cols[f"{b}_coefficient_correlations"] = np.full((n, N_CORR), np.nan, np.float32)
        return cls(cols)

    @classmethod
    def concat(cls, batches: Iterable["XPBatch"]) -> "XPBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty(0)
        keys = set.intersection(*(set(b.columns) for b in batches))
        return cls({k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns if k in keys})

    def coefficients110(self) -> np.ndarray:
        """(N, 110) BP then RP coefficients, the model's input order."""
        return np.concatenate([self.columns["bp_coefficients"], self.columns["rp_coefficients"]], axis=1)

    def errors110(self) -> np.ndarray:
        return np.concatenate([self.columns["bp_coefficient_errors"], self.columns["rp_coefficient_errors"]],
                              axis=1).astype(np.float64)


def correlation_matrix(flat: np.ndarray) -> np.ndarray:
    """Rebuild (..., 55, 55) correlation matrices from (..., 1485) strict-lower-triangle arrays."""
    flat = np.asarray(flat)
    out = np.zeros(flat.shape[:-1] + (N_COEFF, N_COEFF), dtype=np.float64)
    out[..., TRIL[0], TRIL[1]] = flat
    out = out + np.swapaxes(out, -1, -2)
    idx = np.arange(N_COEFF)
    out[..., idx, idx] = 1.0
    return out


def covariance_matrix(errors: np.ndarray, flat_corr: np.ndarray) -> np.ndarray:
    """Σ = diag(e)·R·diag(e) per band (docs/data-formats.md §1). errors (..., 55), flat_corr (..., 1485)."""
    e = np.asarray(errors, dtype=np.float64)
    r = correlation_matrix(flat_corr)
    return e[..., :, None] * r * e[..., None, :]


@dataclass
class BadRow:
    """A row a reader could not load: reported, skipped, never half-written."""
    file: str
    row: int          # 1-based data row number within the file (header excluded)
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}, column {self.column}: {self.message}"


# APOGEE labels in memory and in the database: lower-case DR17 names (docs/data-formats.md §3).
APOGEE_COLUMNS: dict[str, type] = {
    "apogee_id": str, "telescope": str, "field": str,
    "gaia_source_id": np.int64,           # GAIAEDR3_SOURCE_ID; 0 when unmatched
    "gaia_g_mag": np.float32, "gaia_bp_mag": np.float32, "gaia_rp_mag": np.float32,
    "parallax": np.float32, "parallax_error": np.float32,
    "teff": np.float32, "teff_err": np.float32, "logg": np.float32, "logg_err": np.float32,
    "m_h": np.float32, "m_h_err": np.float32, "alpha_m": np.float32, "alpha_m_err": np.float32,
    "fe_h": np.float32, "fe_h_err": np.float32, "mg_fe": np.float32, "mg_fe_err": np.float32,
    "snr": np.float32, "j": np.float32, "h": np.float32, "k": np.float32, "sfd_ebv": np.float32,
    "aspcapflag": np.int64, "starflag": np.int64, "extratarg": np.int64,
}
PHOTOMETRY_COLUMNS = ("source_id", "phot_g_mean_flux", "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag")
# Gaia (E)DR3 G-band zero point, Vega system (Riello et al. 2021): G = −2.5·log10(phot_g_mean_flux [e⁻/s]) + ZP.
G_ZERO_POINT = 25.6874
POSITION_COLUMNS = ("ra", "dec")   # degrees (ICRS); stored with the photometry when a file carries them


def g_flux_from_mag(mag: np.ndarray) -> np.ndarray:
    """phot_g_mean_flux (e⁻/s) from the G magnitude."""
    with np.errstate(over="ignore"):          # an absurd magnitude gives inf, which the photometry reader refuses
        return 10.0 ** ((G_ZERO_POINT - np.asarray(mag, np.float64)) / 2.5)


def g_mag_from_flux(flux: np.ndarray) -> np.ndarray:
    """The G magnitude from phot_g_mean_flux (e⁻/s); NaN where the flux is not > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.asarray(flux, np.float64)
        return np.where(f > 0, G_ZERO_POINT - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


@dataclass
class ReadReport:
    """What a reader did with one file: counts, the bad rows it skipped and the repeats it dropped.
    rows_read = rows_ok + len(bad_rows) + len(duplicates) once the file is read to its end."""
    file: str
    rows_read: int = 0
    rows_ok: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    error: str | None = None    # set when the whole file failed (unreadable, truncated gzip, …)
    notes: list[str] = field(default_factory=list)   # e.g. "column SNR absent: filled with NaN"
    duplicates: list[BadRow] = field(default_factory=list)   # rows repeating a key read before: not loaded
    seen: Any = field(default=None, repr=False, compare=False)   # the reader's index of the keys read so far
    other_products: dict[str, int] = field(default_factory=dict)  # DataLink members passed over, by product
