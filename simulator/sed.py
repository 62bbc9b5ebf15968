"""Spectral energy distributions at XP resolution on GaiaXPy's 336–1020 nm grid.

SED = Planck(Teff) × exp(−τ) × 10^(−0.4·A_λ), where τ is the sum of
- metal-line blanketing in the blue, growing with [M/H] and with falling Teff (never with [α/M]);
- broad Gaussian absorption features (XP resolves only ~5–15 nm), each with a strength that depends on
  Teff, log g and the abundance of the element that forms it;
and A_λ is the Cardelli, Clayton & Mathis (1989) extinction law with R_V = 3.1.

α-element features (Ca II H&K, Mg I b, TiO, the Ca II triplet, Mg I 880 nm) see the abundance
[M/H] + alpha_signal·[α/M]; all others see [M/H] only. [α/M] enters nowhere else, so alpha_signal = 0 makes the
SED an exact function of (Teff, log g, [M/H], E(B−V), carbon factor): the spectra carry no α information.
Strengths: the atomic lines that XP barely blends (Ca II triplet, Mg I 880.7, Na D, the Balmer lines) have the
equivalent widths measured in real stars (solar atlas values, Ca II triplet of dwarfs and giants after Jones et
al. 1984, Lick Na D; tests/unit/test_sim_science.py checks them); the broad blends (Ca II H&K with the
Fe/Mg 383 nm and CN bands, the G band with Fe 438, Mg b with MgH and Fe 527) and the TiO bands are set to the
depths of the median real XP spectra at matched colour (docs/figures/sim_vs_real_spectra.png), not fitted to
model atmospheres. Each feature is a Gaussian whose width stands for its blend at 2 nm sampling; only its
equivalent width matters to XP.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

R_V = 3.1
#: The unresolved metal-line blanketing between the named features,
#: τ = BLANKET_DEPTH·10^(0.7[M/H])·(5000 K/Teff)³·exp(−(λ − BLANKET_ANCHOR_NM)/BLANKET_SCALE_NM): for the Sun it
#: removes ~17 % of the continuum at 400 nm, ~10 % at 450 nm, ~6 % at 500 nm, for a 4400 K giant ~35 %, ~22 %,
#: ~13 % (the named blends add to it). Anchored at a fixed wavelength, not at the grid's first sample, so the SED
#: does not depend on the grid it is sampled on (the forward model's grid starts 10 nm bluer than GaiaXPy's).
BLANKET_DEPTH = 0.6
BLANKET_ANCHOR_NM = 336.0
BLANKET_SCALE_NM = 90.0
HC_OVER_K_NM = 1.438777e7      # hc/k in nm·K


@dataclass(frozen=True)
class Feature:
    name: str
    centre_nm: float
    sigma_nm: float
    alpha: bool                 # formed by an α element (O, Mg, Ca, Ti): sensitive to [α/M]


FEATURES: tuple[Feature, ...] = (
    Feature("balmer_jump", 364.6, 3.0, False),          # a step, not a Gaussian (see _profiles)
    Feature("H10", 379.8, 3.0, False),                # the converging Balmer series: the flux between the
    Feature("H9", 383.5, 3.0, False),                 # jump and ~400 nm is depressed by overlapping lines
    Feature("H8", 388.9, 3.0, False),
    Feature("H_epsilon", 397.0, 3.5, False),
    Feature("H_delta", 410.2, 4.0, False),
    Feature("H_gamma", 434.0, 4.0, False),
    Feature("H_beta", 486.1, 4.5, False),
    Feature("H_alpha", 656.3, 5.0, False),
    Feature("CaII_HK", 395.0, 5.0, True),
    Feature("CN_388", 388.3, 5.0, False),
    Feature("FeMg_383", 383.0, 4.0, False),           # the Fe I / Mg I 382–384 nm blend of G and K stars
    Feature("CN_422", 421.6, 6.0, False),
    Feature("CH_G", 430.5, 5.0, False),
    Feature("Fe_4383", 438.3, 4.0, False),
    Feature("MgI_b", 517.5, 6.0, True),               # with the MgH band and Fe blends at XP resolution
    Feature("Fe_5270", 527.0, 5.0, False),
    Feature("NaI_D", 589.3, 5.0, False),
    Feature("TiO_476", 476.0, 8.0, True),
    Feature("TiO_496", 496.0, 8.0, True),
    Feature("TiO_545", 545.0, 8.0, True),
    Feature("TiO_590", 590.0, 8.0, True),
    Feature("TiO_626", 626.0, 8.0, True),
    Feature("TiO_672", 672.0, 8.0, True),
    Feature("TiO_710", 710.0, 9.0, True),
    Feature("TiO_768", 768.0, 9.0, True),
    Feature("TiO_845", 845.0, 10.0, True),
    Feature("TiO_890", 890.0, 10.0, True),
    Feature("CaII_8498", 849.8, 5.0, True),
    Feature("CaII_8542", 854.2, 5.0, True),
    Feature("CaII_8662", 866.2, 5.0, True),
    Feature("MgI_8807", 880.7, 5.0, True),
)
ALPHA_FEATURES = tuple(f.name for f in FEATURES if f.alpha)


def ccm_extinction(wavelength_nm: np.ndarray, r_v: float = R_V) -> np.ndarray:
    """A_λ / E(B−V) from Cardelli, Clayton & Mathis (1989), IR and optical branches (0.3 ≤ 1/λ[µm] ≤ 3.3)."""
    x = 1000.0 / np.asarray(wavelength_nm, float)
    if np.any((x < 0.3) | (x > 3.3)):
        raise ValueError("CCM law implemented for 303–3333 nm only")
    a = np.empty_like(x)
    b = np.empty_like(x)
    ir = x < 1.1
    a[ir] = 0.574 * x[ir] ** 1.61
    b[ir] = -0.527 * x[ir] ** 1.61
    y = x[~ir] - 1.82
    a[~ir] = np.polyval([0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y)
    b[~ir] = np.polyval([-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y)
    return r_v * a + b


def lsf_sigma(wavelength_nm: np.ndarray) -> np.ndarray:
    """Approximate Gaussian σ (nm) of the XP line-spread function: FWHM rising from ~4 nm at 330 nm to ~16 nm at
    640 nm in BP, and from ~15 nm to ~25 nm over 640–1020 nm in RP (order of magnitude of Carrasco et al.
    2021, Montegriffo et al. 2023)."""
    wl = np.asarray(wavelength_nm, float)
    fwhm = np.where(wl < 640.0, 4.0 + 12.0 * (wl - 330.0) / 310.0, 15.0 + 10.0 * (wl - 640.0) / 380.0)
    return fwhm / 2.3548


def _profiles(wavelength_nm: np.ndarray, through_lsf: bool = True) -> np.ndarray:
    """(n_features, n_wavelengths) optical-depth profiles of unit intrinsic central depth, seen through the XP
    line-spread function: σ_eff² = σ² + σ_LSF², depth × σ/σ_eff (the equivalent width is conserved); or
    intrinsic (σ_eff = σ) when the instrument model applies the real LSF afterwards."""
    wl = np.asarray(wavelength_nm, float)
    out = np.empty((len(FEATURES), wl.size))
    for i, f in enumerate(FEATURES):
        sigma_eff = float(np.hypot(f.sigma_nm, lsf_sigma(f.centre_nm))) if through_lsf else f.sigma_nm
        if f.name == "balmer_jump":   # the Balmer continuum: absorption blueward of 364.6 nm, smooth edge
            out[i] = 1.0 / (1.0 + np.exp((wl - f.centre_nm) / sigma_eff))
        else:
            out[i] = f.sigma_nm / sigma_eff * np.exp(-0.5 * ((wl - f.centre_nm) / sigma_eff) ** 2)
    return out


def feature_strengths(teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray, alpha_m: np.ndarray,
                      carbon: np.ndarray, alpha_signal: float) -> np.ndarray:
    """(N, n_features) central optical depths.

    Metallic lines scale like the square root of the abundance (the flat part of the curve of growth):
    10^(0.5·[X/H]) with [X/H] = [M/H] (+ alpha_signal·[α/M] for α elements).
    """
    teff, logg, m_h = (np.asarray(v, float) for v in (teff, logg, m_h))
    cool = np.clip((7000.0 - teff) / 2500.0, 0.0, 1.4)
    hot = np.clip((teff - 4000.0) / 3500.0, 0.0, 1.0) ** 1.5
    tio = np.clip((4100.0 - teff) / 600.0, 0.0, 1.0) ** 1.5
    giant = np.clip((3.8 - logg) / 2.5, 0.0, 1.0)
    dwarf = np.clip((logg - 3.0) / 1.5, 0.0, 1.0)
    z_m = 10.0 ** (0.5 * m_h)
    if alpha_signal == 0.0:
        z_a = z_m                     # α enters nowhere, not even as 0·[α/M] (NaN-safe, bit-identical)
    else:
        z_a = 10.0 ** (0.5 * (m_h + alpha_signal * np.asarray(alpha_m, float)))
    ca_triplet = z_a * (0.85 + 0.3 * giant) * (0.7 + 0.3 * np.minimum(cool, 1.0))
    strength = {
        "balmer_jump": 0.35 * hot * (0.6 + 0.4 * dwarf),
        "H10": 0.035 * hot, "H9": 0.045 * hot, "H8": 0.06 * hot, "H_epsilon": 0.07 * hot,
        "H_delta": 0.065 * hot, "H_gamma": 0.075 * hot, "H_beta": 0.09 * hot, "H_alpha": 0.08 * hot,
        "CaII_HK": 0.70 * z_a * (0.3 + cool),
        "CN_388": 0.20 * z_m * carbon * giant * cool,
        "CN_422": 0.06 * z_m * carbon * giant * cool,
        "CH_G": 0.11 * z_m * carbon * cool,
        "FeMg_383": 0.30 * z_m * cool, "Fe_4383": 0.09 * z_m * cool, "Fe_5270": 0.05 * z_m * cool,
        "MgI_b": 0.12 * z_a * cool * (0.7 + 0.5 * dwarf),
        "NaI_D": 0.036 * z_m * cool * (0.8 + dwarf),
        "TiO_710": 0.55 * z_a * tio,
        "CaII_8498": 0.0145 * ca_triplet,
        "CaII_8542": 0.040 * ca_triplet,
        "CaII_8662": 0.030 * ca_triplet,
        "MgI_8807": 0.006 * z_a * cool * (0.5 + dwarf),
    }
    out = np.empty((teff.size, len(FEATURES)))
    for i, f in enumerate(FEATURES):
        if f.name in strength:
            out[:, i] = strength[f.name]
        else:                          # the weaker TiO bands: a fixed fraction of the 710 nm band
            out[:, i] = 0.3 * z_a * tio
    return out


class SEDModel:
    """Vectorised SEDs on a fixed wavelength grid (precomputes profiles and the extinction curve).

    through_lsf: features pre-broadened by the approximate XP LSF (for the ridge fit to the inverse bases);
    False for intrinsic SEDs that the instrument model (instrument.py) disperses itself.
    correction: an optional smooth factor on top, as log f(λ) of each star's α-free continuum (the forward
    model's empirical correction, sed_correction.py); it sees only Teff, [M/H] and E(B−V), never [α/M]."""

    def __init__(self, wavelength_nm: np.ndarray, through_lsf: bool = True,
                 correction: Callable[[np.ndarray], np.ndarray] | None = None):
        self.wavelength = np.asarray(wavelength_nm, float)
        self.profiles = _profiles(self.wavelength, through_lsf)
        self.extinction = ccm_extinction(self.wavelength)
        self.blanket_shape = np.exp(-(self.wavelength - BLANKET_ANCHOR_NM) / BLANKET_SCALE_NM)
        self.correction = correction

    def _planck(self, teff: np.ndarray) -> np.ndarray:
        """Planck B_λ up to a constant, normalised at 550 nm per star so the numbers stay O(1)."""
        wl = self.wavelength
        return (550.0 / wl) ** 5 * np.expm1(HC_OVER_K_NM / (550.0 * teff))[:, None] \
            / np.expm1(HC_OVER_K_NM / (wl[None, :] * teff[:, None]))

    def _continuum_tau(self, teff: np.ndarray, m_h, ebv) -> np.ndarray:
        blanket = BLANKET_DEPTH * 10.0 ** (0.7 * np.asarray(m_h, float)) * (5000.0 / teff) ** 3
        return blanket[:, None] * self.blanket_shape \
            + 0.4 * np.log(10.0) * np.asarray(ebv, float)[:, None] * self.extinction

    def continuum(self, teff, m_h, ebv) -> np.ndarray:
        """(N, n_wavelengths) the α-free continuum: Planck × blanketing × extinction, no features."""
        teff = np.asarray(teff, float)
        return self._planck(teff) * np.exp(-self._continuum_tau(teff, m_h, ebv))

    def __call__(self, teff, logg, m_h, alpha_m, ebv, carbon, alpha_signal: float = 1.0) -> np.ndarray:
        """(N, n_wavelengths) SEDs in arbitrary flux-density units (the caller scales them to a magnitude)."""
        teff = np.asarray(teff, float)
        planck = self._planck(teff)
        blanket = BLANKET_DEPTH * 10.0 ** (0.7 * np.asarray(m_h, float)) * (5000.0 / teff) ** 3
        tau = feature_strengths(teff, logg, m_h, alpha_m, carbon, alpha_signal) @ self.profiles
        tau += blanket[:, None] * self.blanket_shape
        tau += 0.4 * np.log(10.0) * np.asarray(ebv, float)[:, None] * self.extinction
        if self.correction is not None:
            tau -= self.correction(planck * np.exp(-self._continuum_tau(teff, m_h, ebv)))
        return planck * np.exp(-tau)
