"""How well probabilities of a two-class answer match the class where it is known: the reliability table (with
binomial intervals), the expected calibration error, the Brier score, and purity and completeness of the stars
selected by each probability threshold. One typed result (``Calibration``) serves the held-out labelled stars
of the P(high-α) catalogue, the simulator's never-labelled stars whose class is known, the report and its figure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELIABILITY_BINS = 10
PURITY_TARGET = 0.9
THRESHOLD_STEP = 0.01


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a binomial fraction k/n (NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    predicted: float        # mean probability of the bin's stars
    observed: float         # fraction of them in the class
    n: int
    ci_lo: float            # 95 % Wilson interval of ``observed``
    ci_hi: float

    @property
    def within_interval(self) -> bool:
        return self.ci_lo <= self.predicted <= self.ci_hi


@dataclass(frozen=True)
class Calibration:
    """Probabilities ``p`` scored against a known class ``y`` (arrays kept for the curves)."""
    p: np.ndarray
    y: np.ndarray
    bins: tuple[ReliabilityBin, ...]

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())

    @property
    def brier(self) -> float:
        return float(np.mean((self.p - self.y) ** 2)) if self.n else float("nan")

    @property
    def ece(self) -> float:
        """Expected calibration error: the star-weighted mean |observed − predicted| over the reliability bins."""
        return float(sum(b.n * abs(b.observed - b.predicted) for b in self.bins) / self.n) if self.n else float("nan")

    def at(self, threshold: float) -> tuple[float, float, int]:
        return purity_completeness(self.p, self.y, threshold)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds, purity, completeness) on a grid of THRESHOLD_STEP (purity NaN where nothing is selected)."""
        grid = np.round(np.arange(0.0, 1.0, THRESHOLD_STEP), 2)
        pc = np.array([self.at(t)[:2] for t in grid]).reshape(len(grid), 2)
        return grid, pc[:, 0], pc[:, 1]

    def threshold_for_purity(self, target: float = PURITY_TARGET) -> float | None:
        """The lowest threshold on the grid at which purity reaches ``target`` (None: never)."""
        grid, purity, _ = self.curves()
        ok = np.flatnonzero(np.nan_to_num(purity, nan=-1.0) >= target)
        return float(grid[ok[0]]) if ok.size else None


def purity_completeness(p: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """(purity, completeness, n selected) of the stars with p ≥ threshold (purity NaN when none is)."""
    sel = p >= threshold
    n_sel, n_pos = int(sel.sum()), int(y.sum())
    purity = float(y[sel].mean()) if n_sel else float("nan")
    completeness = float(y[sel].sum() / n_pos) if n_pos else float("nan")
    return purity, completeness, n_sel


def reliability(p: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple[ReliabilityBin, ...]:
    """Equal-width probability bins (empty bins left out), each with its observed fraction's Wilson interval."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            k, n = int(y[m].sum()), int(m.sum())
            out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), float(p[m].mean()), k / n, n,
                                      *wilson(k, n)))
    return tuple(out)


def calibration(p: np.ndarray, y: np.ndarray) -> Calibration:
    p = np.asarray(p, np.float64)
    y = np.asarray(y, bool)
    return Calibration(p=p, y=y, bins=reliability(p, y))
