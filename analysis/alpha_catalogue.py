"""P(high-α) for every star with latents (issue 15, part 1).

A gradient-boosted classifier is fitted on the labelled stars of one sample, with features every inferred star
has (latent means and widths; NaN where a model leaves a width empty is handled natively), to predict the
Patil et al. 2023 high-α class. Its probabilities are calibrated with scikit-learn's CalibratedClassifierCV
(cv=5): isotonic regression when at least ``ISOTONIC_MIN`` labelled stars are there to fit it (it is
non-parametric and can follow any monotone distortion, but over-fits small samples), Platt scaling (a
two-parameter sigmoid) below that, where isotonic steps would follow the noise.

Features ``latents+colours`` add the Gaia BP−RP colour. Stars without it are not left to the trees' default
branch for missing values (the labelled stars nearly all have colours, so that branch is barely trained): a
second calibrated classifier on the latents alone answers for them, and they are counted. G is not a feature:
the labelled stars are brighter than the rest, so an apparent magnitude would carry that selection into the
probabilities of the unlabelled stars.

Everything reported (Brier score, reliability table, purity/completeness) is measured on out-of-fold
predictions: each labelled star's probability comes from a calibrated classifier that never saw it. The
catalogue itself (``p_all``) comes from the calibrated classifiers fitted on all labelled stars.

Computing (``fit_alpha_catalogue`` → ``AlphaCatalogue``) is separate from rendering (``render_catalogue``:
report and figure; ``AlphaCatalogue.rows``: SQL rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analysis import figures as figs
from analysis.calibration import PURITY_TARGET, Calibration, calibration
from analysis.report import Report, fmt_ci
from analysis.rows import AnalysisResult, make_row

ISOTONIC_MIN = 1000
CV_FOLDS = 5
THRESHOLDS = (0.5, 0.7, 0.9)
REPORT = "alpha_catalogue"
FEATURES = ("latents", "latents+colours")


@dataclass
class AlphaCatalogue:
    """The computed catalogue: probabilities, how they were made, and their calibration on held-out stars."""
    p_all: np.ndarray                  # (N,) calibrated P(high-α) for every star given
    p_oof: np.ndarray                  # (n_labelled,) out-of-fold calibrated P for the training stars
    method: str                        # 'isotonic' | 'sigmoid'
    sample: str
    held_out: Calibration              # p_oof against the training stars' classes
    features: str = "latents"
    n_without_colours: int = 0         # stars answered by the latents-only classifier (features with colours)
    extra: dict[str, Calibration] = field(default_factory=dict)   # e.g. the simulator's true classes

    @property
    def threshold(self) -> float | None:
        """The lowest threshold at which held-out purity reaches PURITY_TARGET."""
        return self.held_out.threshold_for_purity(PURITY_TARGET)

    @property
    def n_candidates(self) -> int:
        t = self.threshold
        return int(np.sum(self.p_all >= t)) if t is not None else 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        return catalogue_rows(self)

    @property
    def headline(self) -> dict[str, Any]:
        return catalogue_headline(self)


def _calibrated(n_labelled: int, seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    method = "isotonic" if n_labelled >= ISOTONIC_MIN else "sigmoid"
    base = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                          l2_regularization=1.0, random_state=seed)
    return CalibratedClassifierCV(base, method=method, cv=CV_FOLDS), method


def _check_classes(y: np.ndarray, sample: str) -> None:
    n, n_high = len(y), int(y.sum())
    if n < 2 * CV_FOLDS or n_high < CV_FOLDS or (n - n_high) < CV_FOLDS:
        raise ValueError(f"sample {sample}: {n} labelled stars ({n_high} high-α) — at least {CV_FOLDS} of "
                         "each class are needed to fit and calibrate the classifier")


def _fit_predict(x_train: np.ndarray, y: np.ndarray, x_all: np.ndarray, seed: int):
    """(out-of-fold P of the training stars, P of every star, calibration method)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    model, method = _calibrated(len(y), seed)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    p_oof = cross_val_predict(clone(model), x_train, y, cv=folds, method="predict_proba")[:, 1]
    model.fit(x_train, y)
    return p_oof, model.predict_proba(x_all)[:, 1], method


def fit_alpha_catalogue(features: np.ndarray, train: np.ndarray, high: np.ndarray, *, sample: str,
                        seed: int = 0, colours: np.ndarray | None = None) -> AlphaCatalogue:
    """features (N, F) for every star; train (N,) bool: the labelled stars of the sample with a decided class;
    high (N,) bool: their class (ignored elsewhere). colours (N,) or (N, k): added as features; the stars
    without them are answered by a classifier on ``features`` alone."""
    features = np.asarray(features, np.float64)
    train = np.asarray(train, bool)
    high = np.asarray(high, bool)
    y = high[train].astype(int)
    _check_classes(y, sample)
    if colours is None:
        p_oof, p_all, method = _fit_predict(features[train], y, features, seed)
        return AlphaCatalogue(p_all, p_oof, method, sample, calibration(p_oof, y))
    colours = np.asarray(colours, np.float64).reshape(len(features), -1)
    has = np.all(np.isfinite(colours), axis=1)
    x = np.column_stack([features, colours])
    with_c = train & has
    _check_classes(high[with_c], sample)
    p_oof_c, p_all, method = _fit_predict(x[with_c], high[with_c].astype(int), x, seed)
    oof = np.full(len(features), np.nan)
    oof[with_c] = p_oof_c
    if (~has).any():
        # the stars without colours: the latents-only classifier, fitted on every training star
        p_oof_l, p_all_l, _ = _fit_predict(features[train], y, features, seed)
        p_all = np.where(has, p_all, p_all_l)
        oof[train & ~has] = p_oof_l[~has[train]]
    p_oof = oof[train]
    return AlphaCatalogue(p_all, p_oof, method, sample, calibration(p_oof, y), features="latents+colours",
                          n_without_colours=int((~has).sum()))


# --- rendering: SQL rows, headline, report -------------------------------------------------------------------
def catalogue_rows(cat: AlphaCatalogue) -> list[dict[str, Any]]:
    def row(stat, subj, value, **kw):
        return make_row(REPORT, cat.sample, stat, subj, value, **kw)
    h, n, n_all = cat.held_out, cat.held_out.n, len(cat.p_all)
    rows = [row("brier", "out_of_fold", h.brier, n=n), row("ece", "out_of_fold", h.ece, n=n),
            row("n_labelled", "out_of_fold", n, n=n), row("n_high_alpha", "out_of_fold", h.n_positive, n=n),
            row("n_stars", "catalogue", n_all, n=n_all),
            row("n_without_colours", "catalogue", cat.n_without_colours, n=n_all)]
    for b in h.bins:
        where = dict(n=b.n, bin_var="p_high_alpha", bin_lo=b.lo, bin_hi=b.hi)
        rows.append(row("reliability_predicted", "out_of_fold", b.predicted, **where))
        rows.append(row("reliability_observed", "out_of_fold", b.observed, ci=(b.ci_lo, b.ci_hi), **where))
    for t in THRESHOLDS:
        purity, completeness, n_sel = h.at(t)
        rows.append(row("purity", "out_of_fold", purity, n=n_sel, bin_var="threshold", bin_lo=t))
        rows.append(row("completeness", "out_of_fold", completeness, n=n_sel, bin_var="threshold", bin_lo=t))
    rows.append(row("threshold_purity_0.9", "out_of_fold", cat.threshold, n=n))
    rows.append(row("n_candidates_purity_0.9", "catalogue", cat.n_candidates, n=n_all, bin_var="threshold",
                    bin_lo=cat.threshold))
    return rows


def calibration_summary(c: Calibration) -> dict[str, Any]:
    """A Calibration as JSON: Brier, ECE, reliability bins and purity/completeness at THRESHOLDS."""
    return {"n": c.n, "n_positive": c.n_positive, "brier": c.brier, "ece": c.ece,
            "reliability": [{"lo": b.lo, "hi": b.hi, "predicted": b.predicted, "observed": b.observed, "n": b.n,
                             "ci": [b.ci_lo, b.ci_hi]} for b in c.bins],
            "thresholds": {f"{t:g}": dict(zip(("purity", "completeness", "n"), c.at(t))) for t in THRESHOLDS},
            "threshold_purity_0.9": c.threshold_for_purity(PURITY_TARGET)}


def catalogue_headline(cat: AlphaCatalogue) -> dict[str, Any]:
    held = calibration_summary(cat.held_out)
    return {"sample": cat.sample, "calibration": cat.method, "features": cat.features,
            "n_without_colours": cat.n_without_colours, "n_labelled": held["n"], "n_high_alpha": held["n_positive"],
            "n_stars": len(cat.p_all), "brier": held["brier"], "ece": held["ece"],
            "reliability": held["reliability"], "thresholds": held["thresholds"],
            "threshold_purity_0.9": cat.threshold, "n_candidates_purity_0.9": cat.n_candidates,
            **({"known_classes": {k: calibration_summary(c) for k, c in cat.extra.items()}} if cat.extra else {})}


_EXTRA_TEXT = {"simulated_truth": "the simulator's true α class of the stars APOGEE did not label"}


def render_catalogue(cat: AlphaCatalogue, out_dir: Path | str,
                     titles: Mapping[str, str] | None = None) -> AnalysisResult:
    """report.md/report.html and one calibration figure per set of known classes (held-out labelled stars, and
    each of ``cat.extra``) into ``out_dir``; returns the rows, figures, headline and report path."""
    out_dir = Path(out_dir)
    titles = {**_EXTRA_TEXT, **(titles or {})}
    sets = {"held_out": ("held-out (out-of-fold) labelled stars", cat.held_out)}
    sets.update({k: (titles.get(k, k), c) for k, c in cat.extra.items()})
    result = AnalysisResult(rows=cat.rows, headline=cat.headline)
    report = Report(f"P(high-α) catalogue ({cat.sample} sample, {len(cat.p_all):,} stars)")
    report.paragraph(
        f"A gradient-boosted classifier on the features '{cat.features}' learns the Patil et al. 2023 high-α class "
        f"from {cat.held_out.n:,} labelled {cat.sample} stars ({cat.held_out.n_positive:,} high-α); "
        f"{cat.method} calibration on out-of-fold predictions. High-α candidates: the {cat.n_candidates:,} stars "
        f"with P ≥ {_thr(cat.threshold)}, the lowest threshold at which held-out purity reaches {PURITY_TARGET:g}."
        + (f" {cat.n_without_colours:,} stars have no BP−RP colour and get P from the latents-only classifier."
           if cat.features != "latents" else ""))
    for key, (what, cal) in sets.items():
        report.heading(f"Calibration on {what}")
        report.table(["stars", "of the class", "Brier score", "expected calibration error",
                      f"threshold for purity {PURITY_TARGET:g}"],
                     [[cal.n, cal.n_positive, cal.brier, cal.ece, _thr(cal.threshold_for_purity())]])
        report.table(["P(high-α) bin", "stars", "mean predicted", "observed fraction [95 %]"],
                     [[f"[{b.lo:.1f}, {b.hi:.1f})", b.n, b.predicted, fmt_ci(b.observed, b.ci_lo, b.ci_hi)]
                      for b in cal.bins])
        report.table(["threshold", "purity", "completeness", "stars selected"],
                     [[f"{t:g}", *cal.at(t)] for t in THRESHOLDS])
        path = figs.calibration_curves(cal, out_dir / f"calibration_{key}.png", what=what,
                                       threshold=cat.threshold if key == "held_out" else None)
        result.figures.append(path)
        report.image(path, figs.caption(path))
    result.report_path = report.write(out_dir)
    return result


def _thr(t: float | None) -> str:
    return "none" if t is None else f"{t:.2f}"

