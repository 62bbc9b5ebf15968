"""Metric helpers against hand-computed values on small inputs."""
import numpy as np
import pytest

from analysis.bimodality import fisher_direction, purity
from analysis.bootstrap import bootstrap_metrics, class_metrics, percentile_interval
from analysis.rows import ROW_FIELDS, make_row
from analysis.zstats import band_chi2, zscores


def test_class_metrics_by_hand():
    # 3 high (2 right), 5 low (4 right): acc 6/8, recall_high 2/3, recall_low 4/5
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 0, 0, 0, 0, 1], bool)
    m = class_metrics(y, pred == y)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["recall_high"] == pytest.approx(2 / 3)
    assert m["recall_low"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx(0.5 * (2 / 3 + 0.8))


def test_class_metrics_missing_class_is_nan():
    m = class_metrics(np.zeros(4, bool), np.ones(4, bool))
    assert np.isnan(m["recall_high"]) and np.isnan(m["balanced_accuracy"]) and m["accuracy"] == 1.0


def test_bootstrap_interval_covers_known_accuracy_and_pairing_cancels_shared_errors():
    """A predictor right with probability 0.8 on 2000 stars: the 95 % interval must contain 0.8 and have the
    binomial width (±1.96·√(0.8·0.2/2000) ≈ ±0.0175, allow 30 %). Two predictors that differ on only 10 stars:
    the paired interval of their difference is far narrower than either interval, which an unpaired
    bootstrap could not give."""
    rng = np.random.default_rng(5)
    y = rng.random(2000) < 0.3
    right = rng.random(2000) < 0.8
    pred_a = np.where(right, y, ~y)
    pred_b = pred_a.copy()
    pred_b[np.flatnonzero(pred_a == y)[:10]] ^= True        # b wrong on 10 more stars
    out, diffs = bootstrap_metrics(y, {"a": pred_a, "b": pred_b}, n_boot=400, seed=1, pairs=(("a", "b"),))
    v, lo, hi = out["a"]["accuracy"]
    assert lo < 0.8 < hi
    assert (hi - lo) / 2 == pytest.approx(1.96 * np.sqrt(0.16 / 2000), rel=0.3)
    dv, dlo, dhi = diffs["a-b"]["accuracy"]
    assert dv == pytest.approx(10 / 2000)
    assert 0 < dlo <= dv <= dhi and (dhi - dlo) < 0.3 * (hi - lo)


def test_percentile_interval_ignores_nan():
    lo, hi = percentile_interval(np.r_[np.arange(1001.0), np.nan])
    assert lo == pytest.approx(25.0) and hi == pytest.approx(975.0)


def test_purity_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0, 0])
    clusters = np.array([0, 0, 1, 1, 1, 1, 0])   # cluster 0: {1,1,0} → 2 ; cluster 1: {1,0,0,0} → 3
    assert purity(truth, clusters) == pytest.approx(5 / 7)


def test_zscores_with_and_without_scatter():
    # σ = 3, ŝ = 4 → √(σ²+ŝ²) = 5
    d, s, sc = np.array([[3.0, -4.0]]), np.array([[3.0, 2.0]]), np.array([[4.0, 0.0]])
    np.testing.assert_allclose(zscores(d, s), [[1.0, -2.0]])
    np.testing.assert_allclose(zscores(d, s, sc), [[0.6, -2.0]])


def test_band_chi2_full_covariance_matches_dense_solve():
    """χ² = δᵀ Σ⁻¹ δ with Σ = diag(σ) R diag(σ) (+ diag(ŝ²)) against a dense numpy computation built here."""
    rng = np.random.default_rng(0)
    n = 3
    a = rng.normal(size=(n, 55, 55))
    cov_like = a @ np.swapaxes(a, 1, 2) + 55 * np.eye(55)
    dstd = np.sqrt(np.einsum("nii->ni", cov_like))
    corr = cov_like / dstd[:, :, None] / dstd[:, None, :]
    tril = np.tril_indices(55, k=-1)
    flat = corr[:, tril[0], tril[1]]
    sigma = rng.uniform(0.5, 2.0, (n, 55))
    scatter = rng.uniform(0.0, 1.0, (n, 55))
    delta = rng.normal(size=(n, 55))
    for sc in (None, scatter):
        expected = []
        for i in range(n):
            cov = np.diag(sigma[i]) @ corr[i] @ np.diag(sigma[i])
            if sc is not None:
                cov = cov + np.diag(sc[i] ** 2)
            expected.append(delta[i] @ np.linalg.inv(cov) @ delta[i])
        np.testing.assert_allclose(band_chi2(delta, sigma, flat, sc, chunk=2), expected, rtol=1e-8)
    np.testing.assert_allclose(band_chi2(delta, sigma), np.sum((delta / sigma) ** 2, 1))
    bad = delta.copy()
    bad[1, 7] = np.nan
    assert np.isnan(band_chi2(bad, sigma, flat)[1]) and np.isfinite(band_chi2(bad, sigma, flat)[[0, 2]]).all()


def test_fisher_direction_recovers_discriminating_axis():
    """Two classes differing only along axis 0 with equal within-class covariance: w ∝ e₀, and the projection
    has unit within-class variance (the normalisation the function promises)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 3))
    y = np.arange(4000) < 2000
    X[y, 0] += 3.0
    w, mid = fisher_direction(X, y)
    assert abs(w[0]) / np.linalg.norm(w) > 0.99 and w[0] > 0
    proj = (X - mid) @ w
    assert np.std(proj[y]) == pytest.approx(1.0, abs=0.05)
    assert proj[y].mean() == pytest.approx(1.5, abs=0.1) and proj[~y].mean() == pytest.approx(-1.5, abs=0.1)


def test_rows_are_plain_and_nan_becomes_none():
    r = make_row("alpha", "pristine", "dip", "alpha_m", np.float32(0.5), n=np.int64(3), ci=(np.nan, 1.0),
                 bin_var="m_h", bin_lo=np.float64(-0.5), bin_hi=0)
    assert tuple(r) == ROW_FIELDS
    assert r["value"] == 0.5 and type(r["value"]) is float and type(r["n"]) is int
    assert r["ci_lo"] is None and r["ci_hi"] == 1.0 and r["bin_hi"] == 0.0


def test_band_chi2_non_positive_definite_star_is_nan_not_a_number():
    """A correlation matrix with all off-diagonal entries −0.5 (55×55) has a negative eigenvalue: that star's
    χ² must be NaN while the other star's is computed."""
    tril = np.tril_indices(55, k=-1)
    good = np.zeros(len(tril[0]))
    bad = np.full(len(tril[0]), -0.5)
    chi = band_chi2(np.ones((2, 55)), np.ones((2, 55)), np.stack([good, bad]))
    assert chi[0] == pytest.approx(55.0) and np.isnan(chi[1])
