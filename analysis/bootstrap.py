"""Seeded bootstrap over stars for two-class predictions: intervals of accuracy, balanced accuracy and per-class
recall, and *paired* intervals of differences between two predictors scored on the same stars.

Resampling the stars of out-of-fold predictions captures the finite test sample; it does not capture the
variance of retraining the classifier (that is smaller for 100-tree forests and would need repeated CV)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "recall_high", "recall_low")
CI_LEVEL = 0.95


def class_metrics(y: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics along the last axis of boolean arrays ``y`` (true class is high-α) and ``correct``.

    Works for (n,) arrays and for stacks of bootstrap resamples (b, n). A resample without any star of a class
    gives NaN for that class's recall and for the balanced accuracy."""
    y = np.asarray(y, bool)
    correct = np.asarray(correct, bool)
    n_high = y.sum(-1)
    n_low = (~y).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec_high = np.where(n_high > 0, (correct & y).sum(-1) / np.maximum(n_high, 1), np.nan)
        rec_low = np.where(n_low > 0, (correct & ~y).sum(-1) / np.maximum(n_low, 1), np.nan)
    return {"accuracy": correct.mean(-1), "balanced_accuracy": 0.5 * (rec_high + rec_low),
            "recall_high": rec_high, "recall_low": rec_low}


def resample_indices(n: int, n_boot: int, seed: int, chunk: int = 128) -> Iterator[np.ndarray]:
    """(≤chunk, n) blocks of star indices drawn with replacement; the same seed gives the same draws, so two
    calls with one seed resample the same stars (that is what makes paired intervals paired)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval, ignoring NaN resamples."""
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (float("nan"), float("nan"))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def one_sided_p(draws: np.ndarray) -> float:
    """Bootstrap p-value of "the difference is ≤ 0": the share of resampled differences at or below 0, with the
    +1 correction so that it is never exactly 0 ((k + 1) / (B + 1))."""
    draws = np.asarray(draws, np.float64)
    draws = draws[np.isfinite(draws)]
    return float((np.sum(draws <= 0) + 1) / (draws.size + 1))


def bootstrap_metrics(y: np.ndarray, predictions: dict[str, np.ndarray], *, n_boot: int, seed: int,
                      pairs: tuple[tuple[str, str], ...] = (), p_values: dict[str, float] | None = None
                      ) -> tuple[dict, dict]:
    """Point estimates and 95 % intervals for every predictor, and paired intervals of the balanced-accuracy
    difference for each (a, b) in ``pairs`` (a − b).

    All predictors must be scored on the same stars (same length as ``y``).
    Returns ({name: {metric: (value, lo, hi)}}, {"a-b": {metric: (value, lo, hi)}}); when ``p_values`` is a
    dict it also receives {"a-b": one-sided bootstrap p of balanced-accuracy difference ≤ 0}."""
    y = np.asarray(y, bool)
    correct = {k: np.asarray(p, bool) == y for k, p in predictions.items()}
    draws: dict[str, dict[str, list[np.ndarray]]] = {k: {m: [] for m in METRICS} for k in correct}
    for idx in resample_indices(len(y), n_boot, seed):
        yb = y[idx]
        for k, c in correct.items():
            for m, v in class_metrics(yb, c[idx]).items():
                draws[k][m].append(v)
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    stacked: dict[str, dict[str, np.ndarray]] = {}
    for k, c in correct.items():
        point = class_metrics(y, c)
        stacked[k] = {m: np.concatenate(draws[k][m]) if draws[k][m] else np.empty(0) for m in METRICS}
        out[k] = {m: (float(point[m]), *percentile_interval(stacked[k][m])) for m in METRICS}
    diffs: dict[str, dict[str, tuple[float, float, float]]] = {}
    for a, b in pairs:
        diffs[f"{a}-{b}"] = {m: (out[a][m][0] - out[b][m][0], *percentile_interval(stacked[a][m] - stacked[b][m]))
                             for m in METRICS}
        if p_values is not None:
            p_values[f"{a}-{b}"] = one_sided_p(stacked[a]["balanced_accuracy"] - stacked[b]["balanced_accuracy"])
    return out, diffs
