"""The reconstruction report end to end: per-model statistics, bins in Teff/log g/[M/H], pairwise comparisons
with paired bootstrap intervals, the (Teff, log g) cells where one model is worse, figures and report.md."""
from __future__ import annotations

import re
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


def run_reconstruction_report(models: Mapping[str, Any], labels: Mapping[str, np.ndarray] | None = None, *,
                              out_dir: Path | str, sample: str = "heldout",
                              pairs: Sequence[tuple[str, str]] | None = None, bins: Mapping[str, Any] = DEFAULT_BINS,
                              cell_edges: Mapping[str, Any] = DEFAULT_CELL_EDGES, min_bin: int = 20,
                              n_boot: int = 200, seed: int = 0, train_labels: Mapping[str, np.ndarray] | None = None,
                              draw_figures: bool = True, progress: Progress | None = None) -> AnalysisResult:
    """Reconstruction statistics of every model on the same held-out stars.

    models: name → ModelOutputs or a mapping with x, x_hat, sigma (alias x_err), optional scatter,
    bp_correlations/rp_correlations (aliases bp_/rp_coefficient_correlations), all in one unit system.
    labels: (N,) teff, logg, m_h of those stars (binning; optional). pairs: (a, b) comparisons as msz(a)/msz(b);
    default: the first model against each other one. train_labels: teff/logg of the label-dependent model's
    training stars, counted per (Teff, log g) cell."""
    progress = progress or no_progress
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outs = {name: ModelOutputs.from_mapping(name, m) for name, m in models.items()}
    if not outs:
        raise ValueError("no models given")
    names = list(outs)
    first = outs[names[0]]
    for name, m in outs.items():
        if m.x.shape != first.x.shape or not np.array_equal(m.x, first.x, equal_nan=True):
            raise ValueError(f"models {names[0]!r} and {name!r} were not evaluated on the same stars (x differs)")
    labels = {k: np.asarray(v, np.float64) for k, v in (labels or {}).items()}
    for k, v in labels.items():
        if len(v) != len(first.x):
            raise ValueError(f"labels[{k!r}] has {len(v)} rows but the models have {len(first.x)} stars")
    pairs = list(pairs) if pairs is not None else [(names[0], other) for other in names[1:]]
    for a, b in pairs:
        if a not in outs or b not in outs:
            raise KeyError(f"pair ({a!r}, {b!r}): unknown model; have {names}")
    result = AnalysisResult()
    headline: dict[str, Any] = {"sample": sample, "n_stars": int(len(first.x)), "models": {}, "comparisons": {}}
    total = len(outs) + len(pairs) + 1
    step = 0
    profiles = {}
    for name, m in outs.items():
        progress(step, total, f"statistics of model {name}")
        result.rows += coefficient_rows(m, sample)
        result.rows += binned_rows(m, labels, sample, bins, min_n=min_bin)
        profiles[name] = prof = _profile(m)
        info: dict[str, Any] = {"has_scatter": m.scatter is not None,
                                "full_covariance": m.bp_correlations is not None and m.rp_correlations is not None}
        for suffix in ("", "_scatter"):
            if f"msz{suffix}" in prof:
                info[f"msz{suffix}_mean_over_coefficients"] = float(np.nanmean(prof[f"msz{suffix}"]))
                info[f"zscore_width{suffix}_median"] = float(np.nanmedian(prof[f"width{suffix}"]))
                for band in ("bp", "rp"):
                    chi = m.chi2_dof(band, bool(suffix))
                    info[f"chi2_dof{suffix}_{band}_median"] = float(np.nanmedian(chi)) if np.isfinite(chi).any() else None
        headline["models"][name] = info
        step += 1
    report = Report(f"Reconstruction report ({label(sample)}, {len(first.x)} stars)")
    figures: list[Path] = []
    if draw_figures:
        figures.append(figs.zscore_profiles(profiles, out_dir / "zscores.png", sample=sample))
    cell_tables = []
    for a, b in pairs:
        progress(step, total, f"comparison {a}/{b}")
        key = f"{a}/{b}"
        ratio, lo, hi, n = msz_ratio(outs[a], outs[b], n_boot=n_boot, seed=seed)
        for j, cname in enumerate(COEFF_NAMES):
            result.rows.append(make_row("reconstruction", sample, "msz_ratio", f"{key}:{cname}", ratio[j],
                                        ci=(lo[j], hi[j]), n=n[j]))
        if outs[a].scatter is not None and outs[b].scatter is not None:
            r2, lo2, hi2, n2 = msz_ratio(outs[a], outs[b], with_scatter=True, n_boot=n_boot, seed=seed)
            for j, cname in enumerate(COEFF_NAMES):
                result.rows.append(make_row("reconstruction", sample, "msz_ratio_scatter", f"{key}:{cname}", r2[j],
                                            ci=(lo2[j], hi2[j]), n=n2[j]))
        cmp_info: dict[str, Any] = {
            "coefficients_a_better": int(np.sum(hi < 1)), "coefficients_b_better": int(np.sum(lo > 1)),
            "median_ratio": float(np.nanmedian(ratio))}
        if "teff" in labels and "logg" in labels:
            tl = train_labels or {}
            cells = compare_by_cell(outs[a], outs[b], labels["teff"], labels["logg"],
                                    teff_edges=cell_edges["teff"], logg_edges=cell_edges["logg"], min_n=min_bin,
                                    n_boot=n_boot, seed=seed, train_teff=tl.get("teff"), train_logg=tl.get("logg"))
            result.rows += cell_rows(cells, a, b, sample)
            a_worse = worse_cells(cells)
            b_worse = [c for c in cells if np.isfinite(c.ci_hi) and c.ci_hi < 1]
            cmp_info["cells_a_worse"] = [_cell_dict(c) for c in a_worse[:10]]
            cmp_info["cells_b_worse"] = [_cell_dict(c) for c in sorted(b_worse, key=lambda c: c.ratio)[:10]]
            cell_tables.append((key, a_worse, b_worse))
            if draw_figures:
                figures.append(figs.cell_map(cells, out_dir / f"cells_{_safe(a)}_vs_{_safe(b)}.png", a=a, b=b,
                                             min_stars=min_bin))
        if draw_figures:
            figures.append(figs.msz_ratio_plot(ratio, lo, hi, out_dir / f"msz_ratio_{_safe(a)}_vs_{_safe(b)}.png",
                                               a=a, b=b))
        headline["comparisons"][key] = cmp_info
        step += 1
    result.figures = figures
    result.headline = headline
    _write_report(report, headline, cell_tables, figures, result.rows, sample)
    result.report_path = report.write(out_dir)
    progress(total, total, "done")
    return result


def _safe(name: str) -> str:
    """A model name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"


def _cell_dict(c) -> dict[str, Any]:
    return {"teff": [c.teff_lo, c.teff_hi], "logg": [c.logg_lo, c.logg_hi], "n": c.n, "ratio": c.ratio,
            "ci": [c.ci_lo, c.ci_hi], "n_train_labels": c.n_train_labels}


def _write_report(report: Report, headline: dict, cell_tables, figures, rows, sample: str) -> None:
    report.paragraph("z = δ/σ without and δ/√(σ²+ŝ²) with the learned scatter (a calibrated model gives N(0,1)); "
                     "msz = per-coefficient mean of z²; χ²/dof per band with the full archive covariance when "
                     "correlations were given (dof = 55), unavailable (–) without them. Intervals: normal 95 % for means, paired bootstrap over "
                     "stars for ratios.")
    report.heading("Models")
    table = []
    for name, info in headline["models"].items():
        def band(stat: str, b: str) -> str:
            r = [x for x in rows if x["statistic"] == stat and x["subject"] == f"{name}:{b}" and x["bin_var"] is None]
            return fmt_ci(r[0]["value"], r[0]["ci_lo"], r[0]["ci_hi"]) if r else "–"
        table.append([name, info["full_covariance"], band("chi2_dof", "bp"), band("chi2_dof", "rp"),
                      band("chi2_dof_scatter", "bp"), band("chi2_dof_scatter", "rp"),
                      info.get("msz_mean_over_coefficients"), info.get("msz_scatter_mean_over_coefficients"),
                      info.get("zscore_width_scatter_median")])
    report.table(["model", "full cov.", "χ²/dof BP", "χ²/dof RP", "χ²/dof BP +ŝ", "χ²/dof RP +ŝ", "mean msz",
                  "mean msz +ŝ", "median width +ŝ"],
                 [[{True: "yes", False: "no"}[c] if isinstance(c, bool) else c for c in r] for r in table])
    if headline["comparisons"]:
        report.heading("Comparisons (ratio of mean squared z, no scatter)")
        report.table(["a/b", "coefficients a better (CI < 1)", "coefficients b better (CI > 1)", "median ratio"],
                     [[k, v["coefficients_a_better"], v["coefficients_b_better"], v["median_ratio"]]
                      for k, v in headline["comparisons"].items()])
    for key, a_worse, b_worse in cell_tables:
        a, b = key.split("/")
        for who, cells in ((a, a_worse), (b, b_worse)):
            report.heading(f"(Teff, log g) cells where {who} is worse ({key})", 3)
            if not cells:
                report.paragraph("none with an interval clear of 1")
                continue
            report.table(["Teff", "log g", "stars", "ratio [95 %]", "training labels"],
                         [[f"[{c.teff_lo:g}, {c.teff_hi:g})", f"[{c.logg_lo:g}, {c.logg_hi:g})", c.n,
                           fmt_ci(c.ratio, c.ci_lo, c.ci_hi), "–" if c.n_train_labels is None else c.n_train_labels]
                          for c in cells[:10]])
    report.heading("Figures")
    for f in figures:
        report.image(f, figs.caption(f))
