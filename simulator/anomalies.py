"""Injected anomalies: a known fraction of stars whose spectrum or photometry no normal star would give, so the
anomaly score (shared/anomaly.py) can be validated where the truth is known. Off by default.

Kinds (equally likely), and what the truth table's ``anomaly_strength`` holds for each:
- ``emission``: an Hα (656.3 nm) emission line added to the SED, before the G scaling (the star keeps its
  drawn G); strength = the line's share of the G-band flux, log-uniform in [0.5 %, 5 %] (equivalent widths
  of roughly 20–200 Å, Be stars to T Tauri stars).
- ``binary``: an unresolved pair — another star of the block at least 1500 K hotter or cooler, seen through
  the primary's extinction, its light added before the G scaling (the drawn G is the pair's); strength = the
  G flux ratio companion/primary, uniform in [0.3, 1].
- ``band``: one band (BP or RP, at random) replaced by that band of another star of the block at least 1500 K
  hotter or cooler, rescaled to the same first coefficient (a corrupted or mis-assigned band); strength =
  ‖Δc‖/‖c‖ of the band.
- ``gflux``: the G photometry off by ±[0.2, 1] mag (a blend or a bad G), the spectrum untouched; strength = |ΔG|.

Anomalies draw from their own random stream per block, ``default_rng([seed, k, ANOMALY_STREAM])``: the
normal stars of a survey with anomalies are bit-identical to the same survey without, and a survey with
``anomaly_fraction = 0`` is the default survey, byte for byte (no draw, no extra truth column).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .populations import Stars
from .spectra import NoiseFree, noise_free_coefficients, sed_model, sed_to_coefficients
from .xp_basis import xp_basis

KINDS = ("emission", "binary", "band", "gflux")
ANOMALY_STREAM = 15
H_ALPHA_NM = 656.28
EMISSION_SHARE = (0.005, 0.05)
BINARY_RATIO = (0.3, 1.0)
MIN_DTEFF = 1500.0
GFLUX_DMAG = (0.2, 1.0)


def check_fraction(fraction: float) -> float:
    if not (np.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"anomaly_fraction must lie in [0, 1], got {fraction!r}")
    return float(fraction)


@dataclass
class Anomalies:
    """The anomalies of one block: kind per star ('' = normal), strength (NaN = normal), and the stream."""
    kind: np.ndarray
    strength: np.ndarray
    rng: np.random.Generator

    def truth_columns(self) -> dict[str, np.ndarray]:
        return {"anomaly": self.kind, "anomaly_strength": self.strength}


def choose(seed: int, k: int, n: int, fraction: float) -> Anomalies:
    rng = np.random.default_rng([seed, k, ANOMALY_STREAM])
    hit = rng.random(n) < fraction
    kind = np.where(hit, np.asarray(KINDS)[rng.integers(0, len(KINDS), n)], "")
    return Anomalies(kind=kind, strength=np.full(n, np.nan), rng=rng)


def _g(coefficients: np.ndarray) -> np.ndarray:
    return coefficients @ xp_basis().passbands[:, 0]


def _emission_unit(coefficients: str) -> np.ndarray:
    """Coefficients (110,) of an Hα line of unit synthetic G flux: a Gaussian of the XP line width (ridge: the
    approximate LSF, as the SED's own features) or intrinsically narrow (forward: the instrument's LSF)."""
    from .sed import lsf_sigma
    model = sed_model(coefficients)
    wl = model.wavelength
    sigma = float(lsf_sigma(np.array([H_ALPHA_NM]))[0]) if coefficients == "ridge" else 1.0
    profile = np.exp(-0.5 * ((wl - H_ALPHA_NM) / sigma) ** 2)
    unit = profile @ sed_to_coefficients(coefficients)
    return unit / _g(unit)


def inject_spectra(an: Anomalies, stars: Stars, truth: NoiseFree, alpha_signal: float,
                   coefficients: str) -> NoiseFree:
    """The noise-free coefficients (and synthetic magnitudes) with the spectral anomalies applied."""
    c = truth.coefficients.copy()
    rng = an.rng
    rows = np.flatnonzero(an.kind == "emission")
    if rows.size:
        share = np.exp(rng.uniform(*np.log(EMISSION_SHARE), rows.size))
        c[rows] += (share * _g(c[rows]))[:, None] * _emission_unit(coefficients)[None, :]
        c[rows] /= (1.0 + share)[:, None]                      # back to the drawn G
        an.strength[rows] = share
    rows = np.flatnonzero(an.kind == "binary")
    if rows.size:
        partner = np.array([_partner(rng, stars.teff, i) for i in rows])
        companion = replace(stars, **{f: getattr(stars, f)[partner] for f in stars.__dataclass_fields__})
        companion = replace(companion, ebv=stars.ebv[rows])
        comp = noise_free_coefficients(companion, alpha_signal, coefficients).coefficients
        ratio = rng.uniform(*BINARY_RATIO, rows.size)
        total = c[rows] + (ratio * _g(c[rows]) / _g(comp))[:, None] * comp
        c[rows] = total / (1.0 + ratio)[:, None]
        an.strength[rows] = ratio
    rows = np.flatnonzero(an.kind == "band")
    if rows.size:
        band = rng.integers(0, 2, rows.size)
        other = [_partner(rng, stars.teff, i) for i in rows]
        for i, b, o in zip(rows, band, other):
            sl = slice(55 * b, 55 * (b + 1))
            new = c[o, sl] * (c[i, sl][0] / c[o, sl][0])
            an.strength[i] = np.linalg.norm(new - c[i, sl]) / np.linalg.norm(c[i, sl])
            c[i, sl] = new
    changed = np.isin(an.kind, ("emission", "binary", "band"))
    mags = truth.mags.copy()
    if changed.any():
        mags[changed] = xp_basis().synthetic_mags(c[changed])
    return NoiseFree(coefficients=c, mags=mags)


def _partner(rng: np.random.Generator, teff: np.ndarray, i: int) -> int:
    """Another star of the block at least MIN_DTEFF away in Teff (any other star if there is none)."""
    far = np.flatnonzero(np.abs(teff - teff[i]) >= MIN_DTEFF)
    if far.size == 0:
        far = np.delete(np.arange(teff.size), i)
    return int(far[rng.integers(0, far.size)]) if far.size else i


def inject_photometry(an: Anomalies, photometry: dict[str, np.ndarray]) -> None:
    """Wrong G photometry for the ``gflux`` anomalies (in place)."""
    rows = np.flatnonzero(an.kind == "gflux")
    if not rows.size:
        return
    dmag = an.rng.uniform(*GFLUX_DMAG, rows.size) * an.rng.choice([-1.0, 1.0], rows.size)
    photometry["phot_g_mean_mag"][rows] += dmag.astype(np.float32)
    photometry["phot_g_mean_flux"][rows] *= 10.0 ** (-0.4 * dmag)
    an.strength[rows] = np.abs(dmag)
