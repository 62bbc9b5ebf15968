"""From true stellar properties to XP records: SED → noise-free coefficients at the drawn G → observed
coefficients with calibrated, correlated noise and the archive's fit columns. Everything is vectorised over
stars (one matrix product for the projection, one Cholesky factor per correlation template)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from shared.xp import BAND_SCALAR_DTYPES, BANDS, N_COEFF, XPBatch

from .instrument import FORWARD_GRID, forward_operator
from .noise import SHRINK_RANGE, CorrelationTemplates, ErrorModel, fit_columns, n_relevant_bases, relative_shrinking
from .populations import Stars
from .sed import SEDModel
from .sed_correction import stored_sed_correction
from .xp_basis import xp_basis

BASIS_FUNCTION_ID = {"bp": 56, "rp": 57}
#: Gaia DR3's solution_id of the XP continuous mean spectra (as in the real archive records).
SOLUTION_ID = 4545469030156206080
#: Probability that a record lacks its BP (resp. RP) band; BP is missing more often (faint blue flux).
MISSING_RATE = {"bp": 0.004, "rp": 0.001}


#: How noise-free coefficients are made from an SED: "forward" (the default) multiplies the SED by its empirical
#: correction (sed_correction.py) and passes it through the DR3 instrument model (instrument.py: dispersion,
#: response, LSF, Hermite functions, rotation to the published bases); "forward-uncorrected" passes the schematic
#: SED alone (for comparison); "ridge" fits coefficients to the sampled SED on GaiaXPy's inverse bases (xp_basis.py).
COEFFICIENT_MODELS = ("forward", "ridge", "forward-uncorrected")
DEFAULT_COEFFICIENTS = "forward"
FORWARD_MODELS = ("forward", "forward-uncorrected")


@lru_cache(maxsize=3)
def sed_model(coefficients: str = DEFAULT_COEFFICIENTS) -> SEDModel:
    """The SED grid and model each coefficient model needs: GaiaXPy's grid with features pre-broadened by an
    approximate LSF for the ridge fit; a grid covering both responses with intrinsic features for the forward
    models (the instrument's own LSF broadens them), with the stored empirical correction for "forward"."""
    if check_coefficient_model(coefficients) == "forward":
        correction = stored_sed_correction(FORWARD_GRID, forward_operator(FORWARD_GRID))
        return SEDModel(FORWARD_GRID, through_lsf=False, correction=correction)
    if coefficients == "forward-uncorrected":
        return SEDModel(FORWARD_GRID, through_lsf=False)
    return SEDModel(xp_basis().wavelength)


def check_coefficient_model(coefficients: str) -> str:
    if coefficients not in COEFFICIENT_MODELS:
        raise ValueError(f"coefficients must be one of {list(COEFFICIENT_MODELS)}, got {coefficients!r}")
    return coefficients


def sed_to_coefficients(coefficients: str = DEFAULT_COEFFICIENTS) -> np.ndarray:
    """The cached (n_grid, 110) linear map from an SED on ``sed_model(coefficients).wavelength`` to BP then RP
    coefficients (arbitrary units until scaled to a magnitude)."""
    if check_coefficient_model(coefficients) in FORWARD_MODELS:
        return forward_operator(FORWARD_GRID)
    return xp_basis().projection


@dataclass
class NoiseFree:
    coefficients: np.ndarray    # (N, 110) BP then RP, at the star's G magnitude
    mags: np.ndarray            # (N, 3) synthetic G, BP, RP of those coefficients (G equals the drawn G)


def noise_free_coefficients(stars: Stars, alpha_signal: float = 1.0,
                            coefficients: str = DEFAULT_COEFFICIENTS) -> NoiseFree:
    """Each star's SED turned into DR3 coefficients (``coefficients``: one of COEFFICIENT_MODELS) and scaled so
    its synthetic G equals its drawn G."""
    basis = xp_basis()
    operator = sed_to_coefficients(coefficients)
    sed = sed_model(coefficients)(stars.teff, stars.logg, stars.m_h, stars.alpha_m, stars.ebv, stars.carbon,
                                  alpha_signal=alpha_signal)
    unit = sed @ operator                                      # (N, 110) for the SED in arbitrary units
    g_unit = unit @ basis.passbands[:, 0]
    scale = 10.0 ** ((basis.zero_points[0] - stars.g_mag) / 2.5) / g_unit
    scaled = unit * scale[:, None]
    return NoiseFree(coefficients=scaled, mags=basis.synthetic_mags(scaled))


def observe(rng: np.random.Generator, truth: NoiseFree, error_model: ErrorModel,
            templates: CorrelationTemplates, source_id: np.ndarray, with_correlations: bool = True) -> XPBatch:
    """Noisy XP records (an XPBatch) for noise-free coefficients."""
    n = truth.coefficients.shape[0]
    errors, shared = error_model.draw(rng, truth.mags[:, 1:])
    template = rng.integers(0, templates.cholesky.shape[1], size=(n, 2))
    shrink = rng.uniform(*SHRINK_RANGE, size=(n, 2))
    noise = templates.draw_unit_noise(rng, template, shrink)
    observed = truth.coefficients + errors * noise
    missing_u = rng.random(n)
    missing = {"bp": missing_u < MISSING_RATE["bp"],
               "rp": (missing_u >= MISSING_RATE["bp"]) & (missing_u < MISSING_RATE["bp"] + MISSING_RATE["rp"])}

    cols: dict[str, np.ndarray] = {"source_id": np.asarray(source_id, np.int64),
                                   "solution_id": np.full(n, SOLUTION_ID, np.int64)}
    for b, band in enumerate(BANDS):
        sl = slice(b * N_COEFF, (b + 1) * N_COEFF)
        c = observed[:, sl]
        e = errors[:, sl].astype(np.float32)
        fit = fit_columns(rng, shared)
        n_rel = n_relevant_bases(c, e)
        band_cols = {
            "basis_function_id": np.full(n, BASIS_FUNCTION_ID[band], np.int16),
            "n_parameters": np.full(n, N_COEFF, np.int16),
            **fit,
            "n_relevant_bases": n_rel,
            "relative_shrinking": relative_shrinking(c, n_rel),
        }
        miss = missing[band]
        cols[f"{band}_missing"] = miss
        for field, dtype in BAND_SCALAR_DTYPES.items():
            v = band_cols[field].astype(dtype)
            v[miss] = np.nan if np.issubdtype(dtype, np.floating) else -1
            cols[f"{band}_{field}"] = v
        c = c.copy()
        c[miss] = np.nan
        e[miss] = np.nan
        cols[f"{band}_coefficients"] = c
        cols[f"{band}_coefficient_errors"] = e
        if with_correlations:
            corr = templates.flat_correlations(b, template[:, b], shrink[:, b])
            corr[miss] = np.nan
            cols[f"{band}_coefficient_correlations"] = corr
    return XPBatch(cols)

