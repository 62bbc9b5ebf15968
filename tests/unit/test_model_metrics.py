"""docs/science.md §7 metrics against values worked out by hand on tiny inputs."""
from __future__ import annotations

import numpy as np
import torch

from shared.metrics import (
    bias_width,
    chi2_bands,
    chi2_full_cov,
    mean_squared_z,
    mean_squared_z_ratio,
    zscore_rms,
    zscores,
)
from shared.xp import TRIL


def test_zscores_with_and_without_scatter():
    # δ = 3, σ = 3 → R = 1; with ŝ = 4: R' = 3/√(9+16) = 0.6.  δ = −1, σ = 0.5 → R = −2; ŝ = 0 → R' = −2.
    x, xhat = np.array([[0.0, 1.0]]), np.array([[3.0, 0.0]])
    err, s = np.array([[3.0, 0.5]]), np.array([[4.0, 0.0]])
    assert np.allclose(zscores(x, xhat, err), [[1.0, -2.0]])
    assert np.allclose(zscores(x, xhat, err, s), [[0.6, -2.0]])
    assert np.allclose(zscore_rms(zscores(x, xhat, err)), [np.sqrt((1 + 4) / 2)])
    t = zscores(*(torch.tensor(a) for a in (x, xhat, err, s)))                   # same on tensors
    assert torch.allclose(t, torch.tensor([[0.6, -2.0]], dtype=t.dtype))
    assert torch.allclose(zscore_rms(t), torch.tensor([np.sqrt((0.36 + 4) / 2)], dtype=t.dtype))


def test_bias_width_and_mean_squared_z_and_ratio():
    z = np.array([[1.0, 0.0], [3.0, 0.0], [-1.0, 2.0], [1.0, -2.0]])
    bias, width = bias_width(z)
    assert np.allclose(bias, [1.0, 0.0]) and np.allclose(width, [np.sqrt(2.0), np.sqrt(2.0)])
    med, rwidth = bias_width(z, robust=True)       # medians 1, 0; MAD 1, 1 → 1.4826
    assert np.allclose(med, [1.0, 0.0]) and np.allclose(rwidth, [1.4826, 1.4826])
    assert np.allclose(mean_squared_z(z), [3.0, 2.0])
    assert np.allclose(mean_squared_z_ratio(z, 2 * z), [0.25, 0.25])


def test_chi2_full_covariance_two_by_two_and_not_positive_definite():
    # Σ = [[4,2],[2,3]], det 8, Σ⁻¹ = [[3,−2],[−2,4]]/8, δ = (1,1): χ² = (3−2−2+4)/8 = 3/8
    cov = np.array([[[4.0, 2.0], [2.0, 3.0]], [[1.0, 2.0], [2.0, 1.0]]])
    chi2 = chi2_full_cov(np.array([[1.0, 1.0], [1.0, 0.0]]), cov)
    assert np.isclose(chi2[0], 3 / 8) and np.isnan(chi2[1])


def test_chi2_bands_uncorrelated_equals_sum_of_squared_z_and_with_scatter():
    rng = np.random.default_rng(0)
    x, xhat = rng.normal(size=(3, 110)), rng.normal(size=(3, 110))
    err, s = rng.uniform(0.5, 1, (3, 110)), rng.uniform(0, 1, (3, 110))
    zero = {"bp": np.zeros((3, 1485)), "rp": np.zeros((3, 1485))}
    out = chi2_bands(x, xhat, err, zero)
    z = zscores(x, xhat, err)
    assert np.allclose(out["bp"], (z[:, :55] ** 2).sum(1) / 55)
    assert np.allclose(out["rp"], (z[:, 55:] ** 2).sum(1) / 55)
    zs = zscores(x, xhat, err, s)
    assert np.allclose(chi2_bands(x, xhat, err, zero, scatter=s)["rp_scatter"], (zs[:, 55:] ** 2).sum(1) / 55)


def test_chi2_bands_correlated_matches_explicit_inverse():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(55, 55))
    c = a @ a.T + 20 * np.eye(55)
    d = np.sqrt(np.diag(c))
    r = c / np.outer(d, d)
    x, xhat = rng.normal(size=(1, 110)), rng.normal(size=(1, 110))
    err, s = rng.uniform(.5, 1, (1, 110)), rng.uniform(0, 1, (1, 110))
    corr = {"bp": r[TRIL][None], "rp": r[TRIL][None]}
    out = {"rp": chi2_bands(x, xhat, err, corr, scatter=s)["rp_scatter"]}
    e = err[0, 55:]
    sigma = np.outer(e, e) * r + np.diag(s[0, 55:] ** 2)
    delta = xhat[0, 55:] - x[0, 55:]
    assert np.isclose(out["rp"][0], delta @ np.linalg.inv(sigma) @ delta / 55, rtol=1e-9)
