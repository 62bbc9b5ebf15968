"""Per-star reconstruction statistics (docs/science.md §7) for the analysis, built on ``shared.metrics`` so that
trainer, inferencer and analysis share one definition. Arrays must be in ONE unit system (standardised units,
or flux units — the caller converts x, x̂, σ, ŝ alike; correlations are unit-free).

What this module adds: z-scores from a residual δ directly, and χ² in bounded-memory chunks with stars that
have non-finite inputs set to NaN instead of failing the batch."""
from __future__ import annotations

import numpy as np

from shared import metrics
from shared.xp import N_COEFF, covariance_matrix

BAND_SLICES = metrics.BAND_SLICES
COEFF_NAMES = tuple(f"{b}_{i}" for b in ("bp", "rp") for i in range(N_COEFF))   # 0-based Hermite order


def zscores(delta: np.ndarray, sigma: np.ndarray, scatter: np.ndarray | None = None) -> np.ndarray:
    """R = δ/σ, or R' = δ/√(σ² + ŝ²) when the learned scatter ŝ is given (δ = x̂ − x)."""
    delta = np.asarray(delta, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return metrics.zscores(np.zeros_like(delta), delta, sigma, scatter)


def band_chi2(delta: np.ndarray, sigma: np.ndarray, correlations: np.ndarray | None = None,
              scatter: np.ndarray | None = None, chunk: int = 512) -> np.ndarray:
    """Per-star χ² = δᵀ Σ⁻¹ δ of one band (inputs (N, 55), correlations (N, 1485) strict lower triangle).

    Σ = diag(σ)·R·diag(σ) (+ diag(ŝ²)); without correlations Σ is diagonal. Stars with a non-finite input, or
    whose Σ is not positive definite (shared.metrics.chi2_full_cov), give NaN. Works in chunks of ``chunk``
    stars so memory stays bounded (a 55×55 float64 matrix per star)."""
    delta = np.asarray(delta, np.float64)
    sigma = np.asarray(sigma, np.float64)
    if correlations is None:
        return np.sum(zscores(delta, sigma, scatter) ** 2, axis=1)
    out = np.full(len(delta), np.nan)
    for start in range(0, len(delta), chunk):
        sl = slice(start, start + chunk)
        d, s, r = delta[sl], sigma[sl], np.asarray(correlations[sl], np.float64)
        ok = np.isfinite(d).all(1) & np.isfinite(s).all(1) & np.isfinite(r).all(1)
        if scatter is not None:
            sc = np.asarray(scatter[sl], np.float64)
            ok &= np.isfinite(sc).all(1)
        if not ok.any():
            continue
        cov = covariance_matrix(s[ok], r[ok])
        if scatter is not None:
            idx = np.arange(N_COEFF)
            cov[:, idx, idx] += sc[ok] ** 2
        block = np.full(len(d), np.nan)
        block[ok] = metrics.chi2_full_cov(d[ok], cov)
        out[sl] = block
    return out
