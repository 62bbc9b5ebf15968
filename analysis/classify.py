"""Does the latent space know [α/M] beyond what the labels know? Random forests predicting the Patil high/low-α
class from five feature sets, scored out of fold (stratified k-fold, the same folds for every feature set) and
compared with seeded bootstrap intervals (docs/science.md §9.3).

Feature sets (built with ``np.column_stack``: one row per star, never the release's row-scrambling reshape):
  latents         the 6 latent means                                   (a)
  m_h             [M/H]                                               (b)
  labels          Teff, log g, [M/H]                                  (c)
  labels_colours  Teff, log g, [M/H], J−H, J−K — only the stars whose colours are finite  (d)
  labels_latents  Teff, log g, [M/H] and the latent means             (e)
  labels_denoised Teff, log g, [M/H], each combined with the latents' own out-of-fold estimate of it by
                  inverse-variance weighting (the reported label error against the estimate's scatter)  (f)
The test of the [α/M] claim is the paired balanced-accuracy difference (e) − (f). Spectra re-measure Teff and
[M/H], and a better [M/H] predicts a class defined from noisy [Fe/H]; set (f) is the best estimate of the true
labels that labels and latents together give, so that label-noise averaging is in the baseline, not in the
gain. It holds the latents' estimates only with the weight their precision earns next to the label, never as
free features: a forest given the raw estimate beside the label can read [α/M] from their difference wherever
α lines are also metal lines (docs/science-validation.md, "The test behind the verdict").
The older (e) − (c) counts label-noise averaging as gain and is kept as a secondary number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy.stats import norm
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import StratifiedKFold

from analysis.bootstrap import METRICS, bootstrap_metrics, class_metrics, resample_indices
from analysis.rows import Progress, make_row, no_progress
from shared import defaults as D

FEATURE_SETS = ("latents", "m_h", "labels", "labels_colours", "labels_latents", "labels_denoised")
DESCRIPTIONS = {
    "latents": "(a) latent means", "m_h": "(b) [M/H]", "labels": "(c) Teff, log g, [M/H]",
    "labels_colours": "(d) Teff, log g, [M/H], J-H, J-K", "labels_latents": "(e) Teff, log g, [M/H] + latents",
    "labels_denoised": "(f) Teff, log g, [M/H] denoised by the latents",
}
LABELS = ("teff", "logg", "m_h")
# The test of the claim: (e) against (f), the labels improved by what the latents know about them.
NULL_TEST = ("labels_latents", "labels_denoised")
# The reported label errors are multiplied by this before weighting: errors too small would under-weight the
# latents' estimates and leave label-noise averaging in the gain (anti-conservative); too large ones hand a
# little of the latents' α information to the baseline (conservative). Survey pipelines tend to under-report.
LABEL_ERROR_SCALE = 2.0
# Floor of the estimates' error variance, as a fraction of the label's variance (the weight of the estimate
# stays < 1 even where the estimate scatter looks as small as the label errors).
MIN_ESTIMATE_VARIANCE = 0.01
# Paired balanced-accuracy differences reported (a − b).
# Features tried per split: all of them (bagged trees). sklearn's default 'sqrt' gives the 3-label set one
# candidate per split but the 9-feature set three, a capacity difference that, in a null simulation (latents =
# functions of the labels + noise), biased (e) − (c) by about +0.01 in balanced accuracy. With all features
# the null difference centres on 0. The release used the default.
MAX_FEATURES: float | str | None = None
# The test's gain is the mean over this many cross-validations, each with its own folds, forest seeds and
# latent estimates. One cross-validation's gain moves by about ±0.02 with the seed alone (20-tree forests,
# 1000–1600 stars; docs/science-validation.md), a training noise the bootstrap over stars cannot see: with one
# cross-validation and the bootstrap p alone the test said "yes" too often at alpha_signal 0.
NULL_REPEATS = 3
PAIRS = (NULL_TEST, ("labels_latents", "labels"), ("latents", "labels"), ("labels_colours", "labels"))


def feature_matrix(name: str, latents: np.ndarray, labels: Mapping[str, np.ndarray],
                   denoised: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, k) features of one set and their names. Stars with non-finite colours get NaN colour columns.
    ``denoised`` (N, 3): Teff, log g, [M/H] denoised with the latents' estimates (set f only)."""
    lab = [np.asarray(labels[k], np.float64) for k in LABELS]
    lat = np.asarray(latents, np.float64)
    lat_names = [f"z{i + 1}" for i in range(lat.shape[1])]
    if name == "latents":
        return lat, lat_names
    if name == "m_h":
        return np.column_stack([lab[2]]), ["m_h"]
    if name == "labels":
        return np.column_stack(lab), ["teff", "logg", "m_h"]
    if name == "labels_colours":
        if not all(k in labels for k in ("j", "h", "k")):
            nan = np.full(len(lab[0]), np.nan)
            return np.column_stack(lab + [nan, nan]), ["teff", "logg", "m_h", "j_h", "j_k"]
        j, h, k = (np.asarray(labels[c], np.float64) for c in ("j", "h", "k"))
        return np.column_stack(lab + [j - h, j - k]), ["teff", "logg", "m_h", "j_h", "j_k"]
    if name == "labels_latents":
        return np.column_stack(lab + [lat]), ["teff", "logg", "m_h"] + lat_names
    if name == "labels_denoised":
        if denoised is None:
            raise ValueError("feature set labels_denoised needs the latents' denoised labels")
        return np.asarray(denoised, np.float64), [f"{k}_denoised" for k in LABELS]
    raise ValueError(f"unknown feature set {name!r}; choose from {FEATURE_SETS}")


def fold_ids(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Stratified fold number per star (shuffled, seeded)."""
    folds = np.empty(len(y), np.int64)
    for k, (_, test) in enumerate(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        folds[test] = k
    return folds


def out_of_fold_scores(X: np.ndarray, y: np.ndarray, folds: np.ndarray, *, n_trees: int = 100, seed: int = 0,
                       n_jobs: int = 2, rows: np.ndarray | None = None,
                       max_features: float | str | None = MAX_FEATURES) -> np.ndarray:
    """P(high-α) for every star from a forest that never saw that star (NaN outside ``rows``).

    ``rows`` restricts training and prediction to a subset (e.g. stars with finite colours)."""
    y = np.asarray(y, bool)
    use = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    scores = np.full(len(y), np.nan)
    for k in np.unique(folds):
        train = use & (folds != k)
        test = use & (folds == k)
        if not test.any():
            continue
        if len(np.unique(y[train])) < 2:
            raise ValueError(f"fold {k}: training stars hold a single alpha class; "
                             f"too few stars for {len(np.unique(folds))} folds")
        forest = RandomForestClassifier(n_estimators=n_trees, random_state=seed + k, n_jobs=n_jobs,
                                        max_features=max_features)
        forest.fit(X[train], y[train])
        scores[test] = forest.predict_proba(X[test])[:, list(forest.classes_).index(True)]
    return scores


def alpha_independence_weights(labels: Mapping[str, np.ndarray], rows: np.ndarray, n_bins: int = 6,
                               max_weight: float = 10.0) -> np.ndarray:
    """Weights of the stars ``rows`` under which their [α/M] label is independent of their [M/H] label:
    p([M/H] bin)·p([α/M] bin) / p(both), on quantile bins, capped at ``max_weight`` × the mean.

    Why: in a disc [α/M] and [M/H] are correlated (the high-α sequence is metal-poorer), so where the spectra do
    carry α features a regressor of [M/H] would use them and its estimate would carry α into the baseline. With
    these weights the population no longer ties α to [M/H]; α lines that are also metal lines still do, which is
    why the estimate enters the baseline only with its inverse-variance weight (denoised_labels).
    ([α/M] from ALPHA_M where finite, else MG_FE; stars with neither get weight 1.)"""
    m = np.asarray(labels["m_h"], np.float64)[rows]
    a = np.full(len(m), np.nan)
    for name in ("mg_fe", "alpha_m"):          # ALPHA_M wins where both are finite
        if name in labels:
            v = np.asarray(labels[name], np.float64)[rows]
            a = np.where(np.isfinite(v), v, a)
    w = np.ones(len(m))
    ok = np.isfinite(m) & np.isfinite(a)
    if ok.sum() < n_bins * n_bins:
        return w
    def bins(x: np.ndarray) -> np.ndarray:
        edges = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])
        return np.searchsorted(edges, x, side="right")
    i, j = bins(m[ok]), bins(a[ok])
    joint = np.zeros((n_bins, n_bins))
    np.add.at(joint, (i, j), 1.0)
    joint /= joint.sum()
    ratio = joint.sum(1)[:, None] * joint.sum(0)[None, :] / np.where(joint > 0, joint, np.inf)
    w[ok] = ratio[i, j]
    w = np.minimum(w, max_weight * w.mean())
    return w / w.mean()


def latent_label_estimates(latents: np.ndarray, labels: Mapping[str, np.ndarray], folds: np.ndarray, *,
                           n_trees: int = 100, seed: int = 0, n_jobs: int = 2) -> np.ndarray:
    """(N, 3) out-of-fold estimates of Teff, log g, [M/H] from the latents alone: one multi-output forest per
    fold, trained on the other folds' stars with the targets standardised (each label weighs alike) and the
    stars weighted so that [α/M] is independent of [M/H] (alpha_independence_weights).

    Out of fold, because an estimate fitted on the star's own label would copy that label's noise back into
    the baseline and leave the latents' better measurement of the true value to the gain."""
    X = np.asarray(latents, np.float64)
    T = np.column_stack([np.asarray(labels[k], np.float64) for k in LABELS])
    mu, sd = T.mean(0), T.std(0)
    sd[sd == 0] = 1.0
    T = (T - mu) / sd
    out = np.empty_like(T)
    for k in np.unique(folds):
        test = folds == k
        train = np.flatnonzero(~test)
        forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=5, max_features=None,
                                       random_state=seed + 31 * (k + 1), n_jobs=n_jobs)
        forest.fit(X[train], T[train], sample_weight=alpha_independence_weights(labels, train))
        out[test] = forest.predict(X[test])
    return out * sd + mu


def denoised_labels(labels: Mapping[str, np.ndarray], estimates: np.ndarray, *,
                    error_scale: float = LABEL_ERROR_SCALE) -> tuple[np.ndarray, dict[str, float]]:
    """(N, 3) Teff, log g, [M/H], each the inverse-variance combination of the label and the latents' out-of-fold
    estimate of it, and the mean weight the estimates got, per label.

    The label's variance is (error_scale × its reported error)²; the estimate's, τ², is the mean squared
    label − estimate difference less the mean label variance (what the latents miss of the true label),
    floored at MIN_ESTIMATE_VARIANCE × the label's variance. The estimate is a posterior mean given the latents,
    so weighting it against the label's likelihood gives the posterior mean of the true label given both.
    Weighted, not free: a forest sees one number per label and cannot take label and estimate apart again."""
    est = np.asarray(estimates, np.float64)
    out = np.empty_like(est)
    weights: dict[str, float] = {}
    for i, k in enumerate(LABELS):
        if f"{k}_err" not in labels:
            raise ValueError(f"feature set labels_denoised needs the reported errors {k}_err")
        value = np.asarray(labels[k], np.float64)
        var = (error_scale * np.asarray(labels[f"{k}_err"], np.float64)) ** 2
        if not np.all(np.isfinite(var)):
            raise ValueError(f"{k}_err: star {int(np.flatnonzero(~np.isfinite(var))[0])} has no finite error; "
                             "restrict the sample first")
        tau2 = max(float(np.mean((value - est[:, i]) ** 2) - np.mean(var)),
                   MIN_ESTIMATE_VARIANCE * float(np.var(value)))
        w = var / (var + tau2)
        out[:, i] = value + w * (est[:, i] - value)
        weights[k] = float(np.mean(w))
    return out, weights


def r_squared(truth: np.ndarray, estimate: np.ndarray) -> float:
    """1 − mean squared error / variance (NaN for a constant truth)."""
    var = float(np.var(truth))
    return float(1.0 - np.mean((truth - estimate) ** 2) / var) if var > 0 else float("nan")


@dataclass
class FeatureSetResult:
    """Out-of-fold scores (P(high-α), NaN where not evaluated) and metrics {name: (value, ci_lo, ci_hi)}."""
    name: str
    features: list[str]
    scores: np.ndarray
    evaluated: np.ndarray
    metrics: dict[str, tuple[float, float, float]]

    @property
    def n(self) -> int:
        return int(self.evaluated.sum())


@dataclass
class ClassifierComparison:
    """All feature sets on one sample, plus paired differences {"a-b": {metric: (value, lo, hi)}}."""
    y: np.ndarray
    results: dict[str, FeatureSetResult]
    differences: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)
    difference_n: dict[str, int] = field(default_factory=dict)
    # one-sided bootstrap p of "balanced-accuracy difference ≤ 0", per pair
    p_values: dict[str, float] = field(default_factory=dict)
    # the test's gain of every cross-validation (NULL_REPEATS; the first is the one in ``results``)
    null_gains: list[float] = field(default_factory=list)
    # R² of the latents' out-of-fold label estimates and the mean weight they got in set (f), per label
    estimate_r2: dict[str, float] = field(default_factory=dict)
    estimate_weight: dict[str, float] = field(default_factory=dict)

    def rows(self, sample: str) -> list[dict]:
        out = []
        for name, res in self.results.items():
            for m in METRICS:
                v, lo, hi = res.metrics[m]
                out.append(make_row("alpha", sample, m, name, v, ci=(lo, hi), n=res.n))
        for key, metrics in self.differences.items():
            for m in ("accuracy", "balanced_accuracy"):
                v, lo, hi = metrics[m]
                out.append(make_row("alpha", sample, f"{m}_diff", key, v, ci=(lo, hi), n=self.difference_n[key]))
            if key in self.p_values:
                out.append(make_row("alpha", sample, "balanced_accuracy_diff_p", key, self.p_values[key],
                                    n=self.difference_n[key]))
        for label, r2 in self.estimate_r2.items():
            out.append(make_row("alpha", sample, "latent_estimate_r2", label, r2, n=len(self.y)))
        for label, w in self.estimate_weight.items():
            out.append(make_row("alpha", sample, "latent_estimate_weight", label, w, n=len(self.y)))
        return out


def compare_feature_sets(latents: np.ndarray, labels: Mapping[str, np.ndarray], high: np.ndarray, *,
                         feature_sets: tuple[str, ...] = FEATURE_SETS, n_folds: int = D.ALPHA_FOLDS,
                         n_boot: int = D.ALPHA_BOOTSTRAP,
                         n_trees: int = 100, seed: int = 0, n_jobs: int = 2, min_colour_stars: int = 50,
                         max_features: float | str | None = MAX_FEATURES, error_scale: float = LABEL_ERROR_SCALE,
                         null_repeats: int = NULL_REPEATS, progress: Progress = no_progress) -> ClassifierComparison:
    """Score every feature set out of fold on the same stars and folds; bootstrap intervals (seeded).

    ``latents`` (N, d), ``labels`` (N,) arrays with teff, logg, m_h (and j, h, k for set d; their _err for set
    f, multiplied by ``error_scale``), ``high`` (N,) bool.
    All inputs must already be restricted to the sample with a valid α class and finite labels and latents.
    Set (d) is scored only on stars with finite J−H and J−K, and skipped when fewer than ``min_colour_stars``.
    The test's pair (NULL_TEST) is scored on ``null_repeats`` cross-validations (repeated_null_test); its
    balanced-accuracy difference and p are theirs, its other metrics the first cross-validation's.
    """
    y = np.asarray(high, bool)
    n = len(y)
    n_high = int(y.sum())
    if min(n_high, n - n_high) < n_folds:
        raise ValueError(f"need at least {n_folds} stars of each alpha class, have {n_high} high and {n - n_high} low")
    folds = fold_ids(y, n_folds, seed)
    denoised, estimate_r2, estimate_weight = None, {}, {}
    if "labels_denoised" in feature_sets:
        progress(0, len(feature_sets), "the latents' out-of-fold estimates of Teff, log g, [M/H]")
        estimates = latent_label_estimates(latents, labels, folds, n_trees=n_trees, seed=seed, n_jobs=n_jobs)
        estimate_r2 = {k: r_squared(np.asarray(labels[k], np.float64), estimates[:, i]) for i, k in enumerate(LABELS)}
        denoised, estimate_weight = denoised_labels(labels, estimates, error_scale=error_scale)
    results: dict[str, FeatureSetResult] = {}
    for i, name in enumerate(feature_sets):
        progress(i, len(feature_sets), f"random forests on feature set {DESCRIPTIONS.get(name, name)}")
        X, names = feature_matrix(name, latents, labels, denoised)
        rows = np.all(np.isfinite(X), axis=1)
        if name == "labels_colours" and rows.sum() < min_colour_stars:
            continue
        if not rows.all() and name != "labels_colours":
            bad = int(np.flatnonzero(~rows)[0])
            raise ValueError(f"feature set {name}: star {bad} has a non-finite feature ({names}); "
                             "restrict the sample first")
        scores = out_of_fold_scores(X, y, folds, n_trees=n_trees, seed=seed, n_jobs=n_jobs, rows=rows,
                                    max_features=max_features)
        results[name] = FeatureSetResult(name, names, scores, rows, {})
    progress(len(feature_sets), len(feature_sets), "bootstrap intervals")
    # every set on its own evaluated stars; paired differences on the stars both sets scored
    for k, res in enumerate(results.values()):
        ev = res.evaluated
        metrics, _ = bootstrap_metrics(y[ev], {res.name: res.scores[ev] >= 0.5}, n_boot=n_boot, seed=seed + 7919 * k)
        res.metrics = metrics[res.name]
    comparison = ClassifierComparison(y, results, estimate_r2=estimate_r2, estimate_weight=estimate_weight)
    for a, b in PAIRS:
        if a in results and b in results:
            both = results[a].evaluated & results[b].evaluated
            preds = {a: results[a].scores[both] >= 0.5, b: results[b].scores[both] >= 0.5}
            _, diffs = bootstrap_metrics(y[both], preds, n_boot=n_boot, seed=seed + 104729, pairs=((a, b),),
                                         p_values=comparison.p_values)
            comparison.differences.update(diffs)
            comparison.difference_n[f"{a}-{b}"] = int(both.sum())
    if all(k in results for k in NULL_TEST) and null_repeats > 1:
        first = (results[NULL_TEST[0]].scores, results[NULL_TEST[1]].scores)
        pairs = [first] + [null_test_scores(latents, labels, y, repeat_seed(seed, r), n_folds=n_folds, n_trees=n_trees,
                                            n_jobs=n_jobs, max_features=max_features, error_scale=error_scale)
                           for r in range(1, null_repeats)]
        key = "-".join(NULL_TEST)
        gain, lo, hi, p, gains = repeated_difference(y, pairs, n_boot=n_boot, seed=seed + 104729)
        comparison.differences[key]["balanced_accuracy"] = (gain, lo, hi)
        comparison.p_values[key] = p
        comparison.null_gains = gains
    return comparison


def repeat_seed(seed: int, repeat: int) -> int:
    """Seed of the test's ``repeat``-th cross-validation (0: the comparison's own)."""
    return seed + 1000 * repeat


def null_test_scores(latents: np.ndarray, labels: Mapping[str, np.ndarray], y: np.ndarray, seed: int, *,
                     n_folds: int, n_trees: int, n_jobs: int, max_features: float | str | None,
                     error_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores of the test's two sets, (e) and (f), on one cross-validation of its own: folds, latent
    estimates and forests all seeded with ``seed``."""
    folds = fold_ids(y, n_folds, seed)
    estimates = latent_label_estimates(latents, labels, folds, n_trees=n_trees, seed=seed, n_jobs=n_jobs)
    denoised, _ = denoised_labels(labels, estimates, error_scale=error_scale)
    with_latents, baseline = (out_of_fold_scores(feature_matrix(name, latents, labels, denoised)[0], y, folds,
                                                 n_trees=n_trees, seed=seed, n_jobs=n_jobs, max_features=max_features)
                              for name in NULL_TEST)
    return with_latents, baseline


def repeated_difference(y: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], *, n_boot: int, seed: int,
                        level: float = 0.95) -> tuple[float, float, float, float, list[float]]:
    """The balanced-accuracy difference a − b averaged over repeated cross-validations ``pairs`` of
    (scores a, scores b) on the same stars: (mean, lo, hi, one-sided p of "≤ 0", the repeats' differences).

    Its variance is the bootstrap's over stars (every repeat resampled with the same stars) plus the spread of
    the repeats' differences about their mean / number of repeats — the training noise (folds and forests) the
    bootstrap holds fixed. Normal interval and p; they agree: p < (1 − level)/2 ⟺ lo > 0."""
    y = np.asarray(y, bool)
    correct = [((np.asarray(a) >= 0.5) == y, (np.asarray(b) >= 0.5) == y) for a, b in pairs]
    def mean_gain(idx: np.ndarray) -> np.ndarray:
        yy = y[idx]
        return np.mean([class_metrics(yy, ca[idx])["balanced_accuracy"]
                        - class_metrics(yy, cb[idx])["balanced_accuracy"] for ca, cb in correct], axis=0)
    gains = [float(class_metrics(y, ca)["balanced_accuracy"] - class_metrics(y, cb)["balanced_accuracy"])
             for ca, cb in correct]
    draws = np.concatenate([mean_gain(idx) for idx in resample_indices(len(y), n_boot, seed)])
    draws = draws[np.isfinite(draws)]
    spread = float(np.var(gains, ddof=1)) / len(gains) if len(gains) > 1 else 0.0
    sd = float(np.sqrt(np.var(draws, ddof=1) + spread))
    mean = float(np.mean(gains))
    half = float(norm.ppf(0.5 + level / 2)) * sd
    p = float(norm.sf(mean / sd)) if sd > 0 else float(mean <= 0)
    return mean, mean - half, mean + half, p, gains

