"""Observational noise of XP coefficients: errors calibrated on real sources, correlated Gaussian noise, and
the fit columns of the archive (dof, σ, χ², n_relevant_bases, relative_shrinking).

Error model (fitted by ``fit_error_model`` on the 2000 real sources of
``data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits``; the stored fit is in
``error_calibration.py``). That file has no G flux, so the brightness proxy is the star's synthetic magnitude in
the band itself — GaiaXPy's Gaia DR3 Vega BP (for BP errors) or RP (for RP errors) passband applied to its
coefficients, x = −0.4·mag. Per coefficient j:

    log10 e_j = p_j(x − x0) + s_star·g + s_j·h_j,   p_j a quadratic,

with g ~ N(0,1) shared by all coefficients of a star (its number of transits: the dominant scatter) and
h_j ~ N(0,1) independent. The simulator draws the same: errors of simulated stars have the real spread.

Correlations: per band, K smooth-but-irregular template correlation matrices (banded random factor plus a weak
dense Wishart part: |ρ| ~ 0.2 next to the diagonal, ~0.05 far from it, as in the real records), each with ONE
Cholesky factor. A star uses template t shrunk towards the identity, R = (1−ε)·R_t + ε·I, so its noise is
sqrt(1−ε)·L_t·u + sqrt(ε)·v — exactly the correlation written to its record, vectorised over stars.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.xp import N_COEFF, TRIL

N_TEMPLATES = 8
SHRINK_RANGE = (0.0, 0.3)
#: Gaia DR3 XP: roughly 60 samples per transit in BP/RP epoch spectra over the used window (order of magnitude).
SAMPLES_PER_TRANSIT = 60
MEDIAN_TRANSITS = 40


@dataclass(frozen=True)
class ErrorModel:
    """Quadratic log-error relation per coefficient (110: BP then RP) against x = −0.4·(band magnitude)."""
    x0: np.ndarray          # (2,) pivot of x per band
    poly: np.ndarray        # (3, 110) quadratic coefficients, highest power first (numpy.polyval order)
    shared_sd: float        # dex, per-star shared scatter
    coeff_sd: np.ndarray    # (110,) dex, independent scatter

    def median_errors(self, band_mags: np.ndarray) -> np.ndarray:
        """(N, 110) median errors for (N, 2) BP, RP magnitudes."""
        x = -0.4 * np.asarray(band_mags, float)
        xx = np.repeat(x - self.x0, N_COEFF, axis=1)              # (N, 110)
        p = self.poly
        return 10.0 ** ((p[0] * xx + p[1]) * xx + p[2])

    def draw(self, rng: np.random.Generator, band_mags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Errors (N, 110) and the per-star shared log-offset g·shared_sd (N,), for the fit columns."""
        n = band_mags.shape[0]
        shared = self.shared_sd * rng.standard_normal(n)
        scatter = self.coeff_sd * rng.standard_normal((n, 2 * N_COEFF))
        return self.median_errors(band_mags) * 10.0 ** (shared[:, None] + scatter), shared


def read_flat_real_sources(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 110) coefficients and errors from a table with flat columns bp_coeff_0…, e_bp_coeff_0…"""
    from astropy.table import Table
    t = Table.read(path)
    try:
        c = np.column_stack([np.asarray(t[f"{b}_coeff_{i}"], float) for b in ("bp", "rp") for i in range(N_COEFF)])
        e = np.column_stack([np.asarray(t[f"e_{b}_coeff_{i}"], float) for b in ("bp", "rp") for i in range(N_COEFF)])
    except KeyError as exc:
        raise ValueError(f"{path}: missing column {exc.args[0]} (expected flat bp_coeff_0…, e_bp_coeff_0…)") from None
    return c, e


def fit_error_model(path: Path) -> ErrorModel:
    """Fit the error model on real sources with flat coefficient/error columns (see module docstring)."""
    from .xp_basis import xp_basis
    c, e = read_flat_real_sources(path)
    mags = xp_basis().synthetic_mags(c)[:, 1:]                    # BP, RP synthetic magnitudes
    ok = np.all(np.isfinite(mags), axis=1) & np.all(np.isfinite(e) & (e > 0), axis=1)
    x = -0.4 * mags[ok]
    x0 = np.median(x, axis=0)
    le = np.log10(e[ok])
    poly = np.empty((3, 2 * N_COEFF))
    resid = np.empty_like(le)
    for b in range(2):
        cols = slice(b * N_COEFF, (b + 1) * N_COEFF)
        v = np.vander(x[:, b] - x0[b], 3)
        poly[:, cols] = np.linalg.lstsq(v, le[:, cols], rcond=None)[0]
        resid[:, cols] = le[:, cols] - v @ poly[:, cols]
    shared = resid.mean(axis=1)
    return ErrorModel(x0=x0, poly=poly, shared_sd=float(shared.std()),
                      coeff_sd=(resid - shared[:, None]).std(axis=0))


def stored_error_model() -> ErrorModel:
    """The error model fitted on the real sources, as stored in ``error_calibration.py``."""
    from . import error_calibration as cal
    return ErrorModel(x0=np.array(cal.X0), poly=np.array(cal.POLY), shared_sd=float(cal.SHARED_SD),
                      coeff_sd=np.array(cal.COEFF_SD))


def write_error_calibration(model: ErrorModel, path: Path, source: str) -> None:
    """Write the fitted model as the Python module ``error_calibration.py`` (run ``python -m
    simulator.calibrate`` to regenerate it)."""
    def fmt(a) -> str:
        import textwrap
        body = ", ".join(repr(round(float(v), 6)) for v in np.ravel(a))
        return "[\n" + textwrap.indent(textwrap.fill(body, 100), "    ") + "\n]"
    poly = ",\n".join(fmt(row) for row in model.poly)
    text = (f'"""Error-vs-brightness calibration of XP coefficient errors, fitted by noise.fit_error_model on\n'
            f'{source}.\nGenerated by `python -m simulator.calibrate`; do not edit by hand."""\n'
            f"X0 = {fmt(model.x0)}\nPOLY = [\n{poly},\n]\nSHARED_SD = {round(model.shared_sd, 6)!r}\n"
            f"COEFF_SD = {fmt(model.coeff_sd)}\n")
    Path(path).write_text(text)


# ---- correlations -------------------------------------------------------------------------------------------

def correlation_template(rng: np.random.Generator, length: float = 5.0, band_amp: float = 0.8,
                         dense_dof: int = 120) -> np.ndarray:
    """One positive-definite 55×55 correlation matrix with irregular near-diagonal structure."""
    d = np.abs(np.subtract.outer(np.arange(N_COEFF), np.arange(N_COEFF)))
    factor = np.eye(N_COEFF) + band_amp * rng.standard_normal((N_COEFF, N_COEFF)) * np.exp(-d / length)
    cov = factor @ factor.T
    w = rng.standard_normal((N_COEFF, dense_dof))
    cov = cov / np.mean(np.diag(cov)) + (w @ w.T) / dense_dof
    s = 1.0 / np.sqrt(np.diag(cov))
    r = cov * s[:, None] * s[None, :]
    np.fill_diagonal(r, 1.0)
    return r


@dataclass(frozen=True)
class CorrelationTemplates:
    """K correlation templates per band, their flat lower triangles and Cholesky factors."""
    matrices: np.ndarray    # (2, K, 55, 55)
    flat: np.ndarray        # (2, K, 1485) float32
    cholesky: np.ndarray    # (2, K, 55, 55) lower

    @classmethod
    def make(cls, seed: int, k: int = N_TEMPLATES) -> "CorrelationTemplates":
        rng = np.random.default_rng([seed, 0xC022])
        m = np.array([[correlation_template(rng) for _ in range(k)] for _ in range(2)])
        return cls(matrices=m, flat=m[..., TRIL[0], TRIL[1]].astype(np.float32), cholesky=np.linalg.cholesky(m))

    def draw_unit_noise(self, rng: np.random.Generator, template: np.ndarray,
                        shrink: np.ndarray) -> np.ndarray:
        """(N, 110) noise with unit variance and, per band, correlation (1−ε)R_t + εI."""
        n = template.shape[0]
        u = rng.standard_normal((n, 2 * N_COEFF))
        v = rng.standard_normal((n, 2 * N_COEFF))
        out = np.empty((n, 2 * N_COEFF))
        for b in range(2):
            cols = slice(b * N_COEFF, (b + 1) * N_COEFF)
            for t in np.unique(template[:, b]):
                idx = np.flatnonzero(template[:, b] == t)
                out[idx, cols] = u[idx, cols] @ self.cholesky[b, t].T
        a = np.sqrt(1.0 - shrink)
        e = np.sqrt(shrink)
        out[:, :N_COEFF] = a[:, :1] * out[:, :N_COEFF] + e[:, :1] * v[:, :N_COEFF]
        out[:, N_COEFF:] = a[:, 1:] * out[:, N_COEFF:] + e[:, 1:] * v[:, N_COEFF:]
        return out

    def flat_correlations(self, band: int, template: np.ndarray, shrink: np.ndarray) -> np.ndarray:
        """(N, 1485) float32 strict lower triangles of (1−ε)·R_t for one band."""
        out = self.flat[band, template]                      # gather: (N, 1485) float32
        out *= (1.0 - shrink).astype(np.float32)[:, None]    # in place, no float64 temporaries
        return out


# ---- fit columns ----------------------------------------------------------------------------------------------

def n_relevant_bases(coefficients: np.ndarray, errors: np.ndarray, threshold: float = 3.0) -> np.ndarray:
    """1 + index of the last coefficient with |c|/e > threshold (≥ 1). On the 2000 real sources this rule
    reproduces the archive's n_relevant_bases with a median difference of 0 (docs/data-formats.md: 3–53 seen)."""
    sig = np.abs(coefficients) > threshold * errors
    last = N_COEFF - np.argmax(sig[:, ::-1], axis=1)
    return np.where(sig.any(axis=1), last, 1).astype(np.int16)


def relative_shrinking(coefficients: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """‖c[:n_relevant]‖ / ‖c‖ per star."""
    keep = np.arange(N_COEFF)[None, :] < n_relevant[:, None]
    c2 = coefficients**2
    return np.sqrt((c2 * keep).sum(axis=1) / c2.sum(axis=1)).astype(np.float32)


def fit_columns(rng: np.random.Generator, shared_offset: np.ndarray) -> dict[str, np.ndarray]:
    """n_measurements, n_rejected, dof, σ, χ² for one band. Stars with more transits (lower errors, i.e. a
    negative shared log-offset) get more measurements: errors ∝ 1/sqrt(n_transits)."""
    n = shared_offset.size
    transits = np.clip(MEDIAN_TRANSITS * 10.0 ** (-2.0 * shared_offset), 8, 250)
    n_meas = np.round(transits * rng.uniform(0.85, 1.15, n) * SAMPLES_PER_TRANSIT).astype(np.int64)
    n_meas = np.clip(n_meas, N_COEFF + 10, 32000)           # int16 column
    n_rej = rng.binomial(n_meas, 0.005)
    dof = n_meas - N_COEFF
    sigma = np.clip(rng.normal(1.08, 0.07, n), 0.85, None)
    chi2 = sigma**2 * dof
    return {"n_measurements": n_meas.astype(np.int16), "n_rejected_measurements": n_rej.astype(np.int16),
            "degrees_of_freedom": dof.astype(np.int16), "standard_deviation": sigma.astype(np.float32),
            "chi_squared": chi2.astype(np.float32)}
