"""G-flux normalisation, the training-split standardisation, non-finite row reports, band covariances."""
from __future__ import annotations

import numpy as np
import pytest

from shared.preprocessing import Normalisation, finite_rows, normalise_by_flux, standardised_covariance
from shared.training import TrainConfig, fit_scatter_vae
from shared.xp import TRIL, correlation_matrix


def test_flux_normalisation_and_bad_flux_becomes_reported_row():
    x = np.array([[2.0, 4.0], [3.0, 6.0], [1.0, 1.0]])
    e = np.array([[0.2, 0.4], [0.3, 0.6], [0.1, 0.1]])
    xn, en = normalise_by_flux(x, e, np.array([2.0, 3.0, 0.0]))
    assert np.array_equal(xn[:2], [[1, 2], [1, 2]]) and np.allclose(en[:2], [[0.1, 0.2], [0.1, 0.2]])
    ok, report = finite_rows(xn, en)
    assert ok.tolist() == [True, True, False]
    assert report.count == 1 and report.indices.tolist() == [2] and "row 2 (x[0] +1)" in str(report)


def test_finite_rows_names_the_array_and_column():
    x, e = np.zeros((5, 4)), np.ones((5, 4))
    x[1, 2] = np.inf
    e[3, 0] = np.nan
    ok, report = finite_rows(x, e)
    assert report.indices.tolist() == [1, 3] and report.total == 5
    assert report.first_bad_fields == ["x[2]", "x_err[0]"]
    assert report.to_dict()["count"] == 2


def test_normalisation_apply_invert_roundtrip_and_storage(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, size=(100, 4))
    n = Normalisation.fit(x)
    xs, es = n.apply(x, np.full_like(x, 0.3))
    assert np.allclose(xs.mean(0), 0) and np.allclose(xs.std(0), 1)        # ddof=0, as the release
    assert np.allclose(es, 0.3 / x.std(0)) and np.allclose(n.invert(xs), x)
    assert np.array_equal(Normalisation.from_dict(n.to_dict()).mu, n.mu)
    path = tmp_path / "norm.npz"
    n.save_npz(path)
    assert np.array_equal(Normalisation.from_npz(path).sig, n.sig)
    np.savez(tmp_path / "bad.npz", mu=n.mu)
    with pytest.raises(ValueError, match=r"bad\.npz.*sig"):
        Normalisation.from_npz(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="coefficient"):
        Normalisation(np.zeros(3), np.array([1.0, 0.0, 1.0]))


def test_training_fits_normalisation_on_train_split_only():
    """Rows differ strongly in level, so the all-rows mean differs from the train-split mean; the trained
    model must carry the train-split statistics exactly. A non-finite row is excluded and reported."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 110)) * np.arange(300)[:, None] / 30
    e = np.full_like(x, 0.1)
    x[7, 50] = np.nan
    res = fit_scatter_vae(x, e, train_config=TrainConfig(epochs=1, batch_size=64, compile=False, threads=1,
                                                         checkpoint_every=0))
    tr = res.split["train"]
    assert 7 not in np.concatenate(list(res.split.values()))
    assert res.excluded.indices.tolist() == [7]
    assert sum(v.size for v in res.split.values()) == 299
    assert np.allclose(res.normalisation.mu, x[tr].mean(0)) and np.allclose(res.normalisation.sig, x[tr].std(0))
    finite = np.delete(x, 7, axis=0)
    assert not np.allclose(res.normalisation.mu, finite.mean(0))


def test_standardised_covariance_rescales_errors_and_keeps_correlations():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(55, 55))
    cov = a @ a.T + 55 * np.eye(55)
    d = np.sqrt(np.diag(cov))
    flat = (cov / np.outer(d, d))[TRIL]
    e = rng.uniform(1, 2, size=55)
    sig = rng.uniform(0.5, 3, size=55)
    s = standardised_covariance(e[None], flat[None], np.array([4.0]), sig)[0]
    scaled = e / 4.0 / sig
    assert np.allclose(np.diag(s), scaled ** 2)
    assert np.allclose(s / np.outer(scaled, scaled), correlation_matrix(flat))
