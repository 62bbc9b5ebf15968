"""Reconstruction metrics of docs/science.md §7, implemented once for training reports, inference and analysis.

Everything here works in ONE unit system chosen by the caller: pass x, x̂, errors and scatter all in the
model's standardised units (or all in flux units). Shapes: (N, k) per star and coefficient.
"""
from __future__ import annotations

import numpy as np
import torch

from shared import covariance
from shared.xp import N_COEFF, N_CORR

BAND_SLICES = {"bp": slice(0, N_COEFF), "rp": slice(N_COEFF, 2 * N_COEFF)}


def zscores(x, xhat, x_err, scatter=None):
    """R = (x̂ − x)/σ, or R' = (x̂ − x)/sqrt(σ² + ŝ²) when the learned scatter is given.
    numpy inputs are computed in float64; torch tensors stay tensors (used on the device by inference)."""
    if not isinstance(xhat, torch.Tensor):
        x, xhat, x_err = (np.asarray(a, dtype=np.float64) for a in (x, xhat, x_err))
        scatter = None if scatter is None else np.asarray(scatter, dtype=np.float64)
    var = x_err ** 2 if scatter is None else x_err ** 2 + scatter ** 2
    return (xhat - x) / var ** 0.5


def zscore_rms(z):
    """Per-star root-mean-square z-score over coefficients (NaN-aware). ~1 for a calibrated model."""
    if isinstance(z, torch.Tensor):
        return torch.nanmean(z.square(), dim=-1).sqrt()
    return np.sqrt(np.nanmean(np.asarray(z, dtype=np.float64) ** 2, axis=-1))


def bias_width(z: np.ndarray, robust: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient bias and width of z-scores over stars (axis 0): mean and standard deviation, or
    median and 1.4826·MAD when ``robust`` (insensitive to a few outliers)."""
    z = np.asarray(z, dtype=np.float64)
    if robust:
        med = np.nanmedian(z, axis=0)
        return med, 1.4826 * np.nanmedian(np.abs(z - med), axis=0)
    return np.nanmean(z, axis=0), np.nanstd(z, axis=0)


def mean_squared_z(z: np.ndarray) -> np.ndarray:
    """Per-coefficient mean of z² over stars (axis 0)."""
    return np.nanmean(np.asarray(z, dtype=np.float64) ** 2, axis=0)


def mean_squared_z_ratio(z_a: np.ndarray, z_b: np.ndarray) -> np.ndarray:
    """Per coefficient, mean(z_a²)/mean(z_b²): < 1 where model a reconstructs better than model b.
    (The release labelled this ratio 'RMSE ratio'; it is a ratio of mean squared z-scores.)"""
    return mean_squared_z(z_a) / mean_squared_z(z_b)


def chi2_full_cov(delta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """δᵀ Σ⁻¹ δ per star by a batched Cholesky solve in float64. delta (N, k), cov (N, k, k).
    A star whose Σ is not positive definite gets NaN (never a wrong number)."""
    d = torch.as_tensor(np.asarray(delta, dtype=np.float64))
    c = torch.as_tensor(np.asarray(cov, dtype=np.float64))
    if d.ndim != 2 or c.shape != d.shape + d.shape[-1:]:
        raise ValueError(f"delta (N, k) and cov (N, k, k) expected, got {tuple(d.shape)} and {tuple(c.shape)}")
    chol, info = torch.linalg.cholesky_ex(c)
    y = torch.cholesky_solve(d.unsqueeze(-1), chol).squeeze(-1)
    chi2 = (d * y).sum(-1)
    chi2[info != 0] = float("nan")
    return chi2.numpy()


def chi2_bands(x: np.ndarray, xhat: np.ndarray, x_err: np.ndarray, correlations: dict[str, np.ndarray],
               scatter: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """χ²/dof (dof = 55) per band with the full covariance Σ = D·R·D built from x_err (same units as x) and the
    archive correlations {'bp': (N,1485), 'rp': (N,1485)}; keys 'bp', 'rp' and, with scatter, 'bp_scatter',
    'rp_scatter' for Σ + diag(ŝ²). In float64, by shared.covariance (whitened: one Cholesky of a
    correlation-like matrix per star, band and variant). A star with an error ≤ 0 gets NaN."""
    bands = [b for b in BAND_SLICES if correlations.get(b) is not None]
    if not bands:
        return {}
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    n = len(x)
    flat = {b: torch.as_tensor(np.asarray(correlations[b])) if b in bands else torch.zeros((n, N_CORR))
            for b in BAND_SLICES}
    out = covariance.chi2_bands(t(x), t(xhat), t(x_err), flat["bp"], flat["rp"],
                                None if scatter is None else t(scatter), dtype=torch.float64)
    return {k: (v / N_COEFF).numpy() for k, v in out.items() if k.split("_")[0] in bands}

