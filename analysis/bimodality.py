"""Is [α/M] bimodal at fixed [M/H], in the labels and in the latent space? (docs/science.md §9.4)

Per [M/H] bin, for a one-dimensional α coordinate: Hartigan's dip test (dip statistic and p-value; small p
rejects unimodality) and ΔBIC = BIC(1 Gaussian) − BIC(2 Gaussians) (positive favours two components; above
~10 is strong evidence). Coordinates compared side by side: the [α/M] label and the latent Fisher coordinate.

The latent coordinate is the Fisher discriminant direction between the Patil classes in latent space, fitted
out of fold (a star's projection uses a direction fitted without it). It is a *linear* projection, so it cannot
manufacture a second mode. A classifier probability is deliberately not used here: it is a sigmoid-like
function of the latents, and squashing a unimodal distribution that a threshold cuts in two piles it up at 0
and 1 — it would look bimodal even when the underlying α distribution is not.

Unsupervised check: a 2-component Gaussian mixture fitted to the latents alone per [M/H] bin; the Patil split
only *scores* it (adjusted Rand index; purity, next to the purity of putting every star in the majority class,
which purity can never fall below).
"""
from __future__ import annotations

from dataclasses import dataclass

import diptest
import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from analysis.rows import make_row

DEFAULT_M_H_EDGES = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5)


def dip_test(x: np.ndarray) -> tuple[float, float]:
    """Hartigan's dip statistic and its p-value (interpolated from the tabulated null distribution)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 4:
        return float("nan"), float("nan")
    dip, p = diptest.diptest(x)
    return float(dip), float(p)


def delta_bic(x: np.ndarray, *, seed: int = 0, n_init: int = 3) -> float:
    """BIC of a 1-component minus a 2-component Gaussian mixture fitted to 1-D ``x`` (positive: two favoured)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)].reshape(-1, 1)
    if x.shape[0] < 10:
        return float("nan")
    with threadpool_limits(1):    # tiny matrices: BLAS/OpenMP threads only add contention
        bic = [GaussianMixture(k, n_init=n_init, random_state=seed).fit(x).bic(x) for k in (1, 2)]
    return float(bic[0] - bic[1])


def fisher_direction(X: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Unit-within-class-variance Fisher direction w ∝ S_w⁻¹(μ_high − μ_low) and the class midpoint.

    Projections (x − midpoint)·w are positive on the high-α side."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, bool)
    mu_h, mu_l = X[y].mean(0), X[~y].mean(0)
    resid = np.concatenate([X[y] - mu_h, X[~y] - mu_l])
    s_w = resid.T @ resid / max(len(X) - 2, 1)
    s_w += ridge * np.trace(s_w) / len(s_w) * np.eye(len(s_w))
    w = np.linalg.solve(s_w, mu_h - mu_l)
    w /= np.sqrt(w @ s_w @ w)
    return w, 0.5 * (mu_h + mu_l)


def fisher_oof_coordinate(X: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each star projected on the Fisher direction fitted on the other folds (an honest latent α axis)."""
    X = np.asarray(X, np.float64)
    out = np.full(len(X), np.nan)
    for k in np.unique(folds):
        test = folds == k
        w, mid = fisher_direction(X[~test], np.asarray(y, bool)[~test])
        out[test] = (X[test] - mid) @ w
    return out


def bin_masks(values: np.ndarray, edges) -> list[tuple[float, float, np.ndarray]]:
    """Half-open [lo, hi) bins of ``values``."""
    values = np.asarray(values, np.float64)
    edges = list(edges)
    return [(lo, hi, (values >= lo) & (values < hi)) for lo, hi in zip(edges[:-1], edges[1:])]


@dataclass
class BinTest:
    coordinate: str
    bin_lo: float
    bin_hi: float
    n: int
    dip: float
    dip_p: float
    delta_bic: float


def bimodality_by_bin(coordinates: dict[str, np.ndarray], m_h: np.ndarray, *, edges=DEFAULT_M_H_EDGES,
                      min_n: int = 30, seed: int = 0) -> list[BinTest]:
    """Dip test and ΔBIC of each coordinate within each [M/H] bin holding at least ``min_n`` stars."""
    out = []
    for lo, hi, in_bin in bin_masks(m_h, edges):
        for name, coord in coordinates.items():
            x = np.asarray(coord, np.float64)[in_bin]
            x = x[np.isfinite(x)]
            if x.size < min_n:
                continue
            d, p = dip_test(x)
            out.append(BinTest(name, lo, hi, int(x.size), d, p, delta_bic(x, seed=seed)))
    return out


def bimodality_rows(tests: list[BinTest], sample: str) -> list[dict]:
    rows = []
    for t in tests:
        for stat, value in (("dip", t.dip), ("dip_p", t.dip_p), ("delta_bic", t.delta_bic)):
            rows.append(make_row("alpha", sample, stat, t.coordinate, value, n=t.n, bin_var="m_h",
                                 bin_lo=t.bin_lo, bin_hi=t.bin_hi))
    return rows


def purity(truth: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of stars whose cluster's majority class is their own class."""
    truth = np.asarray(truth)
    clusters = np.asarray(clusters)
    if truth.size == 0:
        return float("nan")
    hits = 0
    for c in np.unique(clusters):
        _, counts = np.unique(truth[clusters == c], return_counts=True)
        hits += counts.max()
    return hits / truth.size


@dataclass
class ClusterScore:
    bin_lo: float | None
    bin_hi: float | None
    n: int
    ari: float
    purity: float
    purity_baseline: float     # majority-class fraction: the purity of a single cluster


def unsupervised_by_bin(latents: np.ndarray, m_h: np.ndarray, high: np.ndarray, *, edges=DEFAULT_M_H_EDGES,
                        min_n: int = 30, seed: int = 0, n_init: int = 3) -> list[ClusterScore]:
    """2-component full-covariance mixture on the latents of each [M/H] bin (and of the whole sample, bin None),
    scored against the Patil classes. The classes never enter the fit."""
    latents = np.asarray(latents, np.float64)
    high = np.asarray(high, bool)
    bins: list[tuple[float | None, float | None, np.ndarray]] = [(None, None, np.ones(len(high), bool))]
    bins += bin_masks(m_h, edges)
    out = []
    for lo, hi, in_bin in bins:
        if in_bin.sum() < min_n:
            continue
        z, y = latents[in_bin], high[in_bin]
        with threadpool_limits(1):    # 6×6 covariances: threads only add contention
            clusters = GaussianMixture(2, n_init=n_init, random_state=seed).fit_predict(z)
        out.append(ClusterScore(lo, hi, int(in_bin.sum()), float(adjusted_rand_score(y, clusters)),
                                float(purity(y, clusters)), float(max(y.mean(), 1 - y.mean()))))
    return out


def cluster_rows(scores: list[ClusterScore], sample: str, subject: str = "latent_gmm2") -> list[dict]:
    rows = []
    for s in scores:
        bin_var = None if s.bin_lo is None else "m_h"
        for stat, value in (("ari", s.ari), ("purity", s.purity), ("purity_baseline", s.purity_baseline)):
            rows.append(make_row("alpha", sample, stat, subject, value, n=s.n, bin_var=bin_var,
                                 bin_lo=s.bin_lo, bin_hi=s.bin_hi))
    return rows
