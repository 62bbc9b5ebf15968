"""How well do models reconstruct held-out XP spectra, per coefficient and per region of label space?
(docs/science.md §7–8)

Per model, on the same held-out stars: per-coefficient z-score bias and width without and with the learned
scatter, per-coefficient mean squared z (msz, msz_scatter), per-band χ²/dof with the full covariance when the
correlations are given (and with Σ + diag(ŝ²)), all also within bins of Teff, log g and [M/H]. Between two
models: the ratio of per-coefficient mean squared z ("who reconstructs which coefficient better"; this is what
the release plotted as an "RMSE ratio") with paired bootstrap intervals, and per (Teff, log g) cell, to find
where one model is worse — e.g. where the label-dependent model had few training labels.

Subjects encode the model: 'svae:bp_3' (model:coefficient), 'svae:bp' (model:band), 'svae/label:bp_3' (ratio
A/B), 'svae/label@logg[2,2.5)' (ratio in one (Teff, log g) cell, bin_var 'teff').
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from analysis.bimodality import bin_masks
from analysis.bootstrap import percentile_interval, resample_indices
from analysis.rows import make_row
from analysis.zstats import BAND_SLICES, COEFF_NAMES, band_chi2, zscores

N_TOTAL = 2 * 55
DEFAULT_BINS = {
    "teff": tuple(range(3500, 7001, 500)),
    "logg": tuple(np.round(np.arange(0.0, 5.01, 0.5), 2)),
    "m_h": tuple(np.round(np.arange(-2.0, 0.51, 0.25), 2)),
}
DEFAULT_CELL_EDGES = {"teff": tuple(range(3500, 7001, 250)), "logg": tuple(np.round(np.arange(0.0, 5.01, 0.5), 2))}


@dataclass
class ModelOutputs:
    """Per-star arrays of one model on held-out stars, all in one unit system.

    x, x_hat, sigma: (N, 110) observed coefficients, reconstruction, observed errors; scatter: (N, 110) learned
    intrinsic scatter or None; bp_correlations, rp_correlations: (N, 1485) archive correlations or None."""
    name: str
    x: np.ndarray
    x_hat: np.ndarray
    sigma: np.ndarray
    scatter: np.ndarray | None = None
    bp_correlations: np.ndarray | None = None
    rp_correlations: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    ALIASES = {"x": ("x",), "x_hat": ("x_hat", "xhat", "reconstruction"), "sigma": ("sigma", "x_err", "errors"),
               "scatter": ("scatter", "s_hat"), "bp_correlations": ("bp_correlations", "bp_coefficient_correlations"),
               "rp_correlations": ("rp_correlations", "rp_coefficient_correlations")}

    @classmethod
    def from_mapping(cls, name: str, arrays: "ModelOutputs | Mapping[str, Any]") -> "ModelOutputs":
        if isinstance(arrays, ModelOutputs):
            return arrays
        found: dict[str, Any] = {}
        for key, aliases in cls.ALIASES.items():
            for a in aliases:
                if a in arrays and arrays[a] is not None:
                    found[key] = np.asarray(arrays[a], np.float64)
                    break
        for key in ("x", "x_hat", "sigma"):
            if key not in found:
                raise KeyError(f"model {name!r}: required array {key!r} missing (accepted names {cls.ALIASES[key]}; "
                               f"have {sorted(arrays)})")
        out = cls(name=name, **found)
        out.validate()
        return out

    def validate(self) -> None:
        n = self.x.shape[0]
        for key, width in (("x", N_TOTAL), ("x_hat", N_TOTAL), ("sigma", N_TOTAL), ("scatter", N_TOTAL),
                           ("bp_correlations", 1485), ("rp_correlations", 1485)):
            a = getattr(self, key)
            if a is not None and a.shape != (n, width):
                raise ValueError(f"model {self.name!r}: {key} has shape {a.shape}, expected ({n}, {width})")
        bad = np.argwhere(~(self.sigma > 0) & np.isfinite(self.sigma))
        if len(bad):
            star, coeff = bad[0]
            raise ValueError(f"model {self.name!r}: sigma must be > 0; star row {star}, field {COEFF_NAMES[coeff]} "
                             f"is {self.sigma[star, coeff]!r}")

    @property
    def delta(self) -> np.ndarray:
        return self.x_hat - self.x

    def z(self, with_scatter: bool) -> np.ndarray:
        """(N, 110) z-scores; with_scatter falls back to no scatter for a model without one. Cached."""
        key = ("z", with_scatter)
        if key not in self._cache:
            self._cache[key] = zscores(self.delta, self.sigma, self.scatter if with_scatter else None)
        return self._cache[key]

    def chi2_dof(self, band: str, with_scatter: bool) -> np.ndarray:
        """(N,) per-star χ²/dof of one band (dof = 55), full covariance when correlations are present. Cached."""
        key = ("chi2", band, with_scatter)
        if key not in self._cache:
            self._cache[key] = self._chi2_dof(band, with_scatter)
        return self._cache[key]

    def _chi2_dof(self, band: str, with_scatter: bool) -> np.ndarray:
        sl = BAND_SLICES[band]
        corr = self.bp_correlations if band == "bp" else self.rp_correlations
        if corr is None:
            # Without the archive correlations the χ² is unavailable (NaN → NULL rows, "–" in the report):
            # a diagonal χ² would silently understate correlated residuals.
            return np.full(len(self.x), np.nan)
        scatter = self.scatter[:, sl] if (with_scatter and self.scatter is not None) else None
        return band_chi2(self.delta[:, sl], self.sigma[:, sl], corr, scatter) / (sl.stop - sl.start)


def _mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """nan-aware mean, its normal 95 % half width, the std, and the count along ``axis``."""
    n = np.sum(np.isfinite(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, axis=axis) if values.size else np.full(values.shape[1 - axis], np.nan)
        std = np.nanstd(values, axis=axis, ddof=1) if values.shape[axis] > 1 else np.full_like(mean, np.nan)
        half = 1.96 * std / np.sqrt(n)
    return mean, half, std, n


def coefficient_rows(model: ModelOutputs, sample: str, stars: np.ndarray | None = None, *, bin_var: str | None = None,
                     bin_lo: float | None = None, bin_hi: float | None = None, full: bool = True) -> list[dict]:
    """Per-coefficient z-score bias/width/msz (without and with scatter) and per-band χ²/dof of ``stars``.

    ``full`` False keeps only msz, msz_scatter and the band summaries (used inside label bins)."""
    stars = np.ones(model.x.shape[0], bool) if stars is None else stars
    rows: list[dict] = []
    kw = dict(bin_var=bin_var, bin_lo=bin_lo, bin_hi=bin_hi)
    variants = [("", False)] + ([("_scatter", True)] if model.scatter is not None else [])
    for suffix, with_scatter in variants:
        z = model.z(with_scatter)[stars]
        with np.errstate(invalid="ignore"):
            bias, bias_half, width, n = _mean_ci(z)
            msz, msz_half, _, _ = _mean_ci(z ** 2)
        for j, cname in enumerate(COEFF_NAMES):
            subj = f"{model.name}:{cname}"
            if full:
                rows.append(make_row("reconstruction", sample, f"zscore_bias{suffix}", subj, bias[j],
                                     ci=(bias[j] - bias_half[j], bias[j] + bias_half[j]), n=n[j], **kw))
                rows.append(make_row("reconstruction", sample, f"zscore_width{suffix}", subj, width[j], n=n[j], **kw))
            rows.append(make_row("reconstruction", sample, f"msz{suffix}", subj, msz[j],
                                 ci=(msz[j] - msz_half[j], msz[j] + msz_half[j]), n=n[j], **kw))
        for band, sl in BAND_SLICES.items():
            with np.errstate(invalid="ignore"):
                band_msz = np.nanmean(z[:, sl] ** 2, axis=1) if z.shape[0] else np.empty(0)
            m, h, _, nb = _mean_ci(band_msz[:, None])
            rows.append(make_row("reconstruction", sample, f"msz{suffix}", f"{model.name}:{band}", m[0],
                                 ci=(m[0] - h[0], m[0] + h[0]), n=nb[0], **kw))
            chi = model.chi2_dof(band, with_scatter)[stars]
            m, h, _, nb = _mean_ci(chi[:, None])
            rows.append(make_row("reconstruction", sample, f"chi2_dof{suffix}", f"{model.name}:{band}", m[0],
                                 ci=(m[0] - h[0], m[0] + h[0]), n=nb[0], **kw))
            finite = chi[np.isfinite(chi)]
            rows.append(make_row("reconstruction", sample, f"chi2_dof_median{suffix}", f"{model.name}:{band}",
                                 np.median(finite) if finite.size else np.nan, n=finite.size, **kw))
    return rows


def msz_ratio(a: ModelOutputs, b: ModelOutputs, *, with_scatter: bool = False, stars: np.ndarray | None = None,
              n_boot: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-coefficient msz(a)/msz(b) on the same stars, with paired bootstrap 95 % intervals.

    Returns (ratio, lo, hi, n), each (110,). Ratio < 1: model a reconstructs that coefficient better.
    Stars where either model's z is non-finite are dropped per coefficient."""
    stars = np.ones(a.x.shape[0], bool) if stars is None else stars
    za, zb = a.z(with_scatter)[stars] ** 2, b.z(with_scatter)[stars] ** 2
    ok = np.isfinite(za) & np.isfinite(zb)
    za, zb = np.where(ok, za, 0.0), np.where(ok, zb, 0.0)
    n = ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = za.sum(0) / zb.sum(0)
    draws = []
    if len(za):
        for idx in resample_indices(len(za), n_boot, seed, chunk=32):
            # counts of each star in each resample: (chunk, N) @ (N, 110) sums resampled z² per coefficient
            counts = np.stack([np.bincount(row, minlength=len(za)) for row in idx]).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                draws.append((counts @ za) / (counts @ zb))
    draws_arr = np.concatenate(draws) if draws else np.full((0, N_TOTAL), np.nan)
    lo = np.full(N_TOTAL, np.nan)
    hi = np.full(N_TOTAL, np.nan)
    for j in range(N_TOTAL):
        lo[j], hi[j] = percentile_interval(draws_arr[:, j])
    return ratio, lo, hi, n


@dataclass
class Cell:
    """One (Teff, log g) cell of a model comparison. ratio: mean z² of a over that of b (all coefficients)."""
    teff_lo: float
    teff_hi: float
    logg_lo: float
    logg_hi: float
    n: int
    ratio: float
    ci_lo: float
    ci_hi: float
    n_train_labels: int | None = None


def star_msz(model: ModelOutputs, with_scatter: bool = False) -> np.ndarray:
    """Per star: mean over its finite coefficients of z²."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(model.z(with_scatter) ** 2, axis=1)


def compare_by_cell(a: ModelOutputs, b: ModelOutputs, teff: np.ndarray, logg: np.ndarray, *,
                    teff_edges=DEFAULT_CELL_EDGES["teff"], logg_edges=DEFAULT_CELL_EDGES["logg"],
                    min_n: int = 20, n_boot: int = 200, seed: int = 0, with_scatter: bool = False,
                    train_teff: np.ndarray | None = None, train_logg: np.ndarray | None = None) -> list[Cell]:
    """msz(a)/msz(b) per (Teff, log g) cell holding ≥ ``min_n`` stars, with a paired bootstrap interval.

    ``train_teff``/``train_logg``: the labelled training stars of the label-dependent model, counted per cell
    so the ratio can be read against label density."""
    sa, sb = star_msz(a, with_scatter), star_msz(b, with_scatter)
    ok = np.isfinite(sa) & np.isfinite(sb)
    cells = []
    k = 0
    for tlo, thi, in_t in bin_masks(teff, teff_edges):
        for glo, ghi, in_g in bin_masks(logg, logg_edges):
            sel = in_t & in_g & ok
            if sel.sum() < min_n:
                continue
            xa, xb = sa[sel], sb[sel]
            boots = []
            for idx in resample_indices(len(xa), n_boot, seed + k):
                boots.append(xa[idx].mean(1) / xb[idx].mean(1))
            k += 1
            lo, hi = percentile_interval(np.concatenate(boots)) if boots else (np.nan, np.nan)
            n_train = None
            if train_teff is not None and train_logg is not None:
                tt, tg = np.asarray(train_teff), np.asarray(train_logg)
                n_train = int(np.sum((tt >= tlo) & (tt < thi) & (tg >= glo) & (tg < ghi)))
            cells.append(Cell(tlo, thi, glo, ghi, int(sel.sum()), float(xa.mean() / xb.mean()), lo, hi, n_train))
    return cells


def worse_cells(cells: list[Cell], *, threshold: float = 1.0) -> list[Cell]:
    """Cells where model a is worse than model b beyond doubt (interval above ``threshold``), worst first."""
    return sorted([c for c in cells if np.isfinite(c.ci_lo) and c.ci_lo > threshold], key=lambda c: -c.ratio)


def cell_rows(cells: list[Cell], a: str, b: str, sample: str) -> list[dict]:
    rows = []
    for c in cells:
        subject = f"{a}/{b}@logg[{c.logg_lo:g},{c.logg_hi:g})"
        rows.append(make_row("reconstruction", sample, "msz_ratio_cell", subject, c.ratio, ci=(c.ci_lo, c.ci_hi),
                             n=c.n, bin_var="teff", bin_lo=c.teff_lo, bin_hi=c.teff_hi))
        if c.n_train_labels is not None:
            rows.append(make_row("reconstruction", sample, "n_train_labels", subject, c.n_train_labels, n=c.n,
                                 bin_var="teff", bin_lo=c.teff_lo, bin_hi=c.teff_hi))
    return rows


def ratio_rows(a: ModelOutputs, b: ModelOutputs, sample: str, *, n_boot: int, seed: int) -> list[dict]:
    """Per-coefficient msz ratios a/b without scatter (residual accuracy) and with scatter (calibration)."""
    rows = []
    variants = [("msz_ratio", False)]
    if a.scatter is not None and b.scatter is not None:
        variants.append(("msz_ratio_scatter", True))
    for stat, with_scatter in variants:
        ratio, lo, hi, n = msz_ratio(a, b, with_scatter=with_scatter, n_boot=n_boot, seed=seed)
        for j, cname in enumerate(COEFF_NAMES):
            rows.append(make_row("reconstruction", sample, stat, f"{a.name}/{b.name}:{cname}", ratio[j],
                                 ci=(lo[j], hi[j]), n=n[j]))
    return rows


def binned_rows(model: ModelOutputs, labels: Mapping[str, np.ndarray], sample: str, bins: Mapping[str, Any],
                min_n: int = 20) -> list[dict]:
    """msz and band summaries within bins of each label in ``bins`` (e.g. teff, logg, m_h)."""
    rows = []
    for var, edges in bins.items():
        if var not in labels:
            continue
        for lo, hi, sel in bin_masks(labels[var], edges):
            if sel.sum() >= min_n:
                rows += coefficient_rows(model, sample, sel, bin_var=var, bin_lo=lo, bin_hi=hi, full=False)
    return rows
