"""Stellar populations of the synthetic survey: chemistry, a (Teff, log g) locus, reddening and brightness.

Three populations, placed so that the Patil et al. (2023) boundary in ([Fe/H], [Mg/Fe]) separates them as in
APOGEE DR17 (~28 % high-α among giants):

| population | [M/H]                    | [α/M] sequence                         |
|------------|--------------------------|----------------------------------------|
| thin       | N(−0.05, 0.22), ≤ +0.5   | 0.02 − 0.08·[M/H] ± 0.03  (low-α)      |
| thick      | N(−0.45, 0.22), ≤ +0.25  | 0.27 − 0.12·([M/H] + 0.5) ± 0.03 (high-α) |
| halo       | N(−1.30, 0.35), ≤ −0.6   | 0.18 ± 0.08 (both sides of the boundary) |

The (Teff, log g) locus, E(B−V) and G magnitude are drawn from the same distributions for every population
on purpose: then the spectra can carry [α/M] information only through the α-sensitive features of the SED,
and ``alpha_signal = 0`` really leaves none (no leak through e.g. a population-dependent giant fraction).
The only coupling is the metallicity shift of the giant branch, which depends on [M/H], never on [α/M].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

POPULATIONS = ("thin", "thick", "halo")
DEFAULT_MIX: dict[str, float] = {"thin": 0.70, "thick": 0.26, "halo": 0.04}
#: Fractions of the (Teff, log g) locus: main sequence, red-giant branch, red clump (APOGEE is giant-heavy).
LOCUS_MIX = {"ms": 0.30, "rgb": 0.50, "rc": 0.20}
TEFF_RANGE = (3500.0, 7500.0)
#: Mean of the exponential E(B−V) distribution, and its cap.
EBV_MEAN, EBV_MAX = 0.12, 1.0
#: Slope of the magnitude distribution: dN/dG ∝ 10^(slope·G), truncated to the requested range.
MAG_SLOPE = 0.25


def patil_boundary(fe_h: np.ndarray) -> np.ndarray:
    """[Mg/Fe] of the Patil et al. (2023) high/low-α boundary at [Fe/H] = x (docs/science.md §9)."""
    x = np.asarray(fe_h, float)
    return 0.1754 * x**3 + 0.1119 * x**2 - 0.1253 * x + 0.1353


def is_high_alpha(fe_h: np.ndarray, mg_fe: np.ndarray) -> np.ndarray:
    return np.asarray(mg_fe) > patil_boundary(fe_h)


def is_giant(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Giants as in docs/science.md §9: log g < 5.9 − 4·(Teff/10⁴)."""
    return np.asarray(logg) < 5.9 - 4.0 * np.asarray(teff) / 1e4


def normalise_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    """Validate a population mix and scale it to sum 1. Unknown names or negative weights are errors."""
    if mix is None:
        return dict(DEFAULT_MIX)
    unknown = set(mix) - set(POPULATIONS)
    if unknown:
        raise ValueError(f"unknown population(s) {sorted(unknown)}; choose from {list(POPULATIONS)}")
    weights = {p: float(mix.get(p, 0.0)) for p in POPULATIONS}
    if any(not np.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError(f"population weights must be finite and ≥ 0, got {weights}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("population weights must not all be zero")
    return {p: w / total for p, w in weights.items()}


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``"thin=0.7,thick=0.25,halo=0.05"`` (the CLI form) into a normalised mix."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"population mix entry {part!r} is not NAME=WEIGHT")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"population mix weight {value!r} for {name.strip()!r} is not a number") from None
    return normalise_mix(out)


@dataclass
class Stars:
    """True properties of N stars (the simulator's ground truth)."""
    population: np.ndarray      # int8 index into POPULATIONS
    teff: np.ndarray
    logg: np.ndarray
    m_h: np.ndarray
    alpha_m: np.ndarray
    fe_h: np.ndarray
    mg_fe: np.ndarray
    ebv: np.ndarray
    g_mag: np.ndarray
    carbon: np.ndarray          # star-to-star CN/CH strength factor (mixing on the giant branch); α-free

    def __len__(self) -> int:
        return int(self.teff.shape[0])


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float, n: int) -> np.ndarray:
    out = rng.normal(mean, sd, n)
    bad = (out < lo) | (out > hi)
    while bad.any():  # resampling keeps the shape inside the bounds (no pile-up at the edges)
        out[bad] = rng.normal(mean, sd, int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


def draw_chemistry(rng: np.random.Generator, population: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[M/H] and [α/M] per star given population indices."""
    n = population.size
    m_h = np.empty(n)
    alpha = np.empty(n)
    for k, name in enumerate(POPULATIONS):
        idx = np.flatnonzero(population == k)
        if not idx.size:
            continue
        if name == "thin":
            m = _truncated_normal(rng, -0.05, 0.22, -1.0, 0.5, idx.size)
            a = 0.02 - 0.08 * m + rng.normal(0, 0.03, idx.size)
        elif name == "thick":
            m = _truncated_normal(rng, -0.45, 0.22, -1.3, 0.25, idx.size)
            a = 0.27 - 0.12 * (m + 0.5) + rng.normal(0, 0.03, idx.size)
        else:
            m = _truncated_normal(rng, -1.3, 0.35, -2.5, -0.6, idx.size)
            a = 0.18 + rng.normal(0, 0.08, idx.size)
        m_h[idx], alpha[idx] = m, a
    return m_h, alpha


def draw_locus(rng: np.random.Generator, m_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Teff, log g) on a main sequence + red-giant branch + red clump; the giant branch is hotter at low [M/H]."""
    n = m_h.size
    kind = rng.choice(3, size=n, p=[LOCUS_MIX["ms"], LOCUS_MIX["rgb"], LOCUS_MIX["rc"]])
    teff = np.empty(n)
    logg = np.empty(n)
    ms, rgb, rc = (kind == 0), (kind == 1), (kind == 2)
    # Main sequence: Teff uniform-ish, log g falls from ~4.75 (M dwarfs) to ~4.05 (F stars).
    t = rng.uniform(3600.0, 7400.0, ms.sum())
    teff[ms] = t
    logg[ms] = 4.75 - 0.70 * (t - 3600.0) / 3800.0 + rng.normal(0, 0.08, t.size)
    # Red-giant branch: log g from ~0.8 at the tip to ~3.5 at the base; ~ +200 K per dex lower metallicity.
    u = rng.power(1.6, rgb.sum())               # more stars on the lower (higher-gravity) branch
    lg = 0.8 + 2.7 * u
    teff[rgb] = 3650.0 + 1350.0 * (lg - 0.8) / 2.7 - 200.0 * m_h[rgb] + rng.normal(0, 60, u.size)
    logg[rgb] = lg + rng.normal(0, 0.05, u.size)
    # Red clump: a tight clump at ~4750 K (hotter when metal-poor), log g ~2.45.
    teff[rc] = 4750.0 - 200.0 * m_h[rc] + rng.normal(0, 90, rc.sum())
    logg[rc] = rng.normal(2.45, 0.08, rc.sum())
    return np.clip(teff, *TEFF_RANGE), np.clip(logg, 0.5, 5.0)


def draw_magnitudes(rng: np.random.Generator, n: int, mag_range: tuple[float, float]) -> np.ndarray:
    """G from dN/dG ∝ 10^(MAG_SLOPE·G) on [lo, hi] (inverse-CDF sampling)."""
    lo, hi = mag_range
    k = MAG_SLOPE * np.log(10.0)
    u = rng.random(n)
    return lo + np.log1p(u * np.expm1(k * (hi - lo))) / k


def draw_stars(rng: np.random.Generator, n: int, mix: Mapping[str, float] | None = None,
               mag_range: tuple[float, float] = (9.0, 17.5)) -> Stars:
    """Draw n stars: population, chemistry, locus, E(B−V), G. FE_H/MG_FE follow [M/H]/[α/M] with small scatter."""
    mix = normalise_mix(mix)
    population = rng.choice(len(POPULATIONS), size=n, p=[mix[p] for p in POPULATIONS]).astype(np.int8)
    m_h, alpha = draw_chemistry(rng, population)
    teff, logg = draw_locus(rng, m_h)
    ebv = np.minimum(rng.exponential(EBV_MEAN, n), EBV_MAX)
    g_mag = draw_magnitudes(rng, n, mag_range)
    # APOGEE's [Fe/H] tracks [M/H]; [Mg/Fe] tracks [α/M] (Mg is its dominant α element), each with small scatter.
    fe_h = m_h + rng.normal(0.0, 0.02, n)
    mg_fe = alpha + 0.01 + rng.normal(0.0, 0.02, n)
    carbon = np.exp(rng.normal(0.0, 0.15, n))
    return Stars(population=population, teff=teff, logg=logg, m_h=m_h, alpha_m=alpha, fe_h=fe_h, mg_fe=mg_fe,
                 ebv=ebv, g_mag=g_mag, carbon=carbon)
