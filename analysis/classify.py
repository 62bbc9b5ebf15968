"""Does the latent space know [α/M] beyond what the labels know? Random forests predicting the Patil high/low-α
class from five feature sets, scored out of fold (stratified k-fold, the same folds for every feature set) and
compared with seeded bootstrap intervals (docs/science.md §9.3).

Feature sets (built with ``np.column_stack``: one row per star, never the release's row-scrambling reshape):
  latents         the 6 latent means                                   (a)
  m_h             [M/H]                                               (b)
  labels          Teff, log g, [M/H]                                  (c)
  labels_colours  Teff, log g, [M/H], J−H, J−K — only the stars whose colours are finite  (d)
  labels_latents  Teff, log g, [M/H] and the latent means             (e)
The key number is the paired interval of balanced accuracy (e) − (c): if it excludes 0 the latents carry α
information the labels do not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from analysis.bootstrap import METRICS, bootstrap_metrics
from analysis.rows import Progress, make_row, no_progress

FEATURE_SETS = ("latents", "m_h", "labels", "labels_colours", "labels_latents")
DESCRIPTIONS = {
    "latents": "(a) latent means", "m_h": "(b) [M/H]", "labels": "(c) Teff, log g, [M/H]",
    "labels_colours": "(d) Teff, log g, [M/H], J-H, J-K", "labels_latents": "(e) Teff, log g, [M/H] + latents",
}
# Paired balanced-accuracy differences reported (a − b).
# Features tried per split: all of them (bagged trees). sklearn's default 'sqrt' gives the 3-label set one
# candidate per split but the 9-feature set three, a capacity difference that, in a null simulation (latents =
# functions of the labels + noise), biased (e) − (c) by about +0.01 in balanced accuracy. With all features
# the null difference centres on 0. The release used the default.
MAX_FEATURES: float | str | None = None
PAIRS = (("labels_latents", "labels"), ("latents", "labels"), ("labels_colours", "labels"))


def feature_matrix(name: str, latents: np.ndarray, labels: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """(N, k) features of one set and their names. Stars with non-finite colours get NaN colour columns."""
    lab = [np.asarray(labels[k], np.float64) for k in ("teff", "logg", "m_h")]
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
            raise ValueError(f"fold {k}: training stars hold a single alpha class; too few stars for {len(np.unique(folds))} folds")
        forest = RandomForestClassifier(n_estimators=n_trees, random_state=seed + k, n_jobs=n_jobs, max_features=max_features)
        forest.fit(X[train], y[train])
        scores[test] = forest.predict_proba(X[test])[:, list(forest.classes_).index(True)]
    return scores


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
        return out


def compare_feature_sets(latents: np.ndarray, labels: Mapping[str, np.ndarray], high: np.ndarray, *,
                         feature_sets: tuple[str, ...] = FEATURE_SETS, n_folds: int = 5, n_boot: int = 1000,
                         n_trees: int = 100, seed: int = 0, n_jobs: int = 2, min_colour_stars: int = 50,
                         max_features: float | str | None = MAX_FEATURES, progress: Progress = no_progress) -> ClassifierComparison:
    """Score every feature set out of fold on the same stars and folds; bootstrap intervals (seeded).

    ``latents`` (N, d), ``labels`` (N,) arrays with teff, logg, m_h (and j, h, k for set d), ``high`` (N,) bool.
    All inputs must already be restricted to the sample with a valid α class and finite labels and latents.
    Set (d) is scored only on stars with finite J−H and J−K, and skipped when fewer than ``min_colour_stars``.
    """
    y = np.asarray(high, bool)
    n = len(y)
    n_high = int(y.sum())
    if min(n_high, n - n_high) < n_folds:
        raise ValueError(f"need at least {n_folds} stars of each alpha class, have {n_high} high and {n - n_high} low")
    folds = fold_ids(y, n_folds, seed)
    results: dict[str, FeatureSetResult] = {}
    for i, name in enumerate(feature_sets):
        progress(i, len(feature_sets), f"random forests on feature set {DESCRIPTIONS.get(name, name)}")
        X, names = feature_matrix(name, latents, labels)
        rows = np.all(np.isfinite(X), axis=1)
        if name == "labels_colours" and rows.sum() < min_colour_stars:
            continue
        if not rows.all() and name != "labels_colours":
            bad = int(np.flatnonzero(~rows)[0])
            raise ValueError(f"feature set {name}: star {bad} has a non-finite feature ({names}); restrict the sample first")
        scores = out_of_fold_scores(X, y, folds, n_trees=n_trees, seed=seed, n_jobs=n_jobs, rows=rows,
                                    max_features=max_features)
        results[name] = FeatureSetResult(name, names, scores, rows, {})
    progress(len(feature_sets), len(feature_sets), "bootstrap intervals")
    # every set on its own evaluated stars; paired differences on the stars both sets scored
    for k, res in enumerate(results.values()):
        ev = res.evaluated
        metrics, _ = bootstrap_metrics(y[ev], {res.name: res.scores[ev] >= 0.5}, n_boot=n_boot, seed=seed + 7919 * k)
        res.metrics = metrics[res.name]
    comparison = ClassifierComparison(y, results)
    for a, b in PAIRS:
        if a in results and b in results:
            both = results[a].evaluated & results[b].evaluated
            preds = {a: results[a].scores[both] >= 0.5, b: results[b].scores[both] >= 0.5}
            _, diffs = bootstrap_metrics(y[both], preds, n_boot=n_boot, seed=seed + 104729, pairs=((a, b),))
            comparison.differences.update(diffs)
            comparison.difference_n[f"{a}-{b}"] = int(both.sum())
    return comparison
