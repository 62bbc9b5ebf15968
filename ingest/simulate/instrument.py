"""Gaia DR3's XP instrument model: the linear map from an SED to BP/RP coefficients in the published bases.

For one band, a source of spectral energy distribution F(λ) (W m⁻² nm⁻¹) gives the internally calibrated
spectrum, developed in Hermite functions φₙ of x = (u − b)/a along the pseudo-wavelength u:

    hₙ = s · ∫ F(λ) · λ · R(λ) · Σₘ Lₙₘ φₘ((u(λ) − b)/a) dλ,     published coefficients = T · h

u(λ) is the dispersion relation, R(λ) the instrument response, L (55 × 100) the line-spread function developed
in Hermite functions (a monochromatic source at u₀ gives the internal coefficients L · φ₁₀₀((u₀ − b)/a)), λ
turns energy into photon counts, and T (55 × 55, orthogonal) rotates the Hermite functions into the published
XP bases. These are the DR3 tables of Weiler et al. (2023, A&A 671, A52) on top of the calibration of
Montegriffo et al. (2023), vendored with their licence in ``reference/gaia_xp/instrument_model/``.

s folds the telescope area, hc and the unit conventions into one number per band: ``COUNT_SCALE``, fitted on
real sources (``fit_count_scale``). The simulator does not need it (it scales every star to its drawn G);
comparisons with real coefficients do.

The integral is done once, on a fine grid, for SEDs given as samples on a coarse grid and linearly
interpolated in between: ``forward_operator(grid)`` is then one (n_grid, 110) matrix, cached per grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from shared.xp import BANDS, N_COEFF

MODEL_DIR = Path(__file__).resolve().parents[2] / "reference" / "gaia_xp" / "instrument_model"
FILES = {"bp": {"dispersion": "bpC03_v375wi_dispersion.csv", "response": "bpC03_v375wi_response.csv",
                "lsf": "LSFModel_BP.csv", "rotation": "BasisTransformationMatrix_BP.csv"},
         "rp": {"dispersion": "rpC03_v142r_dispersion.csv", "response": "rpC03_v142r_response.csv",
                "lsf": "LSFModel_RP.csv", "rotation": "BasisTransformationMatrix_RP.csv"}}
#: DR3 scaling of the Hermite argument, x = (u − b)/a: (a, b) per band (Weiler et al. 2023).
HERMITE_SCALE = {"bp": (3.062231, 30.00986), "rp": (3.020529, 30.00292)}
N_LSF = 100                 # Hermite functions of the LSF's source-position dimension
#: e⁻/s per unit of ∫ F·λ·R·L·φ dλ (F in W m⁻² nm⁻¹, λ in nm), fitted on the 2000 real sources with G < 13
#: (``fit_count_scale``); BP and RP agree to 3 %.
COUNT_SCALE = {"bp": 3.80e14, "rp": 3.92e14}
#: Integration step (nm) of the fine grid on which the operator is built.
FINE_STEP = 0.1
#: The simulator's SED grid for the forward model: covers both responses (R > 10⁻³ of its peak over
#: 327.5–1069.5 nm), 2 nm steps like GaiaXPy's sampling.
FORWARD_GRID = np.arange(326.0, 1080.0 + 1e-9, 2.0)


@dataclass(frozen=True)
class BandModel:
    """The instrument tables of one band."""
    dispersion: np.ndarray      # (2, n): λ [nm], pseudo-wavelength u
    response: np.ndarray        # (2, m): λ [nm], R(λ)
    lsf: np.ndarray             # (55, 100)
    rotation: np.ndarray        # (55, 55): published = rotation @ Hermite

    def support(self, fraction: float = 1e-3) -> tuple[float, float]:
        """The wavelength range (nm) where the response exceeds ``fraction`` of its peak."""
        lam, r = self.response
        inside = lam[r > fraction * r.max()]
        return float(inside.min()), float(inside.max())


def _read_table(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A plain comma-separated numeric table of the expected shape (numbers only; nothing is evaluated)."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if shape[1] == -1:
        shape = (shape[0], table.shape[1])
    if table.shape != shape or not np.all(np.isfinite(table)):
        raise ValueError(f"{path}: expected a finite {shape[0]} × {shape[1]} table, got {table.shape}")
    return table


@lru_cache(maxsize=2)
def band_model(band: str, model_dir: Path = MODEL_DIR) -> BandModel:
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    files = {k: Path(model_dir) / v for k, v in FILES[band].items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"instrument model table(s) missing: {missing} (vendored in "
                                f"reference/gaia_xp/instrument_model/ of the repository)")
    model = BandModel(dispersion=_read_table(files["dispersion"], (2, -1)),
                      response=_read_table(files["response"], (2, -1)),
                      lsf=_read_table(files["lsf"], (N_COEFF, N_LSF)),
                      rotation=_read_table(files["rotation"], (N_COEFF, N_COEFF)))
    if not np.allclose(model.rotation @ model.rotation.T, np.eye(N_COEFF), atol=1e-8):
        raise ValueError(f"{files['rotation']}: the basis transformation is not orthogonal")
    return model


def hermite_functions(x: np.ndarray, n: int) -> np.ndarray:
    """(n, len(x)) orthonormal Hermite functions φ₀…φₙ₋₁ at x, by the stable three-term recurrence."""
    x = np.asarray(x, np.float64)
    out = np.empty((n, x.size))
    out[0] = np.pi ** -0.25 * np.exp(-0.5 * x * x)
    if n > 1:
        out[1] = np.sqrt(2.0) * x * out[0]
    for k in range(2, n):
        out[k] = np.sqrt(2.0 / k) * x * out[k - 1] - np.sqrt((k - 1) / k) * out[k - 2]
    return out


def kernel(band: str, wavelength: np.ndarray) -> np.ndarray:
    """(55, n) published-basis coefficients per unit of F(λ)·dλ at each wavelength (times COUNT_SCALE)."""
    model = band_model(band)
    lam = np.asarray(wavelength, np.float64)
    a, b = HERMITE_SCALE[band]
    u = np.interp(lam, *model.dispersion)
    weight = lam * np.interp(lam, *model.response, left=0.0, right=0.0)
    hermite = model.lsf @ hermite_functions((u - b) / a, N_LSF)          # (55, n) internal coefficients
    return COUNT_SCALE[band] * (model.rotation @ hermite) * weight


def _hat_weights(grid: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """(n_grid, n_fine) weights of linear interpolation from the grid onto the fine points (zero outside)."""
    w = np.zeros((grid.size, fine.size))
    j = np.clip(np.searchsorted(grid, fine, side="right") - 1, 0, grid.size - 2)
    t = (fine - grid[j]) / (grid[j + 1] - grid[j])
    inside = (fine >= grid[0]) & (fine <= grid[-1])
    cols = np.nonzero(inside)[0]
    w[j[cols], cols] = 1.0 - t[cols]
    w[j[cols] + 1, cols] = t[cols]
    return w


def _validate_grid(grid: np.ndarray) -> None:
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
        raise ValueError("the wavelength grid must be a finite, strictly increasing 1-D array of ≥ 2 points")
    for band in BANDS:
        lo, hi = band_model(band).support()
        if grid[0] > lo or grid[-1] < hi:
            raise ValueError(f"the wavelength grid {grid[0]:g}–{grid[-1]:g} nm does not cover the {band.upper()} "
                             f"response ({lo:g}–{hi:g} nm): the SED outside it would count as zero")


@lru_cache(maxsize=4)
def _operator(grid_key: tuple[float, ...]) -> np.ndarray:
    grid = np.asarray(grid_key)
    fine = np.arange(grid[0], grid[-1] + 0.5 * FINE_STEP, FINE_STEP)
    fine = fine[fine <= grid[-1]]
    step = np.full(fine.size, FINE_STEP)          # trapezoid weights on the fine grid
    step[[0, -1]] *= 0.5
    hats = _hat_weights(grid, fine) * step         # (n_grid, n_fine)
    out = np.concatenate([hats @ kernel(band, fine).T for band in BANDS], axis=1)
    out.setflags(write=False)
    return out


def forward_operator(grid: np.ndarray = FORWARD_GRID) -> np.ndarray:
    """(n_grid, 110) map from an SED sampled on ``grid`` (nm, linear in between) to BP then RP coefficients
    (e⁻/s for F in W m⁻² nm⁻¹). Built once per grid (~0.3 s) and cached; read-only."""
    grid = np.asarray(grid, np.float64)
    _validate_grid(grid)
    return _operator(tuple(grid.tolist()))


def extend_sampled_sed(wavelength: np.ndarray, flux: np.ndarray, grid: np.ndarray = FORWARD_GRID) -> np.ndarray:
    """SEDs (N, len(wavelength)) resampled onto ``grid``: linear inside, and beyond the ends continued as a
    power law through the last 6 samples at each end (GaiaXPy samples 336–1020 nm; the responses reach 327–1070 nm)."""
    wl = np.asarray(wavelength, np.float64)
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    out = np.stack([np.interp(grid, wl, f) for f in flux])
    for edge, beyond in ((slice(0, 6), grid < wl[0]), (slice(-6, None), grid > wl[-1])):
        if not beyond.any():
            continue
        lw = np.log(wl[edge])
        lf = np.log(np.clip(flux[:, edge], np.finfo(float).tiny, None))
        slope = (lf[:, -1] - lf[:, 0]) / (lw[-1] - lw[0])
        anchor = 0 if edge.start == 0 else -1
        out[:, beyond] = np.exp(lf[:, [anchor]] + slope[:, None] * (np.log(grid[beyond]) - lw[anchor]))
    return out


def fit_count_scale(coefficients110: np.ndarray, sampled_flux: np.ndarray, wavelength: np.ndarray) -> dict[str, float]:
    """The COUNT_SCALE per band that best maps calibrated spectra back to their own first coefficients
    (median over stars of c₀ / forward(F)₀ with COUNT_SCALE = 1)."""
    grid_flux = extend_sampled_sed(wavelength, sampled_flux)
    pred = grid_flux @ forward_operator()
    out = {}
    for i, band in enumerate(BANDS):
        k0 = i * N_COEFF
        out[band] = float(np.median(coefficients110[:, k0] / pred[:, k0]) * COUNT_SCALE[band])
    return out
