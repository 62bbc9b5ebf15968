"""The reconstruction report end to end: per-model statistics, bins in Teff/log g/[M/H], pairwise comparisons
with paired bootstrap intervals, the (Teff, log g) cells where one model is worse, figures and report.md."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from analysis import figures as figs
from analysis.display import label
from analysis.reconstruction import (
    DEFAULT_BINS,
    DEFAULT_CELL_EDGES,
    ModelOutputs,
    binned_rows,
    cell_rows,
    coefficient_rows,
    compare_by_cell,
    msz_ratio,
    worse_cells,
)
from analysis.report import Report, fmt_ci
from analysis.rows import AnalysisResult, Progress, make_row, no_progress
from analysis.zstats import COEFF_NAMES


def _profile(model: ModelOutputs) -> dict[str, np.ndarray]:
    out = {}
    for suffix, ws in [("", False)] + ([("_scatter", True)] if model.scatter is not None else []):
        z = model.z(ws)
        with np.errstate(invalid="ignore"):
            out[f"bias{suffix}"] = np.nanmean(z, axis=0)
            out[f"width{suffix}"] = np.nanstd(z, axis=0, ddof=1)
            out[f"msz{suffix}"] = np.nanmean(z ** 2, axis=0)
    return out


@dataclass
class PairComparison:
    """Model a against model b on the same stars: per-coefficient msz ratios and the (Teff, log g) cells."""
    a: str
    b: str
    ratio: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    cells: list | None = None                 # None: no Teff/log g labels to bin in
    a_worse: list = field(default_factory=list)
    b_worse: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.a}/{self.b}"


@dataclass
class ReconstructionAnalysis:
    """The computed reconstruction statistics, before anything is drawn or written."""
    sample: str
    n_stars: int
    profiles: dict[str, dict[str, np.ndarray]]
    comparisons: list[PairComparison]
    rows: list[dict[str, Any]]
    headline: dict[str, Any]
    min_bin: int


def run_reconstruction_report(models: Mapping[str, Any], labels: Mapping[str, np.ndarray] | None = None, *,
                              out_dir: Path | str, sample: str = "heldout",
                              pairs: Sequence[tuple[str, str]] | None = None, bins: Mapping[str, Any] = DEFAULT_BINS,
                              cell_edges: Mapping[str, Any] = DEFAULT_CELL_EDGES, min_bin: int = 20,
                              n_boot: int = 200, seed: int = 0, train_labels: Mapping[str, np.ndarray] | None = None,
                              draw_figures: bool = True, progress: Progress | None = None) -> AnalysisResult:
    """Reconstruction statistics of every model on the same held-out stars (``compute_reconstruction``), then
    figures and report.md/report.html in ``out_dir`` (``render_reconstruction``).

    models: name → ModelOutputs or a mapping with x, x_hat, sigma (alias x_err), optional scatter,
    bp_correlations/rp_correlations (aliases bp_/rp_coefficient_correlations), all in one unit system.
    labels: (N,) teff, logg, m_h of those stars (binning; optional). pairs: (a, b) comparisons as msz(a)/msz(b);
    default: the first model against each other one. train_labels: teff/logg of the label-dependent model's
    training stars, counted per (Teff, log g) cell."""
    progress = progress or no_progress
    analysis = compute_reconstruction(models, labels, sample=sample, pairs=pairs, bins=bins, cell_edges=cell_edges,
                                      min_bin=min_bin, n_boot=n_boot, seed=seed, train_labels=train_labels,
                                      progress=progress)
    result = render_reconstruction(analysis, out_dir, draw_figures=draw_figures)
    progress(1, 1, "done")
    return result


def _checked_inputs(models: Mapping[str, Any], labels: Mapping[str, np.ndarray] | None,
                    pairs: Sequence[tuple[str, str]] | None):
    """(ModelOutputs per name, labels as float arrays, pairs), after checking they describe the same stars."""
    outs = {name: ModelOutputs.from_mapping(name, m) for name, m in models.items()}
    if not outs:
        raise ValueError("no models given")
    names = list(outs)
    first = outs[names[0]]
    for name, m in outs.items():
        if m.x.shape != first.x.shape or not np.array_equal(m.x, first.x, equal_nan=True):
            raise ValueError(f"models {names[0]!r} and {name!r} were not evaluated on the same stars (x differs)")
    lab = {k: np.asarray(v, np.float64) for k, v in (labels or {}).items()}
    for k, v in lab.items():
        if len(v) != len(first.x):
            raise ValueError(f"labels[{k!r}] has {len(v)} rows but the models have {len(first.x)} stars")
    pairs = list(pairs) if pairs is not None else [(names[0], other) for other in names[1:]]
    for a, b in pairs:
        if a not in outs or b not in outs:
            raise KeyError(f"pair ({a!r}, {b!r}): unknown model; have {names}")
    return outs, lab, pairs


def _model_info(m: ModelOutputs, prof: dict[str, np.ndarray]) -> dict[str, Any]:
    """One model's headline: mean msz, median z-score width and median χ²/dof per band, with and without ŝ."""
    info: dict[str, Any] = {"has_scatter": m.scatter is not None,
                            "full_covariance": m.bp_correlations is not None and m.rp_correlations is not None}
    for suffix in ("", "_scatter"):
        if f"msz{suffix}" not in prof:
            continue
        info[f"msz{suffix}_mean_over_coefficients"] = float(np.nanmean(prof[f"msz{suffix}"]))
        info[f"zscore_width{suffix}_median"] = float(np.nanmedian(prof[f"width{suffix}"]))
        for band in ("bp", "rp"):
            chi = m.chi2_dof(band, bool(suffix))
            info[f"chi2_dof{suffix}_{band}_median"] = float(np.nanmedian(chi)) if np.isfinite(chi).any() else None
    return info


def compute_reconstruction(models: Mapping[str, Any], labels: Mapping[str, np.ndarray] | None = None, *,
                           sample: str = "heldout", pairs: Sequence[tuple[str, str]] | None = None,
                           bins: Mapping[str, Any] = DEFAULT_BINS, cell_edges: Mapping[str, Any] = DEFAULT_CELL_EDGES,
                           min_bin: int = 20, n_boot: int = 200, seed: int = 0,
                           train_labels: Mapping[str, np.ndarray] | None = None,
                           progress: Progress = no_progress) -> ReconstructionAnalysis:
    """Every statistic of every model and pair, as typed results; nothing is written."""
    outs, lab, pairs = _checked_inputs(models, labels, pairs)
    n_stars = len(next(iter(outs.values())).x)
    rows: list[dict[str, Any]] = []
    headline: dict[str, Any] = {"sample": sample, "n_stars": int(n_stars), "models": {}, "comparisons": {}}
    total = len(outs) + len(pairs) + 1
    profiles = {}
    for step, (name, m) in enumerate(outs.items()):
        progress(step, total, f"statistics of model {name}")
        rows += coefficient_rows(m, sample) + binned_rows(m, lab, sample, bins, min_n=min_bin)
        profiles[name] = _profile(m)
        headline["models"][name] = _model_info(m, profiles[name])
    comparisons = []
    for step, (a, b) in enumerate(pairs, start=len(outs)):
        progress(step, total, f"comparison {a}/{b}")
        cmp = _compare(outs[a], outs[b], lab, sample, rows, cell_edges=cell_edges, min_bin=min_bin, n_boot=n_boot,
                       seed=seed, train_labels=train_labels or {})
        headline["comparisons"][cmp.key] = _comparison_info(cmp)
        comparisons.append(cmp)
    return ReconstructionAnalysis(sample, int(n_stars), profiles, comparisons, rows, headline, min_bin)


def _compare(ma: ModelOutputs, mb: ModelOutputs, labels: dict[str, np.ndarray], sample: str,
             rows: list[dict[str, Any]], *, cell_edges: Mapping[str, Any], min_bin: int, n_boot: int, seed: int,
             train_labels: Mapping[str, np.ndarray]) -> PairComparison:
    """msz(a)/msz(b) per coefficient (without and, when both have one, with the learned scatter) and per
    (Teff, log g) cell; appends the rows."""
    key = f"{ma.name}/{mb.name}"
    ratio, lo, hi, n = msz_ratio(ma, mb, n_boot=n_boot, seed=seed)
    rows += _ratio_rows("msz_ratio", key, sample, ratio, lo, hi, n)
    if ma.scatter is not None and mb.scatter is not None:
        rows += _ratio_rows("msz_ratio_scatter", key, sample,
                            *msz_ratio(ma, mb, with_scatter=True, n_boot=n_boot, seed=seed))
    cmp = PairComparison(ma.name, mb.name, ratio, lo, hi)
    if "teff" in labels and "logg" in labels:
        cmp.cells = compare_by_cell(ma, mb, labels["teff"], labels["logg"], teff_edges=cell_edges["teff"],
                                    logg_edges=cell_edges["logg"], min_n=min_bin, n_boot=n_boot, seed=seed,
                                    train_teff=train_labels.get("teff"), train_logg=train_labels.get("logg"))
        rows += cell_rows(cmp.cells, ma.name, mb.name, sample)
        cmp.a_worse = worse_cells(cmp.cells)
        cmp.b_worse = sorted([c for c in cmp.cells if np.isfinite(c.ci_hi) and c.ci_hi < 1], key=lambda c: c.ratio)
    return cmp


def _ratio_rows(statistic: str, key: str, sample: str, ratio, lo, hi, n) -> list[dict[str, Any]]:
    return [make_row("reconstruction", sample, statistic, f"{key}:{cname}", ratio[j], ci=(lo[j], hi[j]), n=n[j])
            for j, cname in enumerate(COEFF_NAMES)]


def _comparison_info(cmp: PairComparison) -> dict[str, Any]:
    info: dict[str, Any] = {"coefficients_a_better": int(np.sum(cmp.hi < 1)),
                            "coefficients_b_better": int(np.sum(cmp.lo > 1)),
                            "median_ratio": float(np.nanmedian(cmp.ratio))}
    if cmp.cells is not None:
        info["cells_a_worse"] = [_cell_dict(c) for c in cmp.a_worse[:10]]
        info["cells_b_worse"] = [_cell_dict(c) for c in cmp.b_worse[:10]]
    return info


def render_reconstruction(analysis: ReconstructionAnalysis, out_dir: Path | str, *,
                          draw_figures: bool = True) -> AnalysisResult:
    """Figures (when ``draw_figures``) and report.md/report.html of a computed reconstruction analysis."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    if draw_figures:
        figures.append(figs.zscore_profiles(analysis.profiles, out_dir / "zscores.png", sample=analysis.sample))
        for c in analysis.comparisons:
            a, b = _safe(c.a), _safe(c.b)
            if c.cells is not None:
                figures.append(figs.cell_map(c.cells, out_dir / f"cells_{a}_vs_{b}.png", a=c.a, b=c.b,
                                             min_stars=analysis.min_bin))
            figures.append(figs.msz_ratio_plot(c.ratio, c.lo, c.hi, out_dir / f"msz_ratio_{a}_vs_{b}.png",
                                               a=c.a, b=c.b))
    report = Report(f"Reconstruction report ({label(analysis.sample)}, {analysis.n_stars} stars)")
    _write_report(report, analysis, figures)
    return AnalysisResult(rows=analysis.rows, figures=figures, headline=analysis.headline,
                          report_path=report.write(out_dir))


def _safe(name: str) -> str:
    """A model name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"


def _cell_dict(c) -> dict[str, Any]:
    return {"teff": [c.teff_lo, c.teff_hi], "logg": [c.logg_lo, c.logg_hi], "n": c.n, "ratio": c.ratio,
            "ci": [c.ci_lo, c.ci_hi], "n_train_labels": c.n_train_labels}


def _band_ci(rows: list[dict[str, Any]], stat: str, subject: str) -> str:
    """The whole-sample value of one statistic with its interval, or – when there is none."""
    r = [x for x in rows if x["statistic"] == stat and x["subject"] == subject and x["bin_var"] is None]
    return fmt_ci(r[0]["value"], r[0]["ci_lo"], r[0]["ci_hi"]) if r else "–"


def _yes_no(c: Any) -> Any:
    return {True: "yes", False: "no"}[c] if isinstance(c, bool) else c


def _write_report(report: Report, analysis: ReconstructionAnalysis, figures: list[Path]) -> None:
    headline, rows = analysis.headline, analysis.rows
    report.paragraph("z = δ/σ without and δ/√(σ²+ŝ²) with the learned scatter (a calibrated model gives N(0,1)); "
                     "msz = per-coefficient mean of z²; χ²/dof per band with the full archive covariance when "
                     "correlations were given (dof = 55), unavailable (–) without them. Intervals: normal 95 % for "
                     "means, paired bootstrap over stars for ratios.")
    report.heading("Models")
    table = [[name, info["full_covariance"]]
             + [_band_ci(rows, stat, f"{name}:{b}") for stat in ("chi2_dof", "chi2_dof_scatter") for b in ("bp", "rp")]
             + [info.get("msz_mean_over_coefficients"), info.get("msz_scatter_mean_over_coefficients"),
                info.get("zscore_width_scatter_median")]
             for name, info in headline["models"].items()]
    report.table(["model", "full cov.", "χ²/dof BP", "χ²/dof RP", "χ²/dof BP +ŝ", "χ²/dof RP +ŝ", "mean msz",
                  "mean msz +ŝ", "median width +ŝ"], [[_yes_no(c) for c in r] for r in table])
    if headline["comparisons"]:
        report.heading("Comparisons (ratio of mean squared z, no scatter)")
        report.table(["a/b", "coefficients a better (CI < 1)", "coefficients b better (CI > 1)", "median ratio"],
                     [[k, v["coefficients_a_better"], v["coefficients_b_better"], v["median_ratio"]]
                      for k, v in headline["comparisons"].items()])
    for c in analysis.comparisons:
        if c.cells is not None:
            _cell_tables(report, c)
    report.heading("Figures")
    for f in figures:
        report.image(f, figs.caption(f))


def _cell_tables(report: Report, c: PairComparison) -> None:
    for who, cells in ((c.a, c.a_worse), (c.b, c.b_worse)):
        report.heading(f"(Teff, log g) cells where {who} is worse ({c.key})", 3)
        if not cells:
            report.paragraph("none with an interval clear of 1")
            continue
        report.table(["Teff", "log g", "stars", "ratio [95 %]", "training labels"],
                     [[f"[{x.teff_lo:g}, {x.teff_hi:g})", f"[{x.logg_lo:g}, {x.logg_hi:g})", x.n,
                       fmt_ci(x.ratio, x.ci_lo, x.ci_hi), "–" if x.n_train_labels is None else x.n_train_labels]
                      for x in cells[:10]])
