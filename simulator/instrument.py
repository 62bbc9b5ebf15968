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

The tables are not the inverse of DR3's calibration. GaiaXPy calibrates with inverse bases Bₖ (F(λ) =
hc/(A·R·λ)·Σ cₖ Bₖ(u(λ))); the tables applied to the calibrated spectrum of each published basis function give a
55 × 55 matrix M far from the identity (diagonal 0.2–1.3), even for one band alone, with no merge, truncation or
extrapolation. No convention fixes that (checked: T vs Tᵀ, the Hermite scale of both LSF dimensions, the du/dλ
Jacobian, spline vs linear dispersion, shifts and stretches of u). So the tables give real stars' coefficients back
only to ≲ 5 % of c₀ (10–100 σ), and their internal spectra fall short towards the band edges.

Corrections (``corrected=``):
- "inverse-bases" (the default): the tables followed by X = M⁺, which makes forward(calibrate(c)) = c for
  one band; parameter-free, and it carries GaiaXPy's absolute photon scale (COUNT_SCALE and R cancel). M is
  singular in 1 BP and 3 RP directions (basis functions living where the band has no response, like BP's
  beyond ~720 nm, which real BP spectra still fill at ~1–2 % of their peak); those are filled linearly from the
  first FILL_ORDERS corrected coefficients (``fit_null_fill`` on bright real sources, stored in
  ``instrument_calibration.py`` by ``python -m simulator.calibrate --instrument``).
- "edge": the earlier empirical patch, internal spectra multiplied by w(u), the median ratio real / model over
  bright real sources (``fit_edge_correction``), re-expanded in Hermite functions: h' = W·h with
  Wₙₘ = ∫ φₙ(x) w(a·x + b) φₘ(x) dx.
- False: the tables alone.

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
#: GaiaXPy's photon conversion: h·c (J·nm) over the telescope's pupil area A = 0.7278 m².
HC_OVER_AREA = 6.62607015e-34 * 2.99792458e8 * 1e9 / 0.7278
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
#: GaiaXPy's inverse bases (its config folder), and the pseudo-inverse cut of the consistency correction.
INVERSE_BASES = {"bp": "bpC03_v375wi_bases.csv", "rp": "rpC03_v142r_bases.csv"}
CONSISTENCY_RCOND = 1e-3
#: The null fill regresses on the first FILL_ORDERS corrected coefficients only: they carry signal in every
#: source (on all 55 the fill follows noise, with weights up to 10⁷; held-out residuals are the same with 4).
FILL_ORDERS = 4
#: The corrections ``forward_operator`` offers (``corrected=True`` is DEFAULT_CORRECTION).
CORRECTIONS = ("edge", "inverse-bases")
DEFAULT_CORRECTION = "inverse-bases"


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


def _instrument_response(band: str, wavelength: np.ndarray) -> np.ndarray:
    """(55, n) published-basis coefficients of one photon per nm at each wavelength: T·L·φ₁₀₀(x(u(λ)))."""
    model = band_model(band)
    a, b = HERMITE_SCALE[band]
    u = np.interp(wavelength, *model.dispersion)
    return model.rotation @ (model.lsf @ hermite_functions((u - b) / a, N_LSF))


def kernel(band: str, wavelength: np.ndarray) -> np.ndarray:
    """(55, n) published-basis coefficients (e⁻/s, COUNT_SCALE included) per unit of F(λ)·dλ at each wavelength,
    from the tables alone."""
    lam = np.asarray(wavelength, np.float64)
    weight = lam * np.interp(lam, *band_model(band).response, left=0.0, right=0.0)
    return COUNT_SCALE[band] * _instrument_response(band, lam) * weight


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


@dataclass(frozen=True)
class InverseBases:
    """GaiaXPy's DR3 external-calibration inverse bases of one band: a calibrated spectrum is
    F(λ) = hc / (A·R(λ)·λ) · Σₖ cₖ Bₖ(u(λ)) with Bₖ = (T · C · φ₅₅(x))ₖ, x = (u − b)/a."""
    coefficients: np.ndarray       # (55, 55) C: inverse bases in Hermite functions
    rotation: np.ndarray           # (55, 55) T, the same rotation as the instrument tables'
    scale: tuple[float, float]     # (a, b) of their Hermite argument


def _parse_vector(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.strip().strip("()").split(",")], np.float64)


def inverse_bases(band: str) -> InverseBases:
    """Read GaiaXPy's shipped inverse-bases table of ``band`` (numbers only; nothing is evaluated)."""
    import csv

    from .xp_basis import _import_gaiaxpy_quietly
    _import_gaiaxpy_quietly()
    from gaiaxpy.config.paths import config_path
    path = Path(config_path) / INVERSE_BASES[band]
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh))
    n = int(row["nBases"])
    coefficients = _parse_vector(row["inverseBasesCoefficients"]).reshape(n, int(row["nInverseBasesCoefficients"]))
    rotation = _parse_vector(row["transformationMatrix"]).reshape(n, int(row["nTransformedBases"]))
    scale = (float(row["normRangeMax"]) - float(row["normRangeMin"])) / (float(row["pwlRangeMax"]) -
                                                                          float(row["pwlRangeMin"]))
    offset = float(row["normRangeMin"]) - float(row["pwlRangeMin"]) * scale
    return InverseBases(coefficients=coefficients, rotation=rotation, scale=(1.0 / scale, -offset / scale))


def calibrated_photons(band: str, wavelength: np.ndarray) -> np.ndarray:
    """(55, n) photon rate per nm, A·R(λ)·λ·F(λ)/hc, of GaiaXPy's calibrated spectrum of each published basis
    function of ``band`` alone (no merge), zero where the response is not positive, as GaiaXPy's calibrate()."""
    from scipy.interpolate import CubicSpline
    model = band_model(band)
    inv = inverse_bases(band)
    lam = np.asarray(wavelength, np.float64)
    u = CubicSpline(*model.dispersion)(lam)            # GaiaXPy interpolates the dispersion by a cubic spline
    a, b = inv.scale
    inside = np.interp(lam, *model.response, left=0.0, right=0.0) > 0
    return inv.rotation @ inv.coefficients @ hermite_functions((u - b) / a, N_COEFF) * inside


@lru_cache(maxsize=2)
def consistency_parts(band: str) -> tuple[np.ndarray, np.ndarray]:
    """X (55, 55) such that the tables followed by X give back c from GaiaXPy's calibrated spectrum of c, and
    the directions of c (55, n) that no calibrated spectrum reaches.

    X = M⁺ with M[k] = tables(calibrated basis function k), counted in photons (COUNT_SCALE and R cancel;
    X carries the absolute scale). M is singular: the pseudo-inverse drops singular values below
    CONSISTENCY_RCOND of the largest (one in BP, three in RP: published basis functions that live where the
    band has no response, like BP's beyond ~720 nm). Each dropped direction's sign is fixed (largest component
    positive) so that the stored fill (``NULL_FILL``) stays attached to it."""
    lo, hi = band_model(band).response[0][[0, -1]]
    lam = np.arange(lo, hi, FINE_STEP)
    m = calibrated_photons(band, lam) @ _instrument_response(band, lam).T * FINE_STEP
    u, sv, _ = np.linalg.svd(m)
    dropped = u[:, sv < CONSISTENCY_RCOND * sv[0]]
    dropped = dropped * np.sign(dropped[np.abs(dropped).argmax(axis=0), np.arange(dropped.shape[1])])
    x = np.linalg.pinv(m, rcond=CONSISTENCY_RCOND) / (COUNT_SCALE[band] * HC_OVER_AREA)
    return x, dropped


def consistency_matrix(band: str, fill: np.ndarray | None = None) -> np.ndarray:
    """(55, 55) correction applied after the tables' coefficients: X, then the dropped directions filled in
    linearly from the first FILL_ORDERS others, c ↦ c + (c·G)·Uᵀ with G = ``fill`` (55, n) (by default the stored
    NULL_FILL)."""
    x, dropped = consistency_parts(band)
    if fill is None:
        from .instrument_calibration import NULL_FILL
        fill = np.zeros((N_COEFF, dropped.shape[1]))
        stored = np.asarray(NULL_FILL[band], float)
        fill[:stored.shape[0]] = stored
    if fill.shape != (N_COEFF, dropped.shape[1]):
        raise ValueError(f"the {band.upper()} null fill is {fill.shape}, the consistency correction drops "
                         f"{dropped.shape[1]} directions: regenerate it (python -m simulator.calibrate --instrument)")
    return x @ (np.eye(N_COEFF) + fill @ dropped.T)


def fit_null_fill(coefficients110: np.ndarray, sampled_flux: np.ndarray,
                  wavelength: np.ndarray) -> dict[str, np.ndarray]:
    """G per band (55, n): least squares of the real coefficients along the dropped directions on the
    consistency-corrected prediction (``consistency_parts``), over the given (calibration) sources."""
    pred = extend_sampled_sed(wavelength, sampled_flux) @ forward_operator(corrected=False)
    out = {}
    for i, band in enumerate(BANDS):
        sl = slice(i * N_COEFF, (i + 1) * N_COEFF)
        x, dropped = consistency_parts(band)
        if coefficients110.shape[0] < 2 * N_COEFF:
            raise ValueError(f"too few sources ({coefficients110.shape[0]}) to fit the null fill")
        g = np.zeros((N_COEFF, dropped.shape[1]))
        g[:FILL_ORDERS] = np.linalg.lstsq((pred[:, sl] @ x)[:, :FILL_ORDERS], coefficients110[:, sl] @ dropped,
                                          rcond=None)[0]
        out[band] = g
    return out


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


@lru_cache(maxsize=6)
def _operator(grid_key: tuple[float, ...], correction: str | None) -> np.ndarray:
    grid = np.asarray(grid_key)
    fine = np.arange(grid[0], grid[-1] + 0.5 * FINE_STEP, FINE_STEP)
    fine = fine[fine <= grid[-1]]
    step = np.full(fine.size, FINE_STEP)          # trapezoid weights on the fine grid
    step[[0, -1]] *= 0.5
    hats = _hat_weights(grid, fine) * step         # (n_grid, n_fine)
    parts = []
    for band in BANDS:
        part = hats @ kernel(band, fine).T
        if correction == "edge":
            part = part @ edge_matrix(band).T
        elif correction == "inverse-bases":
            part = part @ consistency_matrix(band)
        parts.append(part)
    out = np.concatenate(parts, axis=1)
    out.setflags(write=False)
    return out


def _correction_name(corrected: bool | str) -> str | None:
    if corrected is True:
        return DEFAULT_CORRECTION
    if corrected is False:
        return None
    if corrected not in CORRECTIONS:
        raise ValueError(f"corrected must be True, False or one of {CORRECTIONS}, got {corrected!r}")
    return str(corrected)


def forward_operator(grid: np.ndarray = FORWARD_GRID, corrected: bool | str = True) -> np.ndarray:
    """(n_grid, 110) map from an SED sampled on ``grid`` (nm, linear in between) to BP then RP coefficients
    (e⁻/s for F in W m⁻² nm⁻¹). ``corrected``: True (DEFAULT_CORRECTION), False (the tables alone), "edge"
    (w(u)) or "inverse-bases" (consistency with GaiaXPy's calibration). Built once per grid and correction
    (0.1–0.5 s) and cached; read-only."""
    grid = np.asarray(grid, np.float64)
    _validate_grid(grid)
    return _operator(tuple(grid.tolist()), _correction_name(corrected))


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


def _format_rows(values: np.ndarray, per_line: int = 10) -> str:
    text = [f"{float(v):.5f}" for v in np.ravel(values)]
    return ",\n        ".join(", ".join(text[i:i + per_line]) for i in range(0, len(text), per_line))


def write_instrument_calibration(w: dict[str, np.ndarray], fill: dict[str, np.ndarray], target: Path,
                                 source: str) -> None:
    """Write the edge correction w(u) and the null fill G (row-major, 55 × n per band) as a Python module."""
    header = textwrap.wrap("Empirical parts of the XP instrument model: the edge correction w(u) of its internal "
                           "spectra (instrument.fit_edge_correction) and the null fill of the inverse-bases "
                           f"correction (instrument.fit_null_fill), fitted on {source}.", 110)
    lines = ['"""' + header[0], *header[1:],
             'Generated by `python -m simulator.calibrate --instrument`; do not edit by hand."""',
             f"U_GRID = [{EDGE_U_GRID[0]:g} + i for i in range({EDGE_U_GRID.size})]", "W = {"]
    for band in BANDS:
        lines.append(f'    "{band}": [\n        ' + _format_rows(w[band]) + "\n    ],")
    lines += ["}", f"#: per band: G's first {FILL_ORDERS} rows (the rest are zero), one value per dropped direction",
              "NULL_FILL = {"]
    for band in BANDS:
        rows = [("[" + ", ".join(f"{float(v):.6e}" for v in row) + "]") for row in fill[band][:FILL_ORDERS]]
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
