"""The verdict's statistic averaged over repeated cross-validations (analysis.classify.repeated_difference,
NULL_REPEATS): the training noise between cross-validations enters its variance."""
import numpy as np

from analysis.bootstrap import class_metrics
from analysis.classify import NULL_TEST, compare_feature_sets, repeated_difference
from analysis.synthetic import label_noise_sample

TEST = "-".join(NULL_TEST)
SETS = ("labels", "labels_latents", "labels_denoised")
FAST = dict(n_trees=20, n_boot=200, n_folds=5, seed=3, n_jobs=1)


def _predictions(y: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Scores right on a random ``accuracy`` share of the stars (1.0/0.0, so thresholding at 0.5 keeps them)."""
    right = rng.random(len(y)) < accuracy
    return np.where(right == y, 1.0, 0.0)


def test_spread_between_repeats_widens_the_interval():
    """Three repeats with the same mean gain: identical ones (no training noise) against ones that disagree by
    ±0.08. The disagreeing set must get a larger p and a wider interval, and each reports its repeats' gains and
    their mean."""
    rng = np.random.default_rng(0)
    y = rng.random(1500) < 0.3
    b = _predictions(y, 0.75, rng)
    a_mid = _predictions(y, 0.79, rng)
    a_lo, a_hi = _predictions(y, 0.71, rng), _predictions(y, 0.87, rng)
    same = repeated_difference(y, [(a_mid, b)] * 3, n_boot=300, seed=1)
    spread = repeated_difference(y, [(a_lo, b), (a_mid, b), (a_hi, b)], n_boot=300, seed=1)
    def ba(s: np.ndarray) -> float:
        return float(class_metrics(y, (s >= 0.5) == y)["balanced_accuracy"])
    assert spread[4] == [ba(a) - ba(b) for a in (a_lo, a_mid, a_hi)]
    assert np.isclose(spread[0], np.mean(spread[4])) and np.isclose(same[0], same[4][0])
    assert np.ptp(spread[4]) > 0.1 and np.ptp(same[4]) == 0
    assert spread[2] - spread[1] > 1.3 * (same[2] - same[1])
    assert spread[3] > same[3]


def test_interval_and_p_agree_on_the_level():
    """p < 0.025 exactly when the 95 % interval lies above 0 (the verdict may read either)."""
    rng = np.random.default_rng(5)
    y = rng.random(800) < 0.3
    b = _predictions(y, 0.75, rng)
    for acc in (0.74, 0.77, 0.8, 0.85):
        pairs = [(_predictions(y, acc + d, rng), b) for d in (-0.01, 0.0, 0.01)]
        gain, lo, hi, p, _ = repeated_difference(y, pairs, n_boot=200, seed=2)
        assert lo < gain < hi
        assert (p < 0.025) == (lo > 0), (acc, gain, lo, p)


def test_repeats_have_their_own_cross_validations():
    """With NULL_REPEATS cross-validations the first is the single comparison's own (same gain), the others
    differ (own folds and forests), and the reported gain is their mean."""
    z, lab, high = label_noise_sample(900, alpha="none", seed=11)
    one = compare_feature_sets(z, lab, high, feature_sets=SETS, null_repeats=1, **FAST)
    three = compare_feature_sets(z, lab, high, feature_sets=SETS, null_repeats=3, **FAST)
    assert one.null_gains == []
    gains = three.null_gains
    assert len(gains) == 3 and len(set(gains)) > 1
    assert np.isclose(gains[0], one.differences[TEST]["balanced_accuracy"][0])
    assert np.isclose(three.differences[TEST]["balanced_accuracy"][0], np.mean(gains))
    # the other feature sets and pairs are untouched by the repeats
    assert three.differences["labels_latents-labels"] == one.differences["labels_latents-labels"]


def test_repeated_test_still_finds_alpha():
    """Latents holding the true [α/M] offset get a 'yes' from the repeated test (its calibration on the
    label-noise confound is tests/unit/test_analysis_classify.py's, run with the default NULL_REPEATS)."""
    z, lab, high = label_noise_sample(1500, alpha="separate", seed=43)
    alt = compare_feature_sets(z, lab, high, feature_sets=SETS, **FAST)
    assert alt.p_values[TEST] < 0.025 and alt.differences[TEST]["balanced_accuracy"][1] > 0.05
    assert min(alt.null_gains) > 0.05
