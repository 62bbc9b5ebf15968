"""The headline lines of an [α/M] analysis, for the demo and the CLI."""
from __future__ import annotations

from analysis.classify import DESCRIPTIONS
from analysis.display import label


def _ci(t) -> str:
    if not t or t[0] is None:
        return "n/a"
    v, lo, hi = t
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{v:.3f}"


def _p(p) -> str:
    return "< 1e-4" if p is not None and p < 1e-4 else f"{p:.3g}"


def alpha_lines(headline: dict) -> list[str]:
    lines = []
    for sample, info in (headline.get("samples") or {}).items():
        if info.get("skipped"):
            lines.append(f"\n{label(sample)}: skipped ({info['skipped']})")
            continue
        lines.append(f"\n{label(sample)}: {info['n']:,} stars, {info['high_fraction']:.1%} high-α "
                     "(Patil et al. 2023 split)")
        lines.append("  balanced accuracy (5-fold CV, 95 % bootstrap interval):")
        for key, t in (info.get("balanced_accuracy") or {}).items():
            lines.append(f"    {DESCRIPTIONS.get(key, key):<38} {_ci(t)}")
        for key, t in (info.get("differences_balanced_accuracy") or {}).items():
            lines.append(f"    gain {label(key):<33} {_ci(t)}")
        lines += _verdict_lines(info)
    return lines


def _verdict_lines(info: dict) -> list[str]:
    """The test's answer with what it controls for: (e) labels + latents against (f) Teff, log g, [M/H] denoised
    by the latents' own estimates of them (analysis.alpha)."""
    test = info.get("alpha_test")
    if not test:
        return []
    head = (f"  latents add [α/M] information {test['controls_for']}: gain (e) − (f) {_ci(test['gain'])}, "
            f"one-sided p = {_p(test['p_value'])}")
    if "no_verdict" in test:
        return [head, f"  → {test['no_verdict']}"]
    verdict = "yes" if info.get("latents_add_alpha_information") else "no"
    return [head, f"  → {verdict} (yes needs p < {test['level']:g})"]


def reconstruction_lines(headline: dict) -> list[str]:
    lines = [f"{headline.get('n_stars', 0):,} held-out stars ({headline.get('sample')})"]
    for name, m in (headline.get("models") or {}).items():
        def f(key, m=m):
            v = m.get(key)
            return "n/a" if v is None else f"{v:.3f}"
        lines.append(f"  {name}: median z-score width {f('zscore_width_median')} without scatter, "
                     f"{f('zscore_width_scatter_median')} with; median χ²/dof BP {f('chi2_dof_scatter_bp_median')}, "
                     f"RP {f('chi2_dof_scatter_rp_median')} (Σ + ŝ², full covariance: {m.get('full_covariance')})")
    for pair, c in (headline.get("comparisons") or {}).items():
        a, b = pair.split("/", 1)
        lines.append(f"  {pair}: {c.get('coefficients_a_better')} coefficients reconstructed better by {a}, "
                     f"{c.get('coefficients_b_better')} by {b} (beyond the interval); "
                     f"{len(c.get('cells_b_worse') or [])} (Teff, log g) cells where {b} is worse, "
                     f"{len(c.get('cells_a_worse') or [])} where {a} is")
    return lines


def _num(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def catalogue_lines(headline: dict, truth: dict | None = None) -> list[str]:
    """P(high-α): calibration and purity/completeness on held-out labelled stars, the high-α candidates at purity
    ≥ 0.9, and (on a simulated survey) the same on the never-labelled stars against their true class."""
    if not headline:
        return []
    t = headline.get("threshold_purity_0.9")
    at = headline.get("thresholds") or {}
    lines = [f"\nP(high-α) for {headline.get('n_stars', 0):,} stars ({headline.get('calibration')} calibration, "
             f"fitted on {headline.get('n_labelled', 0):,} {headline.get('sample')} stars): held-out ECE "
             f"{_num(headline.get('ece'))}, Brier {_num(headline.get('brier'))}",
             "  held out, P ≥ 0.5 / 0.9: purity " + " / ".join(_num((at.get(k) or {}).get("purity"), ".2f")
                                                          for k in ("0.5", "0.9"))
             + ", completeness " + " / ".join(_num((at.get(k) or {}).get("completeness"), ".2f")
                                              for k in ("0.5", "0.9"))]
    if t is None:
        lines.append("  no threshold reaches purity 0.9 on held-out stars: no high-α candidates")
    else:
        lines.append(f"  high-α candidates at purity ≥ 0.9 (P ≥ {t:.2f}): {headline.get('n_candidates_purity_0.9'):,}")
    if truth:
        cut = truth.get("at_catalogue_threshold") or {}
        lines.append(f"  never-labelled simulated stars vs their true class ({truth['n']:,}, "
                     f"{truth['n_positive']:,} high-α): ECE {_num(truth.get('ece'))}"
                     + (f", at P ≥ {t:.2f} purity {_num(cut.get('purity'), '.2f')}, completeness "
                        f"{_num(cut.get('completeness'), '.2f')} ({cut.get('n', 0):,} stars)" if t is not None else ""))
    return lines
