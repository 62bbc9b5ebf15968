"""Analysis benchmarks: each figure is compared with a simpler baseline run in the same process."""
from __future__ import annotations

import time

import numpy as np


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(quick: bool) -> None:
    from sklearn.mixture import GaussianMixture

    from analysis.bimodality import unsupervised_by_bin
    from analysis.bootstrap import bootstrap_metrics, class_metrics
    from analysis.classify import compare_feature_sets
    from analysis.samples import alpha_split
    from analysis.synthetic import alpha_sample, reconstruction_sample
    from analysis.zstats import band_chi2
    from shared.xp import correlation_matrix

    n = 2000 if quick else 20000
    z, lab, _ = alpha_sample(n, alpha_in_latents=True, seed=0)
    high = alpha_split(lab).high

    # 1. the classifier comparison (5 feature sets × 5 folds), all-features forests vs sklearn's default 'sqrt'
    kw = dict(n_boot=200, n_trees=100, seed=0, n_jobs=2)
    t_none = _timed(lambda: compare_feature_sets(z, lab, high, max_features=None, **kw))
    t_sqrt = _timed(lambda: compare_feature_sets(z, lab, high, max_features="sqrt", **kw))
    print(f"classifier comparison, {n} stars: {t_none:.2f} s (max_features=None), {t_sqrt:.2f} s ('sqrt' baseline), "
          f"ratio {t_none / t_sqrt:.2f}")

    # 2. bootstrap of out-of-fold predictions: chunked vectorised vs one resample at a time
    pred = {"a": high ^ (np.random.default_rng(1).random(n) < 0.1),
            "b": high ^ (np.random.default_rng(2).random(n) < 0.2)}
    n_boot = 500
    t_vec = _timed(lambda: bootstrap_metrics(high, pred, n_boot=n_boot, seed=0, pairs=(("a", "b"),)))

    def loop():
        rng = np.random.default_rng(0)
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            for p in pred.values():
                class_metrics(high[idx], (p == high)[idx])
    t_loop = _timed(loop)
    print(f"bootstrap {n_boot}× on {n} stars, 2 predictors: {t_vec:.3f} s vectorised, {t_loop:.3f} s loop baseline, "
          f"speed-up {t_loop / t_vec:.1f}×")

    # 3. unsupervised mixtures per [M/H] bin: single-threaded BLAS vs default thread pools
    m_h = lab["m_h"]
    t_lim = _timed(lambda: unsupervised_by_bin(z, m_h, high, seed=0))
    from analysis.bimodality import DEFAULT_M_H_EDGES, bin_masks

    def unlimited():
        GaussianMixture(2, n_init=3, random_state=0).fit_predict(z)
        for _, _, sel in bin_masks(m_h, DEFAULT_M_H_EDGES):
            if sel.sum() >= 30:
                GaussianMixture(2, n_init=3, random_state=0).fit_predict(z[sel])
    t_unl = _timed(unlimited)
    print(f"latent 2-Gaussian mixtures, {n} stars, all bins: {t_lim:.2f} s (1 thread), {t_unl:.2f} s (default "
          f"threads baseline), speed-up {t_unl / t_lim:.1f}×")

    # 4. full-covariance χ² of one band: chunked batched Cholesky vs per-star numpy solve
    m = 2000 if quick else 20000
    models, _, _ = reconstruction_sample(m, seed=0)
    mo = models["svae"]
    d, s, r = mo["x_hat"][:, :55] - mo["x"][:, :55], mo["sigma"][:, :55], mo["bp_correlations"]
    t_batch = _timed(lambda: band_chi2(d, s, r, mo["scatter"][:, :55]))
    k = min(m, 2000)

    def per_star():
        for i in range(k):
            cov = s[i, :, None] * correlation_matrix(r[i]) * s[i, None, :] + np.diag(mo["scatter"][i, :55] ** 2)
            d[i] @ np.linalg.solve(cov, d[i])
    t_star = _timed(per_star) * m / k
    print(f"band χ² with full covariance, {m} stars: {t_batch:.2f} s chunked via shared.metrics "
          f"({m / t_batch:,.0f} stars/s), {t_star:.2f} s per-star numpy-solve baseline (from {k} stars), "
          f"time ratio chunked/per-star {t_batch / t_star:.2f}")
