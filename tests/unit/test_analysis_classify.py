"""Classifier comparison on synthetic samples where the truth is known (analysis.synthetic.alpha_sample)."""
import numpy as np
import pytest

from analysis.classify import compare_feature_sets, feature_matrix
from analysis.samples import alpha_split
from analysis.synthetic import alpha_sample

FAST = dict(n_trees=40, n_boot=300, n_folds=5, seed=0, n_jobs=2)


def test_feature_rows_are_stars_not_scrambled():
    """Row i of every feature matrix holds star i's values (the release's reshape(-1, 3) would interleave them)."""
    n = 7
    labels = {"teff": 4000.0 + np.arange(n), "logg": 1.0 + np.arange(n) / 10, "m_h": -1.0 + np.arange(n) / 100,
              "j": np.full(n, 10.0), "h": np.full(n, 9.5), "k": np.full(n, 9.0)}
    latents = np.arange(n * 6, dtype=float).reshape(n, 6)
    X, names = feature_matrix("labels", latents, labels)
    np.testing.assert_array_equal(X, np.array([[labels["teff"][i], labels["logg"][i], labels["m_h"][i]] for i in range(n)]))
    X, names = feature_matrix("labels_latents", latents, labels)
    assert names[:3] == ["teff", "logg", "m_h"] and X.shape == (n, 9)
    np.testing.assert_array_equal(X[:, 3:], latents)
    X, _ = feature_matrix("labels_colours", latents, labels)
    np.testing.assert_allclose(X[:, 3:], np.tile([0.5, 1.0], (n, 1)))


def test_latents_with_alpha_information_beat_labels():
    """Latent z1 = distance from the Patil boundary + noise: (e) must beat (c) with a paired interval above 0.
    The synthetic gap is large (labels ≈ 0.7 balanced accuracy, latents ≈ 0.95), far beyond the ~±0.03
    bootstrap half width at 1000 stars, so this can only fail if the machinery is wrong."""
    z, lab, _ = alpha_sample(1000, alpha_in_latents=True, seed=11)
    high = alpha_split(lab).high
    comp = compare_feature_sets(z, lab, high, feature_sets=("latents", "labels", "labels_latents"), **FAST)
    v, lo, hi = comp.differences["labels_latents-labels"]["balanced_accuracy"]
    assert lo > 0.1
    assert comp.results["latents"].metrics["balanced_accuracy"][0] > 0.9
    assert comp.results["labels"].metrics["balanced_accuracy"][0] < 0.8
    assert np.isfinite(comp.results["latents"].scores).all()      # out-of-fold score for every star
    rows = comp.rows("pristine")
    assert {r["statistic"] for r in rows} >= {"accuracy", "balanced_accuracy", "recall_high", "recall_low",
                                               "balanced_accuracy_diff"}


def test_latents_without_alpha_information_add_nothing():
    """Latents are non-linear functions of Teff, log g, [M/H] plus noise: the paired interval of (e) − (c)
    must include 0 (no α information beyond labels), although [M/H] itself predicts the class partly."""
    z, lab, _ = alpha_sample(1000, alpha_in_latents=False, seed=12)
    high = alpha_split(lab).high
    comp = compare_feature_sets(z, lab, high, feature_sets=("labels", "labels_latents"), **FAST)
    v, lo, hi = comp.differences["labels_latents-labels"]["balanced_accuracy"]
    assert lo < 0 < hi
    assert comp.results["labels"].metrics["balanced_accuracy"][1] > 0.55     # labels do carry some signal


def test_scores_are_out_of_fold():
    """Pure-noise features and a random class: out-of-fold balanced accuracy must be at chance (interval covers
    0.5), whereas a forest scored on its own training stars would be near 1."""
    rng = np.random.default_rng(3)
    n = 600
    labels = {"teff": rng.normal(size=n), "logg": rng.normal(size=n), "m_h": rng.normal(size=n)}
    high = rng.random(n) < 0.3
    comp = compare_feature_sets(rng.normal(size=(n, 6)), labels, high, feature_sets=("labels_latents",), **FAST)
    v, lo, hi = comp.results["labels_latents"].metrics["balanced_accuracy"]
    assert lo < 0.5 < hi


def test_colour_set_uses_only_stars_with_finite_colours():
    z, lab, _ = alpha_sample(400, alpha_in_latents=False, seed=4)
    lab["j"][:100] = np.nan
    high = alpha_split(lab).high
    comp = compare_feature_sets(z, lab, high, feature_sets=("labels", "labels_colours"), **FAST)
    assert comp.results["labels_colours"].n == 300 and comp.results["labels"].n == 400
    assert comp.difference_n["labels_colours-labels"] == 300
    assert np.isnan(comp.results["labels_colours"].scores[:100]).all()


def test_too_few_stars_of_a_class_is_a_clear_error():
    labels = {"teff": np.ones(20), "logg": np.ones(20), "m_h": np.ones(20)}
    high = np.zeros(20, bool)
    high[:3] = True
    with pytest.raises(ValueError, match="3 high"):
        compare_feature_sets(np.zeros((20, 6)), labels, high, **FAST)
