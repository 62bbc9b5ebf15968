"""P(high-α) for every star with latents (issue 15, part 1).

A gradient-boosted classifier is fitted on the labelled stars of one sample, with features every inferred star
has (latent means and widths; NaN where a model leaves a width empty is handled natively), to predict the
Patil et al. 2023 high-α class. Its probabilities are calibrated with scikit-learn's CalibratedClassifierCV
(cv=5): isotonic regression when at least ``ISOTONIC_MIN`` labelled stars are there to fit it (it is
non-parametric and can follow any monotone distortion, but over-fits small samples), Platt scaling (a
two-parameter sigmoid) below that, where isotonic steps would follow the noise.

Everything reported (Brier score, reliability table, purity/completeness) is measured on out-of-fold
predictions: each labelled star's probability comes from a calibrated classifier that never saw it. The
catalogue itself (``p_all``) comes from one calibrated classifier fitted on all labelled stars.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.rows import make_row

ISOTONIC_MIN = 1000
CV_FOLDS = 5
THRESHOLDS = (0.5, 0.7, 0.9)
RELIABILITY_BINS = 10
PURITY_TARGET = 0.9
REPORT = "alpha_catalogue"


@dataclass
class AlphaCatalogue:
    p_all: np.ndarray                  # (N,) calibrated P(high-α) for every star given
    p_oof: np.ndarray                  # (n_labelled,) out-of-fold calibrated P for the training stars
    method: str                        # 'isotonic' | 'sigmoid'
    rows: list[dict] = field(default_factory=list)
    headline: dict = field(default_factory=dict)


def _calibrated(n_labelled: int, seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    method = "isotonic" if n_labelled >= ISOTONIC_MIN else "sigmoid"
    base = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                          l2_regularization=1.0, random_state=seed)
    return CalibratedClassifierCV(base, method=method, cv=CV_FOLDS), method


def reliability(p: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS) -> list[tuple[float, float, float, float, int]]:
    """(lo, hi, mean predicted, observed fraction, n) per equal-width probability bin; empty bins left out."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append((float(edges[b]), float(edges[b + 1]), float(p[m].mean()), float(y[m].mean()), int(m.sum())))
    return out


def purity_completeness(p: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """(purity, completeness, n selected) of the stars with p ≥ threshold (purity NaN when none is)."""
    sel = p >= threshold
    n_sel, n_pos = int(sel.sum()), int(y.sum())
    purity = float(y[sel].mean()) if n_sel else float("nan")
    completeness = float(y[sel].sum() / n_pos) if n_pos else float("nan")
    return purity, completeness, n_sel


def purity_threshold(p: np.ndarray, y: np.ndarray, target: float = PURITY_TARGET) -> float | None:
    """The lowest threshold on a 0.01 grid at which out-of-fold purity reaches ``target`` (None: never)."""
    for t in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        purity, _, n_sel = purity_completeness(p, y, t)
        if n_sel and purity >= target:
            return float(t)
    return None


def fit_alpha_catalogue(features: np.ndarray, train: np.ndarray, high: np.ndarray, *, sample: str,
                        seed: int = 0) -> AlphaCatalogue:
    """features (N, F) for every star; train (N,) bool: the labelled stars of the sample with a decided class;
    high (N,) bool: their class (ignored elsewhere)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    features = np.asarray(features, np.float64)
    train = np.asarray(train, bool)
    y = np.asarray(high, bool)[train].astype(int)
    n = int(train.sum())
    if n < 2 * CV_FOLDS or y.sum() < CV_FOLDS or (n - y.sum()) < CV_FOLDS:
        raise ValueError(f"sample {sample}: {n} labelled stars ({int(y.sum())} high-α) — at least {CV_FOLDS} of "
                         "each class are needed to fit and calibrate the classifier")
    model, method = _calibrated(n, seed)
    x = features[train]
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    p_oof = cross_val_predict(clone(model), x, y, cv=folds, method="predict_proba")[:, 1]
    model.fit(x, y)
    p_all = model.predict_proba(features)[:, 1]
    rows, headline = _summary(p_oof, y, p_all, sample, method)
    return AlphaCatalogue(p_all=p_all, p_oof=p_oof, method=method, rows=rows, headline=headline)


def _summary(p_oof: np.ndarray, y: np.ndarray, p_all: np.ndarray, sample: str, method: str) -> tuple[list, dict]:
    row = lambda stat, subj, value, **kw: make_row(REPORT, sample, stat, subj, value, **kw)
    n = len(y)
    brier = float(np.mean((p_oof - y) ** 2))
    rows = [row("brier", "out_of_fold", brier, n=n), row("n_labelled", "out_of_fold", n, n=n),
            row("n_high_alpha", "out_of_fold", int(y.sum()), n=n), row("n_stars", "catalogue", len(p_all), n=len(p_all))]
    table = reliability(p_oof, y)
    for lo, hi, pred, obs, k in table:
        rows.append(row("reliability_predicted", "out_of_fold", pred, n=k, bin_var="p_high_alpha", bin_lo=lo, bin_hi=hi))
        rows.append(row("reliability_observed", "out_of_fold", obs, n=k, bin_var="p_high_alpha", bin_lo=lo, bin_hi=hi))
    at = {}
    for t in THRESHOLDS:
        purity, completeness, n_sel = purity_completeness(p_oof, y, t)
        rows.append(row("purity", "out_of_fold", purity, n=n_sel, bin_var="threshold", bin_lo=t))
        rows.append(row("completeness", "out_of_fold", completeness, n=n_sel, bin_var="threshold", bin_lo=t))
        at[f"{t:g}"] = {"purity": purity, "completeness": completeness, "n": n_sel}
    t90 = purity_threshold(p_oof, y)
    n_candidates = int(np.sum(p_all >= t90)) if t90 is not None else 0
    rows.append(row("threshold_purity_0.9", "out_of_fold", t90, n=n))
    rows.append(row("n_candidates_purity_0.9", "catalogue", n_candidates, n=len(p_all), bin_var="threshold",
                    bin_lo=t90))
    headline = {"sample": sample, "calibration": method, "n_labelled": n, "n_high_alpha": int(y.sum()),
                "n_stars": len(p_all), "brier": brier,
                "reliability": [{"lo": lo, "hi": hi, "predicted": pr, "observed": ob, "n": k}
                                for lo, hi, pr, ob, k in table],
                "thresholds": at, "threshold_purity_0.9": t90, "n_candidates_purity_0.9": n_candidates}
    return rows, headline
