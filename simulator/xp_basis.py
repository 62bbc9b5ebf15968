"""The real Gaia DR3 XP bases, read from GaiaXPy's shipped configuration, and the linear maps that turn a
sampled SED into BP/RP coefficients.

GaiaXPy ships, in ``gaiaxpy/config/filters/XpFilter_v375wiv142r.xml``, the 55 BP and 55 RP basis functions
sampled on 336–1020 nm in 2 nm steps (the design matrices D, flux = cᵀ·D in W m⁻² nm⁻¹) and the BP/RP merge
weights. The Gaia DR3 Vega filter file of the same version holds the G, BP and RP passbands as linear
functionals of the coefficients, with their zero points: we use them to put each simulated star at its drawn
G magnitude and to give it BP and RP magnitudes consistent with its spectrum.

Inverting D is ill-posed (plain least squares over a band has a condition number ~1e7 and returns
coefficients unlike any real star), so each band is fitted only where its merge weight exceeds 0.5, with a
ridge penalty that grows with basis order: a smooth SED then gets the decaying coefficient pattern of real
spectra, and a real star's own sampled spectrum round-trips to ~1 %.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from shared.xp import BANDS, N_COEFF

#: GaiaXPy's DR3 basis version (BP v375wi, RP v142r).
BASIS_VERSION = "v375wiv142r"
#: Ridge strength relative to the mean squared basis norm, and how fast it grows with order k/54.
RIDGE_STRENGTH = 1e-2
RIDGE_POWER = 2.0


def _import_gaiaxpy_quietly():
    """Import gaiaxpy without letting it change matplotlib's global settings: its plotting module turns on
    `text.usetex`, which breaks every later figure of this process on a machine without LaTeX."""
    import matplotlib
    saved = dict(matplotlib.rcParams)
    try:
        import gaiaxpy.config.paths  # noqa: F401  (imported lazily: importing gaiaxpy is slow)
        import gaiaxpy.core.xml_utils  # noqa: F401
    finally:
        matplotlib.rcParams.update(saved)


def _config_dir() -> str:
    _import_gaiaxpy_quietly()
    import gaiaxpy.config.paths as paths
    return os.path.join(paths.config_path, "filters")


@dataclass(frozen=True)
class XPBasis:
    """The sampled DR3 bases and everything derived from them, loaded once per process (see ``xp_basis()``).

    wavelength: (343,) nm. design: band → (55, 343) design matrix. merge: band → (343,) merge weights.
    projection: (343, 110) map from a sampled SED (W m⁻² nm⁻¹) to BP then RP coefficients.
    passbands: (110, 3) map from coefficients to synthetic G, BP, RP fluxes; zero_points: (3,) such that
    mag = −2.5·log10(flux) + zero_point.
    """
    wavelength: np.ndarray
    design: dict[str, np.ndarray]
    merge: dict[str, np.ndarray]
    band_mask: dict[str, np.ndarray]
    projection: np.ndarray
    passbands: np.ndarray
    zero_points: np.ndarray

    def sample(self, coefficients110: np.ndarray) -> np.ndarray:
        """Merged calibrated spectra (N, 343) from (N, 110) coefficients, like GaiaXPy's ``calibrate()``."""
        c = np.atleast_2d(coefficients110)
        bp = c[:, :N_COEFF] @ self.design["bp"]
        rp = c[:, N_COEFF:] @ self.design["rp"]
        return bp * self.merge["bp"] + rp * self.merge["rp"]

    def synthetic_mags(self, coefficients110: np.ndarray) -> np.ndarray:
        """(N, 3) synthetic Gaia DR3 G, BP, RP Vega magnitudes of (N, 110) coefficients."""
        flux = np.atleast_2d(coefficients110) @ self.passbands
        with np.errstate(divide="ignore", invalid="ignore"):
            return -2.5 * np.log10(flux) + self.zero_points


def ridge_projection(design: np.ndarray, mask: np.ndarray, strength: float = RIDGE_STRENGTH,
                     power: float = RIDGE_POWER) -> np.ndarray:
    """The (343, 55) map F ↦ argmin_c ‖F[mask] − (cᵀD)[mask]‖² + Σ_k α_k c_k², α_k = strength·s²·(k/54)^power.

    s² is the mean squared norm of the basis functions over the mask, which makes ``strength`` unit-free.
    """
    d = design[:, mask]                                   # (55, n)
    gram = d @ d.T
    scale = np.trace(gram) / N_COEFF
    alpha = strength * scale * (np.arange(N_COEFF) / (N_COEFF - 1)) ** power
    solve = np.linalg.solve(gram + np.diag(alpha), d)     # (55, n)
    out = np.zeros((design.shape[1], N_COEFF))
    out[mask] = solve.T
    return out


@lru_cache(maxsize=1)
def xp_basis() -> XPBasis:
    """Load GaiaXPy's DR3 sampled bases and the DR3 Vega passbands (≈2 s the first time, cached after)."""
    _import_gaiaxpy_quietly()
    from gaiaxpy.core.xml_utils import get_array_text, get_file_root, get_xp_merge, get_xp_sampling_matrix

    root = get_file_root(os.path.join(_config_dir(), f"XpFilter_{BASIS_VERSION}.xml"))
    wavelength, bp_merge, rp_merge = get_xp_merge(root)
    _, n_samples = get_array_text(root, "bands")
    # GaiaXPy's helper returns the transpose of the (n_samples, 55) table, i.e. the (55, 343) design matrix.
    design = {b: np.ascontiguousarray(get_xp_sampling_matrix(root, b, n_samples), dtype=np.float64) for b in BANDS}
    merge = {"bp": np.asarray(bp_merge, float), "rp": np.asarray(rp_merge, float)}
    if design["bp"].shape != (N_COEFF, wavelength.size):
        raise RuntimeError(f"unexpected GaiaXPy basis shape {design['bp'].shape} for {wavelength.size} samples")
    band_mask = {b: merge[b] > 0.5 for b in BANDS}
    projection = np.concatenate([ridge_projection(design[b], band_mask[b]) for b in BANDS], axis=1)

    vega = get_file_root(os.path.join(_config_dir(), f"XpFilter_GaiaDr3Vega_{BASIS_VERSION}.xml"))
    names, n_bands = get_array_text(vega, "bands")
    if list(names) != ["G", "BP", "RP"]:
        raise RuntimeError(f"unexpected bands {names} in GaiaXPy's Gaia DR3 Vega filter file")
    _, w_bp, w_rp = get_xp_merge(vega)
    passbands = np.concatenate([get_xp_sampling_matrix(vega, "bp", n_bands) * np.asarray(w_bp, float),
                                get_xp_sampling_matrix(vega, "rp", n_bands) * np.asarray(w_rp, float)], axis=0)
    zero_points = np.array([float(v.text) for v in vega.find("zeropoints")])
    return XPBasis(wavelength=np.asarray(wavelength, float), design=design, merge=merge, band_mask=band_mask,
                   projection=projection, passbands=passbands, zero_points=zero_points)

