"""Gaia DR3's XP instrument model: the linear map from an SED to BP/RP coefficients in the published bases.

For one band, a source of spectral energy distribution F(λ) (W m⁻² nm⁻¹) gives the internally calibrated
spectrum, developed in Hermite functions φₙ of x = (u − b)/a along the pseudo-wavelength u:

    hₙ = s · ∫ F(λ) · λ · R(λ) · Σₘ Lₙₘ φₘ((u(λ) − b)/a) dλ,     published coefficients = T · h

u(λ) is the dispersion relation, R(λ) the instrument response, L (55 × 100) the line-spread function developed
in Hermite functions (a monochromatic source at u₀ gives the internal coefficients L · φ₁₀₀((u₀ − b)/a)), λ
turns energy into photon counts, and T (55 × 55, orthogonal) rotates the Hermite functions into the published
XP bases. These are the DR3 tables of Weiler et al. (2023, A&A 671, A52) on top of the calibration of
Montegriffo et al. (2023), vendored with their licence in ``reference/data/gaia_xp/instrument_model/``.

s folds the telescope area, hc and the unit conventions into one number per band: ``COUNT_SCALE``, fitted on
real sources (``fit_count_scale``). The simulator does not need it (it scales every star to its drawn G);
comparisons with real coefficients do.

Edge correction. The tables alone give internal spectra that match real ones to 1–7 % in the core of each
band but fall 10–80 % short towards the edges (BP beyond ~700 nm and below ~385 nm, RP below ~625 nm and
beyond ~1000 nm), where real internal spectra keep extended wings a few % of the peak high (wings of the real
LSF and response that a 100-term Hermite development and the tabulated response do not carry). That deficit
spreads over every order at ~1 % of c₀, above the real mid-order coefficients (0.05–0.3 % of c₀). So the
internal spectrum is multiplied by w(u), the median ratio real / model over bright real sources
(``fit_edge_correction``, stored in ``instrument_calibration.py`` by ``python -m simulator.calibrate
--instrument``), re-expanded in Hermite functions:
h' = W·h with Wₙₘ = ∫ φₙ(x) w(a·x + b) φₘ(x) dx. ``forward_operator(corrected=False)`` gives the tables alone.

The integral is done once, on a fine grid, for SEDs given as samples on a coarse grid and linearly
interpolated in between: ``forward_operator(grid)`` is then one (n_grid, 110) matrix, cached per grid.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from shared.xp import BANDS, N_COEFF

MODEL_DIR = Path(__file__).resolve().parents[1] / "reference" / "data" / "gaia_xp" / "instrument_model"
FILES = {"bp": {"dispersion": "bpC03_v375wi_dispersion.csv", "response": "bpC03_v375wi_response.csv",
                "lsf": "LSFModel_BP.csv", "rotation": "BasisTransformationMatrix_BP.csv"},
         "rp": {"dispersion": "rpC03_v142r_dispersion.csv", "response": "rpC03_v142r_response.csv",
                "lsf": "LSFModel_RP.csv", "rotation": "BasisTransformationMatrix_RP.csv"}}
#: DR3 scaling of the Hermite argument, x = (u − b)/a: (a, b) per band (Weiler et al. 2023).
HERMITE_SCALE = {"bp": (3.062231, 30.00986), "rp": (3.020529, 30.00292)}
N_LSF = 100                 # Hermite functions of the LSF's source-position dimension
#: e⁻/s per unit of ∫ F·λ·R·L·φ dλ (F in W m⁻² nm⁻¹, λ in nm), fitted on the bright real sources
#: (``fit_count_scale`` on ``calibration_sources``); BP and RP agree to 3 %.
COUNT_SCALE = {"bp": 3.809e14, "rp": 3.920e14}
#: Integration step (nm) of the fine grid on which the operator is built.
FINE_STEP = 0.1
#: The simulator's SED grid for the forward model: covers both responses (R > 10⁻³ of its peak over
#: 327.5–1069.5 nm), 2 nm steps like GaiaXPy's sampling.
FORWARD_GRID = np.arange(326.0, 1080.0 + 1e-9, 2.0)
#: Largest power-law index used to continue a sampled SED beyond its ends (extend_sampled_sed).
MAX_EDGE_INDEX = 20.0
#: Edge correction: its pseudo-wavelength grid (samples), the floor (fraction of the real spectrum's peak)
#: below which a ratio is too uncertain to use, the allowed range of w, and the calibration sources' G limit.
EDGE_U_GRID = np.arange(-10.0, 70.0 + 1e-9, 1.0)
EDGE_FLOOR = 2e-3
EDGE_CLIP = (0.2, 5.0)
CALIBRATION_G_MAX = 13.5


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
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric comma-separated table ({exc})") from None
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
                                f"reference/data/gaia_xp/instrument_model/ of the repository)")
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
    """(55, n) published-basis coefficients (e⁻/s, COUNT_SCALE included) per unit of F(λ)·dλ at each wavelength,
    from the tables alone."""
    model = band_model(band)
    lam = np.asarray(wavelength, np.float64)
    a, b = HERMITE_SCALE[band]
    u = np.interp(lam, *model.dispersion)
    weight = lam * np.interp(lam, *model.response, left=0.0, right=0.0)
    hermite = model.lsf @ hermite_functions((u - b) / a, N_LSF)          # (55, n) internal coefficients
    return COUNT_SCALE[band] * (model.rotation @ hermite) * weight


def edge_matrix(band: str, u_grid: np.ndarray | None = None, w: np.ndarray | None = None) -> np.ndarray:
    """(55, 55) published-basis map of "multiply the internal spectrum by w(u)" (stored w by default)."""
    if u_grid is None or w is None:
        from .instrument_calibration import U_GRID, W
        u_grid, w = np.asarray(U_GRID, float), np.asarray(W[band], float)
    model = band_model(band)
    a, b = HERMITE_SCALE[band]
    x = np.linspace(-20.0, 20.0, 8001)           # φ₅₄ lives within |x| < 11; w is constant beyond its grid
    phi = hermite_functions(x, N_COEFF)
    hermite = (phi * np.interp(a * x + b, u_grid, w)) @ phi.T * (x[1] - x[0])
    return model.rotation @ hermite @ model.rotation.T


def internal_spectra(band: str, coefficients55: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N, len(u)) internal spectra at pseudo-wavelengths u from published coefficients of one band."""
    a, b = HERMITE_SCALE[band]
    return (np.atleast_2d(coefficients55) @ band_model(band).rotation) @ hermite_functions((np.asarray(u) - b) / a,
                                                                                           N_COEFF)


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
def _operator(grid_key: tuple[float, ...], corrected: bool) -> np.ndarray:
    grid = np.asarray(grid_key)
    fine = np.arange(grid[0], grid[-1] + 0.5 * FINE_STEP, FINE_STEP)
    fine = fine[fine <= grid[-1]]
    step = np.full(fine.size, FINE_STEP)          # trapezoid weights on the fine grid
    step[[0, -1]] *= 0.5
    hats = _hat_weights(grid, fine) * step         # (n_grid, n_fine)
    parts = []
    for band in BANDS:
        part = hats @ kernel(band, fine).T
        parts.append(part @ edge_matrix(band).T if corrected else part)
    out = np.concatenate(parts, axis=1)
    out.setflags(write=False)
    return out


def forward_operator(grid: np.ndarray = FORWARD_GRID, corrected: bool = True) -> np.ndarray:
    """(n_grid, 110) map from an SED sampled on ``grid`` (nm, linear in between) to BP then RP coefficients
    (e⁻/s for F in W m⁻² nm⁻¹), with the edge correction unless ``corrected=False``. Built once per grid
    (~0.2 s) and cached; read-only."""
    grid = np.asarray(grid, np.float64)
    _validate_grid(grid)
    return _operator(tuple(grid.tolist()), bool(corrected))


def extend_sampled_sed(wavelength: np.ndarray, flux: np.ndarray, grid: np.ndarray = FORWARD_GRID) -> np.ndarray:
    """SEDs (N, len(wavelength)) resampled onto ``grid``: linear inside, and beyond the ends continued as a
    power law through the last 6 samples at each end (GaiaXPy samples 336–1020 nm; the responses reach
    327–1070 nm). Where those samples are not all positive (noisy faint spectra) the edge value is carried flat;
    the power-law index is capped at ±MAX_EDGE_INDEX."""
    wl = np.asarray(wavelength, np.float64)
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    out = np.empty((flux.shape[0], grid.size))
    for i, f in enumerate(flux):
        out[i] = np.interp(grid, wl, f)
    for edge, anchor, beyond in ((slice(0, 6), 0, grid < wl[0]), (slice(-6, None), -1, grid > wl[-1])):
        if not beyond.any():
            continue
        f = flux[:, edge]
        positive = np.all(f > 0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            index = np.log(f[:, -1] / f[:, 0]) / np.log(wl[edge][-1] / wl[edge][0])
        index = np.clip(np.where(positive, index, 0.0), -MAX_EDGE_INDEX, MAX_EDGE_INDEX)
        out[:, beyond] = flux[:, [anchor]] * (grid[beyond] / wl[anchor]) ** index[:, None]
    return out


def fit_count_scale(coefficients110: np.ndarray, sampled_flux: np.ndarray, wavelength: np.ndarray) -> dict[str, float]:
    """The COUNT_SCALE per band that best maps calibrated spectra back to their own first coefficients through
    the tables alone (median over stars of c₀ / forward(F)₀)."""
    grid_flux = extend_sampled_sed(wavelength, sampled_flux)
    pred = grid_flux @ forward_operator(corrected=False)
    out = {}
    for i, band in enumerate(BANDS):
        k0 = i * N_COEFF
        out[band] = float(np.median(coefficients110[:, k0] / pred[:, k0]) * COUNT_SCALE[band])
    return out



def fit_edge_correction(coefficients110: np.ndarray, sampled_flux: np.ndarray,
                        wavelength: np.ndarray) -> dict[str, np.ndarray]:
    """w(u) per band on EDGE_U_GRID: the median over stars of real / model internal spectrum, where both exceed
    EDGE_FLOOR of the real peak; carried flat beyond the last usable point and clipped to EDGE_CLIP."""
    pred = extend_sampled_sed(wavelength, sampled_flux) @ forward_operator(corrected=False)
    out = {}
    for i, band in enumerate(BANDS):
        sl = slice(i * N_COEFF, (i + 1) * N_COEFF)
        real = internal_spectra(band, coefficients110[:, sl], EDGE_U_GRID)
        model = internal_spectra(band, pred[:, sl], EDGE_U_GRID)
        floor = EDGE_FLOOR * real.max(axis=1, keepdims=True)
        usable = (real > floor) & (model > floor)
        ratio = np.where(usable, real / np.where(usable, model, 1.0), np.nan)
        known = usable.any(axis=0)
        if known.sum() < 2:
            raise ValueError(f"too few usable sources to fit the {band.upper()} edge correction")
        w = np.full(EDGE_U_GRID.size, np.nan)
        w[known] = np.nanmedian(ratio[:, known], axis=0)
        out[band] = np.clip(np.interp(EDGE_U_GRID, EDGE_U_GRID[known], w[known]), *EDGE_CLIP)
    return out


def write_edge_calibration(w: dict[str, np.ndarray], target: Path, source: str) -> None:
    header = textwrap.wrap("Edge correction w(u) of the XP instrument model's internal spectra "
                           f"(instrument.fit_edge_correction), fitted on {source}.", 110)
    lines = ['"""' + header[0], *header[1:],
             'Generated by `python -m simulator.calibrate --instrument`; do not edit by hand."""',
             f"U_GRID = [{EDGE_U_GRID[0]:g} + i for i in range({EDGE_U_GRID.size})]", "W = {"]
    for band in BANDS:
        values = [f"{float(v):.5f}" for v in w[band]]
        rows = [", ".join(values[i:i + 10]) for i in range(0, len(values), 10)]
        lines.append(f'    "{band}": [\n        ' + ",\n        ".join(rows) + "\n    ],")
    lines.append("}")
    target.write_text("\n".join(lines) + "\n")


def calibration_sources(coefficients110: np.ndarray) -> np.ndarray:
    """Which real sources calibrate COUNT_SCALE and the edge correction: both bands complete, synthetic G < 13.5
    (the bright end, where errors are < 0.1 % of c₀)."""
    from .xp_basis import xp_basis
    ok = np.all(np.isfinite(coefficients110), axis=1)
    g = xp_basis().synthetic_mags(np.where(ok[:, None], coefficients110, 1.0))[:, 0]
    return ok & (g < CALIBRATION_G_MAX)
