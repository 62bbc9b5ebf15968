"""From archive XP coefficients to the model's input units (docs/science.md §2).

1. Divide coefficients and errors by the star's G-band flux (``phot_g_mean_flux``).
2. Standardise per coefficient with μ, s fitted on the TRAINING split only: x ← (x − μ)/s, err ← err/s.
Rows with any non-finite value are excluded from training and reported (`finite_rows`).
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from shared.xp import N_COEFF, covariance_matrix


def normalise_by_flux(x: np.ndarray, x_err: np.ndarray, g_flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x/g_flux and x_err/g_flux, row-wise. A non-positive or non-finite flux gives a NaN row, which
    `finite_rows` then reports, rather than an inf that would poison the statistics."""
    x = np.asarray(x, dtype=np.float64)
    x_err = np.asarray(x_err, dtype=np.float64)
    g = np.asarray(g_flux, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape != x_err.shape or g.shape[0] != x.shape[0]:
        raise ValueError(f"shape mismatch: x {x.shape}, x_err {x_err.shape}, g_flux {g.shape}")
    g = np.where(np.isfinite(g) & (g > 0), g, np.nan)[:, None]
    return x / g, x_err / g


@dataclass
class RowExclusion:
    """Rows left out and why: never silent."""
    total: int
    indices: np.ndarray                     # row positions in the input arrays
    reason: str = "non-finite value in x or x_err"
    first_bad_fields: list[str] = field(default_factory=list)   # e.g. 'x[12]' for the first few rows

    @property
    def count(self) -> int:
        return int(self.indices.size)

    def __str__(self) -> str:
        head = ", ".join(f"row {i} ({f})" for i, f in zip(self.indices[:5].tolist(), self.first_bad_fields))
        more = "" if self.count <= 5 else f", … {self.count - 5} more"
        return f"{self.count} of {self.total} rows excluded ({self.reason})" + (f": {head}{more}" if head else "")

    def to_dict(self, max_indices: int = 1000) -> dict[str, Any]:
        """Plain data for storage; the index list is capped (``indices_truncated`` says so), the count is not."""
        return {"total": self.total, "count": self.count, "indices": self.indices[:max_indices].tolist(),
                "indices_truncated": self.count > max_indices, "reason": self.reason}


def finite_rows(*arrays: np.ndarray, names: tuple[str, ...] = ("x", "x_err", "labels")
                ) -> tuple[np.ndarray, RowExclusion]:
    """Mask of rows where every given (N, k) array is finite, and the report of the others."""
    if not arrays:
        raise ValueError("finite_rows needs at least one array")
    n = arrays[0].shape[0]
    ok = np.ones(n, dtype=bool)
    per_array = []
    for a in arrays:
        a = np.asarray(a)
        if a.shape[0] != n:
            raise ValueError(f"row counts differ: {a.shape[0]} vs {n}")
        fin = np.isfinite(a.reshape(n, -1))
        per_array.append(fin)
        ok &= fin.all(axis=1)
    bad = np.flatnonzero(~ok)
    fields = []
    for i in bad[:5]:
        for name, fin in zip(names, per_array):
            cols = np.flatnonzero(~fin[i])
            if cols.size:
                fields.append(f"{name}[{cols[0]}]" + (f" +{cols.size - 1}" if cols.size > 1 else ""))
                break
    return ok, RowExclusion(total=n, indices=bad, first_bad_fields=fields)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


@dataclass
class Normalisation:
    """Per-coefficient standardisation (μ, s). Part of a trained model; stored with it."""
    mu: np.ndarray
    sig: np.ndarray

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64).reshape(-1)
        self.sig = np.asarray(self.sig, dtype=np.float64).reshape(-1)
        if self.mu.shape != self.sig.shape:
            raise ValueError(f"mu {self.mu.shape} and sig {self.sig.shape} differ in shape")
        bad = np.flatnonzero(~np.isfinite(self.mu) | ~np.isfinite(self.sig) | (self.sig <= 0))
        if bad.size:
            raise ValueError(f"normalisation invalid at coefficient(s) {bad[:10].tolist()}: "
                             f"mu={self.mu[bad[:3]].tolist()}, sig={self.sig[bad[:3]].tolist()} (sig must be > 0)")

    @classmethod
    def fit(cls, x: np.ndarray) -> "Normalisation":
        """Mean and (population, ddof=0) standard deviation over rows, as the release computes them.
        Call it with the training split only."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need a (N>=2, k) array to fit a normalisation, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("non-finite values in the rows used to fit the normalisation; filter with finite_rows")
        return cls(x.mean(axis=0), x.std(axis=0))

    def apply(self, x: np.ndarray, x_err: np.ndarray | None = None):
        """(x − μ)/s, and err/s when errors are given (then a tuple is returned)."""
        xs = (np.asarray(x, dtype=np.float64) - self.mu) / self.sig
        return xs if x_err is None else (xs, self.scale_errors(x_err))

    def scale_errors(self, x_err: np.ndarray) -> np.ndarray:
        return np.asarray(x_err, dtype=np.float64) / self.sig

    def invert(self, x_std: np.ndarray) -> np.ndarray:
        """Back to G-flux-normalised units: x·s + μ (multiply by phot_g_mean_flux for flux units)."""
        return np.asarray(x_std, dtype=np.float64) * self.sig + self.mu

    def to_dict(self) -> dict[str, list[float]]:
        return {"mu": self.mu.tolist(), "sig": self.sig.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Normalisation":
        return cls(np.asarray(d["mu"]), np.asarray(d["sig"]))

    @classmethod
    def from_npz(cls, path: str | Path) -> "Normalisation":
        """The authors' ``apogee_norm.npz`` (arrays ``mu`` and ``sig``)."""
        path = Path(path)
        broken = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
        try:
            z = np.load(path)            # allow_pickle stays False: an .npz holding objects is refused
        except broken as exc:
            raise ValueError(f"{path}: not a readable .npz normalisation ({_first_line(exc)})") from None
        if not hasattr(z, "files"):
            raise ValueError(f"{path}: an .npy array, not an .npz with arrays mu and sig")
        with z:
            missing = [k for k in ("mu", "sig") if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {missing}; found {z.files}")
            try:
                return cls(z["mu"], z["sig"])
            except broken as exc:
                raise ValueError(f"{path}: {_first_line(exc)}") from None

    def save_npz(self, path: str | Path) -> None:
        np.savez(path, mu=self.mu, sig=self.sig)


def standardised_covariance(errors: np.ndarray, flat_corr: np.ndarray, g_flux: np.ndarray | float,
                            sig_band: np.ndarray) -> np.ndarray:
    """Covariance of one band's coefficients in the model's standardised units.

    errors: (..., 55) archive errors (flux units); flat_corr: (..., 1485); g_flux: (...) ; sig_band: (55,)
    the band's slice of ``Normalisation.sig``. Dividing by G flux and s rescales the errors; correlations are
    unchanged, so Σ_std = diag(e/(g·s))·R·diag(e/(g·s)).
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.shape[-1] != N_COEFF or np.shape(sig_band) != (N_COEFF,):
        raise ValueError(f"expected 55 errors and 55 scales per band, got {e.shape} and {np.shape(sig_band)}")
    g = np.asarray(g_flux, dtype=np.float64)[..., None]
    return covariance_matrix(e / g / np.asarray(sig_band, dtype=np.float64), flat_corr)
