"""The [α/M] analysis end to end on plain arrays (docs/science.md §9): samples → classifier comparison →
bimodality per [M/H] bin (labels and latents side by side) → unsupervised clustering → latent tracks →
rows, figures, report. Every statistic is computed for each sample in ``samples`` — by default all pristine
stars, all good stars, and the Teff < 5000 K giants of each (the subset the papers' abstract makes its claim for).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from analysis import figures as figs
from analysis.bimodality import (
    DEFAULT_M_H_EDGES,
    BinTest,
    ClusterScore,
    bimodality_by_bin,
    bimodality_rows,
    cluster_rows,
    fisher_oof_coordinate,
    unsupervised_by_bin,
)
from analysis.calibration import wilson
from analysis.classify import (
    DESCRIPTIONS,
    FEATURE_SETS,
    MAX_FEATURES,
    NULL_REPEATS,
    NULL_TEST,
    ClassifierComparison,
    compare_feature_sets,
    fold_ids,
)
from analysis.display import label
from analysis.report import Report, fmt, fmt_ci, fmt_p
from analysis.rows import AnalysisResult, Progress, make_row, no_progress
from analysis.samples import alpha_split, select_samples
from analysis.tracks import Track, fixed_metallicity_track, sequence_tracks
from shared import defaults as D

DEFAULT_SAMPLES = ("pristine", "good", "pristine_cool_giants", "good_cool_giants")
# The verdict's test: (e) labels + latents against (f) the labels denoised by the latents' estimates of them.
TEST_DIFFERENCE = "-".join(NULL_TEST)
# The older gain over the labels alone, (e) − (c): reported, never judged (it counts label-noise averaging).
KEY_DIFFERENCE = "labels_latents-labels"
LEVEL = 0.025          # one-sided: "yes" only when the 95 % interval of the gain lies above 0
# Samples whose labels are too noisy for the test: shown, never judged. At alpha_signal 0 the test said "yes" on
# them more often than its level allows (docs/science-validation.md, "Calibration and power").
_NOISY = ("no verdict: with these noisier labels the test said 'yes' on surveys without any [α/M] in the spectra "
          "more often than its level allows (docs/science-validation.md)")
REFUSED_SAMPLES = {"good": _NOISY, "good_cool_giants": _NOISY}
CONTROLS_FOR = ("beyond what they know about Teff, log g and [M/H] (the baseline holds the labels combined with "
                "the latents' own estimates of them, weighted by the reported label errors)")


def _triple(t: tuple[float, float, float]) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in t]


@dataclass
class SampleAnalysis:
    """Everything computed for one sample; ``info`` is its part of the headline (JSON)."""
    name: str
    info: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    comparison: ClassifierComparison | None = None      # None: the sample was skipped
    tests: list[BinTest] = field(default_factory=list)
    clusters: list[ClusterScore] = field(default_factory=list)
    sequences: list[Track] = field(default_factory=list)
    fixed: Track | None = None
    latents: np.ndarray | None = None                  # kept for the figures
    high: np.ndarray | None = None


@dataclass
class AlphaAnalysis:
    """The computed [α/M] analysis, before anything is drawn or written."""
    samples: list[SampleAnalysis]
    headline: dict[str, Any]
    rows: list[dict[str, Any]]
    seed: int
    min_bin: int
    classifiers_only: bool


@dataclass(frozen=True)
class _Settings:
    seed: int
    n_folds: int
    n_boot: int
    n_trees: int
    n_jobs: int
    feature_sets: tuple[str, ...]
    m_h_edges: Any
    min_stars: int
    min_bin: int
    max_features: float | str | None
    classifiers_only: bool


def run_alpha_analysis(latents: np.ndarray, labels: Mapping[str, np.ndarray],
                       photometry: Mapping[str, np.ndarray] | None = None, *, out_dir: Path | str, seed: int = D.SEED,
                       n_folds: int = D.ALPHA_FOLDS, n_boot: int = D.ALPHA_BOOTSTRAP, n_trees: int = 100,
                       n_jobs: int = 2, samples: Sequence[str] = DEFAULT_SAMPLES,
                       feature_sets: Sequence[str] = FEATURE_SETS, m_h_edges=DEFAULT_M_H_EDGES, min_stars: int = 100,
                       min_bin: int = 30, max_features: float | str | None = MAX_FEATURES, draw_figures: bool = True,
                       classifiers_only: bool = False, progress: Progress | None = None) -> AnalysisResult:
    """Run the whole [α/M] analysis (``compute_alpha_analysis``) and write figures and report.md/report.html
    into ``out_dir`` (``render_alpha_analysis``).

    latents: (N, d) posterior means; labels: (N,) arrays keyed as in shared.xp.APOGEE_COLUMNS (teff, teff_err,
    logg, logg_err, m_h, m_h_err, alpha_m, fe_h, mg_fe, j, h, k, aspcapflag, starflag); photometry: optional
    phot_g_mean_mag and bp_rp (see analysis.samples for what happens without it). A sample with fewer than
    ``min_stars`` usable stars is reported as skipped, never silently dropped. ``classifiers_only``: the
    classifier comparison and verdict alone, no bimodality, mixtures, tracks or figures (for the benchmark that
    measures the verdict's calibration over many surveys)."""
    progress = progress or no_progress
    settings = _Settings(seed, n_folds, n_boot, n_trees, n_jobs, tuple(feature_sets), m_h_edges, min_stars, min_bin,
                         max_features, classifiers_only)
    analysis = compute_alpha_analysis(latents, labels, photometry, samples=samples, settings=settings,
                                      progress=progress)
    total = len(samples) * 4 + 1
    progress(total - 1, total, "figures and report")
    result = render_alpha_analysis(analysis, out_dir, draw_figures=draw_figures and not classifiers_only)
    progress(total, total, "done")
    return result


def compute_alpha_analysis(latents: np.ndarray, labels: Mapping[str, np.ndarray],
                           photometry: Mapping[str, np.ndarray] | None, *, samples: Sequence[str],
                           settings: _Settings, progress: Progress = no_progress) -> AlphaAnalysis:
    """Every statistic of every sample, as typed results; nothing is written."""
    latents = np.asarray(latents, np.float64)
    n_all = len(latents)
    for k, v in labels.items():
        if len(v) != n_all:
            raise ValueError(f"labels[{k!r}] has {len(v)} rows but latents have {n_all}")
    selection = select_samples(labels, photometry)
    split = alpha_split(labels)
    usable = split.valid & np.all(np.isfinite(latents), axis=1)
    for k in ("teff", "logg", "m_h"):
        usable &= np.isfinite(np.asarray(labels[k], np.float64))
    notes = selection.notes + split.notes
    done = []
    for i, sample in enumerate(samples):
        if sample not in selection.masks:
            raise ValueError(f"unknown sample {sample!r}; choose from {sorted(selection.masks)}")
        idx = np.flatnonzero(selection.masks[sample] & usable)
        lab = {k: np.asarray(v)[idx] for k, v in labels.items()}
        one = _analyse_sample(sample, latents[idx], lab, split.high[idx], int(np.sum(split.source[idx] == 2)),
                              settings, lambda msg, step=4 * i: progress(step, len(samples) * 4 + 1, msg))
        if one.comparison is None:
            notes.append(f"sample {sample} skipped: {one.info['skipped']}")
        done.append(one)
    s = settings
    headline: dict[str, Any] = {"n_stars_input": n_all, "seed": s.seed, "n_folds": s.n_folds, "n_boot": s.n_boot,
                                "n_trees": s.n_trees, "notes": notes, "samples": {a.name: a.info for a in done}}
    return AlphaAnalysis(done, headline, [r for a in done for r in a.rows], s.seed, s.min_bin, s.classifiers_only)


def _analyse_sample(sample: str, z: np.ndarray, lab: dict[str, np.ndarray], y: np.ndarray, n_fallback: int,
                    s: _Settings, say: Callable[[str], None]) -> SampleAnalysis:
    n, n_high = len(y), int(y.sum())
    info: dict[str, Any] = {"n": n, "n_high": n_high, "high_fraction": round(n_high / n, 5) if n else None}
    one = SampleAnalysis(sample, info, rows=[
        make_row("alpha", sample, "n_stars", "sample", n, n=n),
        make_row("alpha", sample, "high_alpha_fraction", "patil_split", n_high / n if n else np.nan,
                 ci=wilson(n_high, n), n=n),
        make_row("alpha", sample, "n_fallback_split", "patil_split", n_fallback, n=n)])
    if n < s.min_stars or min(n_high, n - n_high) < 2 * s.n_folds:
        info["skipped"] = (f"{n} usable stars ({n_high} high-α): fewer than {s.min_stars} stars or "
                           f"{2 * s.n_folds} of a class")
        return one
    say(f"{sample}: classifiers on {n} stars")
    comp = compare_feature_sets(z, lab, y, feature_sets=s.feature_sets, n_folds=s.n_folds, n_boot=s.n_boot,
                                n_trees=s.n_trees, seed=s.seed, n_jobs=s.n_jobs, max_features=s.max_features)
    one.comparison = comp
    one.rows += comp.rows(sample)
    info["balanced_accuracy"] = {k: _triple(r.metrics["balanced_accuracy"]) for k, r in comp.results.items()}
    info["accuracy"] = {k: _triple(r.metrics["accuracy"]) for k, r in comp.results.items()}
    info["differences_balanced_accuracy"] = {k: _triple(d["balanced_accuracy"]) for k, d in comp.differences.items()}
    info.update(_verdict(sample, comp))
    if "latents_add_alpha_information" in info:
        # the verdict as a row: 1 yes, 0 no; its interval is the tested gain's
        one.rows.append(make_row("alpha", sample, "alpha_verdict", TEST_DIFFERENCE,
                                 float(info["latents_add_alpha_information"]),
                                 ci=tuple(info["alpha_test"]["gain"][1:]), n=comp.difference_n[TEST_DIFFERENCE]))
    if not s.classifiers_only:
        _shape_of_alpha(one, z, lab, y, s, say)
    return one


def _shape_of_alpha(one: SampleAnalysis, z: np.ndarray, lab: dict[str, np.ndarray], y: np.ndarray, s: _Settings,
                    say: Callable[[str], None]) -> None:
    """Bimodality per [M/H] bin, latent-space mixtures and latent tracks of one sample."""
    sample, m_h = one.name, np.asarray(lab["m_h"], np.float64)
    say(f"{sample}: bimodality per [M/H] bin")
    coords = {"latent_fisher": fisher_oof_coordinate(z, y, fold_ids(y, s.n_folds, s.seed))}
    for label_name in ("alpha_m", "mg_fe"):
        if label_name in lab and np.isfinite(np.asarray(lab[label_name], np.float64)).any():
            coords[label_name] = np.asarray(lab[label_name], np.float64)
    one.tests = bimodality_by_bin(coords, m_h, edges=s.m_h_edges, min_n=s.min_bin, seed=s.seed)
    one.rows += bimodality_rows(one.tests, sample)
    say(f"{sample}: latent-space mixtures")
    one.clusters = unsupervised_by_bin(z, m_h, y, edges=s.m_h_edges, min_n=s.min_bin, seed=s.seed)
    one.rows += cluster_rows(one.clusters, sample)
    whole = [c for c in one.clusters if c.bin_lo is None]
    if whole:
        one.info["latent_gmm2_ari"] = round(whole[0].ari, 5)
        one.info["latent_gmm2_purity"] = [round(whole[0].purity, 5), round(whole[0].purity_baseline, 5)]
    say(f"{sample}: latent tracks")
    one.sequences = sequence_tracks(z, m_h, y)
    one.fixed = fixed_metallicity_track(z, m_h, lab["alpha_m"]) if "alpha_m" in lab else None
    for tr in one.sequences + ([one.fixed] if one.fixed is not None else []):
        one.rows += tr.rows(sample)
    one.latents, one.high = z, y


def render_alpha_analysis(analysis: AlphaAnalysis, out_dir: Path | str, *, draw_figures: bool = True) -> AnalysisResult:
    """Figures (when ``draw_figures``) and report.md/report.html of a computed analysis into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _draw_figures(analysis, out_dir) if draw_figures else []
    report = Report("[α/M] bimodality analysis")
    analysed = [a for a in analysis.samples if a.comparison is not None]
    _write_report(report, analysis.headline, analysed, figures)
    return AnalysisResult(rows=analysis.rows, figures=figures, headline=analysis.headline,
                          report_path=report.write(out_dir))


def _draw_figures(analysis: AlphaAnalysis, out_dir: Path) -> list[Path]:
    comparisons = {a.name: a.comparison for a in analysis.samples if a.comparison is not None}
    figures = [figs.classifier_comparison(comparisons, out_dir / "classifiers.png")] if comparisons else []
    for a in analysis.samples:
        if a.latents is None or a.high is None:
            continue
        figures.append(figs.latent_pairs(a.latents, a.high, out_dir / f"latents_{a.name}.png", sample=a.name,
                                         seed=analysis.seed))
        figures.append(figs.latent_tracks(a.sequences, a.fixed, out_dir / f"tracks_{a.name}.png", sample=a.name))
        figures.append(figs.bimodality_per_bin(a.tests, out_dir / f"bimodality_{a.name}.png", sample=a.name,
                                               min_stars=analysis.min_bin))
    return figures


def _verdict(sample: str, comp: ClassifierComparison) -> dict[str, Any]:
    """The headline's answer for one sample: the (e) − (f) gain, its interval and p-value, and 'yes' only when
    p < LEVEL; no answer where the test was not run, and a refusal (the test's numbers, no verdict) on the samples
    in REFUSED_SAMPLES."""
    if TEST_DIFFERENCE not in comp.differences:
        return {}
    gain = _triple(comp.differences[TEST_DIFFERENCE]["balanced_accuracy"])
    p = comp.p_values[TEST_DIFFERENCE]
    out: dict[str, Any] = {"alpha_test": {"gain": gain, "p_value": round(p, 5), "level": LEVEL,
                                          "controls_for": CONTROLS_FOR,
                                          "gain_per_cross_validation": [round(g, 5) for g in comp.null_gains],
                                          "latent_estimate_r2": {k: round(v, 4) for k, v in comp.estimate_r2.items()},
                                          "latent_estimate_weight": {k: round(v, 4)
                                                                     for k, v in comp.estimate_weight.items()}}}
    if sample in REFUSED_SAMPLES:
        out["alpha_test"]["no_verdict"] = REFUSED_SAMPLES[sample]
    else:
        out["latents_add_alpha_information"] = bool(p < LEVEL)
    return out


def _write_report(report: Report, headline: dict, blocks: list[SampleAnalysis], figures: list[Path]) -> None:
    report.paragraph(f"{headline['n_stars_input']} stars in; {headline['n_folds']}-fold stratified cross-validation "
                     f"(out-of-fold predictions), random forests of {headline['n_trees']} trees, "
                     f"{headline['n_boot']} bootstrap resamples of stars for 95 % intervals, seed {headline['seed']}.")
    report.bullets(headline["notes"])
    report.heading("Samples")
    report.table(["sample", "stars", "high-α", "high-α fraction", "status"],
                 [[label(s), i["n"], i["n_high"], i["high_fraction"], i.get("skipped", "analysed")]
                  for s, i in headline["samples"].items()])
    _verdict_section(report, headline, blocks)
    _shape_section(report, blocks)
    report.heading("Figures")
    for f in figures:
        report.image(f, figs.caption(f))


def _verdict_section(report: Report, headline: dict, blocks: list[SampleAnalysis]) -> None:
    report.heading("Do the latents add [α/M] information beyond what they know about Teff, log g, [M/H]?")
    report.paragraph("Balanced accuracy (mean of the two class recalls, so the class imbalance cannot inflate "
                     "it) with 95 % bootstrap intervals. The test is (e) − (f): labels + latents against (f), "
                     "Teff, log g and [M/H] each combined with the latents' own out-of-fold estimate of it by "
                     "inverse-variance weighting (reported label error against the estimate's scatter). Spectra "
                     "re-measure those labels, and a better [M/H] predicts a class defined from noisy [Fe/H] even "
                     "when the spectra hold no [α/M]; (f) has that in the baseline, so (e) − (f) > 0 needs [α/M] "
                     f"information itself. The gain is the mean over {NULL_REPEATS} cross-validations (own folds, "
                     "forests and estimates); its variance is the paired bootstrap's over stars plus their spread. "
                     f"'yes' when the one-sided p of (e) − (f) ≤ 0 is below {LEVEL} (the 95 % interval lies "
                     "above 0). (e) − (c), the gain over the labels alone, counts "
                     "the re-measured labels too and is shown for comparison only. The good samples get no "
                     "verdict: on their noisier labels the test said 'yes' on simulated surveys without [α/M] in "
                     "the spectra more often than its level allows (docs/science-validation.md).")
    rows = []
    for b in blocks:
        comp, sample = b.comparison, b.name
        assert comp is not None
        row = [label(sample)]
        for name in FEATURE_SETS:
            row.append(fmt_ci(*comp.results[name].metrics["balanced_accuracy"]) if name in comp.results else "–")
        for key in (TEST_DIFFERENCE, KEY_DIFFERENCE, "latents-labels"):
            row.append(fmt_ci(*comp.differences[key]["balanced_accuracy"]) if key in comp.differences else "–")
        info = headline["samples"][sample]
        test = info.get("alpha_test", {})
        row.append(fmt_p(test.get("p_value")))
        row.append({True: "yes", False: "no"}.get(info.get("latents_add_alpha_information"),
                                                  "no verdict" if "no_verdict" in test else "–"))
        rows.append(row)
    report.table(["sample"] + [DESCRIPTIONS[k] for k in FEATURE_SETS]
                 + ["test (e) − (f)", "(e) − (c)", "(a) − (c)", "p", "verdict"], rows)
    r2 = [[label(s)] + [fmt(i["alpha_test"][key].get(k)) for key in ("latent_estimate_r2", "latent_estimate_weight")
                        for k in ("teff", "logg", "m_h")]
          for s, i in headline["samples"].items() if i.get("alpha_test")]
    if r2:
        report.paragraph("How well the latents re-measure the labels (R² of their out-of-fold estimates) and the "
                         "mean weight those estimates got in set (f):")
        report.table(["sample", "R² Teff", "R² log g", "R² [M/H]", "weight Teff", "weight log g", "weight [M/H]"],
                     r2)
    report.heading("Accuracy and per-class recall", 3)
    rows = []
    for b in blocks:
        for name, res in (b.comparison.results if b.comparison else {}).items():
            rows.append([label(b.name), DESCRIPTIONS[name], res.n]
                        + [fmt_ci(*res.metrics[m]) for m in ("accuracy", "recall_high", "recall_low")])
    report.table(["sample", "features", "stars", "accuracy", "recall high-α", "recall low-α"], rows)


def _shape_section(report: Report, blocks: list[SampleAnalysis]) -> None:
    report.heading("Bimodality of α at fixed [M/H]")
    report.paragraph("Hartigan dip test (p < 0.05 rejects unimodality) and ΔBIC = BIC(1) − BIC(2) Gaussians "
                     "(> 10: two components strongly favoured), for the latent Fisher coordinate (fitted out of fold) "
                     "and the abundance labels. Unsupervised: 2-Gaussian mixture in latent space scored against the "
                     "Patil split (ARI; purity vs the majority-class baseline).")
    rows = []
    for b in blocks:
        for t in b.tests:
            rows.append([label(b.name), f"[{t.bin_lo:g}, {t.bin_hi:g})", label(t.coordinate), t.n, t.dip,
                         fmt_p(t.dip_p), t.delta_bic])
    report.table(["sample", "[M/H]", "coordinate", "stars", "dip", "dip p", "ΔBIC"], rows)
    rows = []
    for b in blocks:
        for c in b.clusters:
            rng = "all" if c.bin_lo is None else f"[{c.bin_lo:g}, {c.bin_hi:g})"
            rows.append([label(b.name), rng, c.n, c.ari, c.purity, c.purity_baseline])
    report.table(["sample", "[M/H]", "stars", "ARI", "purity", "majority baseline"], rows)
