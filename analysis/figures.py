"""Figures of the analyses (matplotlib, Agg backend, PNG). Each function draws one figure, writes it to ``path``
with its caption (what the figure shows) in the PNG's Description field, and returns the path; ``caption(path)``
reads the caption back for the report. Names shown to people go through analysis.display.label. A panel with
nothing to draw says so in words or is left out."""
from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

from analysis.bimodality import BinTest  # noqa: E402
from analysis.calibration import PURITY_TARGET, Calibration  # noqa: E402
from analysis.classify import ClassifierComparison  # noqa: E402
from analysis.display import label  # noqa: E402
from analysis.report import P_FLOOR, P_FLOOR_TEXT  # noqa: E402
from analysis.tracks import Track  # noqa: E402

HIGH_COLOUR, LOW_COLOUR = "#c0392b", "#2c6fbb"
DPI = 110
# Sizes in points at DPI. The report shows figures at most ~1150 px wide; figures are at most ~10.5 inches
# (1150 px) wide, so they are not shrunk and a 10-point tick label stays about 15 px high.
STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 12}
_CAPTION_KEY = "Description"


def _styled(draw):
    @wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def _save(fig, path: Path, caption: str, title: str | None = None) -> Path:
    """Title (above all panels), tight layout and the PNG with its caption: the one ending of every figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={_CAPTION_KEY: caption})
    plt.close(fig)
    return path


def caption(path: Path) -> str:
    """The caption written into a figure by this module (the file name's words if it has none)."""
    from PIL import Image
    with Image.open(path) as im:
        text = getattr(im, "text", {}).get(_CAPTION_KEY)
    return text or Path(path).stem.replace("_", " ")


def _say(ax, text: str) -> None:
    """A panel that has nothing to draw says why instead of staying blank."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, color="#555")


def _nothing_to_draw(path: Path, title: str, message: str, caption: str) -> Path:
    """A figure whose whole content is missing: one short panel that says why, instead of an empty frame."""
    fig, ax = plt.subplots(figsize=(7, 1.6))
    _say(ax, message)
    return _save(fig, path, caption, title)


def _coefficient_axis(ax, last: bool = True) -> None:
    """An x axis of the 110 XP coefficients, BP and RP separated by a vertical line."""
    ax.axvline(54.5, color="k", lw=0.6)
    if last:
        ax.set_xlabel("coefficient (BP 0–54 | RP 0–54)")


_NICE = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _plain_log_ticks(axis) -> None:
    """Log axes labelled 0.5, 1, 2 rather than 5×10⁻¹, 10⁰; a range narrower than a factor 10 gets linear steps
    (1.2, 1.3, …) instead of no labelled tick at all."""
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and hi / lo < 10:
        ticks = [t for t in MaxNLocator(5).tick_values(lo, hi) if lo <= t <= hi]
        axis.set_major_locator(FixedLocator(ticks))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _plain_symlog_ticks(ax) -> None:
    """A symlog y axis (linear within ±1) with readable ticks on both sides of 0."""
    lo, hi = ax.get_ylim()
    if hi - lo < 3:                                # all within the linear part: evenly spaced steps
        ticks = [t for t in MaxNLocator(6).tick_values(lo, hi) if lo <= t <= hi]
    else:
        ticks = [t for t in (*(-v for v in _NICE[::-1]), 0, *_NICE) if lo <= t <= hi and (abs(t) >= 1 or t == 0)]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _class_scatter(ax, x, y, high, size) -> None:
    # low-α first and high-α on top (zorder): the minority sequence must stay visible where they overlap
    ax.scatter(x[~high], y[~high], s=size, c=LOW_COLOUR, alpha=0.35, lw=0, rasterized=True, zorder=1)
    ax.scatter(x[high], y[high], s=size, c=HIGH_COLOUR, alpha=0.6, lw=0, rasterized=True, zorder=2)


@_styled
def latent_pairs(latents: np.ndarray, high: np.ndarray, path: Path, *, sample: str,
                 max_points: int = 20000, seed: int = 0) -> Path:
    """Lower-triangle grid of every pair of latent dimensions, stars coloured by α class (high-α on top)."""
    latents = np.asarray(latents)
    high = np.asarray(high, bool)
    n_all, n_high = len(latents), int(high.sum())
    if len(latents) > max_points:
        keep = np.random.default_rng(seed).choice(len(latents), max_points, replace=False)
        latents, high = latents[keep], high[keep]
    d = latents.shape[1]
    size = max(2.0, min(10.0, 6000 / max(len(latents), 1)))
    shown = f"a random {len(latents)} of them" if len(latents) < n_all else "all of them"
    text = (f"Latent means of the {n_all} stars of the sample '{label(sample)}' ({shown} drawn), every pair of the "
            f"{d} latent dimensions: high-α stars of the Patil split in red ({n_high}), drawn over the low-α "
            f"stars in blue ({n_all - n_high}); axes span the central 99 % of the stars drawn.")
    if d < 2:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        bins = np.histogram_bin_edges(latents[:, 0], 40)
        ax.hist(latents[~high, 0], bins, color=LOW_COLOUR, alpha=0.6, label="low-α")
        ax.hist(latents[high, 0], bins, color=HIGH_COLOUR, alpha=0.6, label="high-α")
        ax.set_xlabel("z1")
        ax.set_ylabel("stars")
        ax.legend(frameon=False)
        ax.set_title(label(sample))
        return _save(fig, path, text.replace("every pair of the 1 latent dimensions", "histogram of the one latent"))
    # axes span the central 99 % of stars: a few outliers would otherwise squeeze everyone else into a corner
    lo, hi = np.nanpercentile(latents, 0.5, axis=0), np.nanpercentile(latents, 99.5, axis=0)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    panel = min(3.5, 9.0 / (d - 1))              # inches: the grid fills ~10 inches, a small one is no thumbnail
    fig, axes = plt.subplots(d - 1, d - 1, figsize=(panel * (d - 1) + 1, panel * (d - 1) + 0.6), squeeze=False)
    for i in range(1, d):
        for j in range(d - 1):
            ax = axes[i - 1, j]
            if j >= i:
                ax.axis("off")
                continue
            _class_scatter(ax, latents[:, j], latents[:, i], high, size)
            ax.set_xlim(lo[j], hi[j])
            ax.set_ylim(lo[i], hi[i])
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_locator(MaxNLocator(3))
            # tiny ranges as '−2.5 … 2.5' with a '1e−3' above the axis, not '−0.0025', which collides with its neighbour
            ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3), useMathText=True)
            if i == d - 1:
                ax.set_xlabel(f"z{j + 1}")
            else:
                ax.tick_params(labelbottom=False)
            if j == 0:
                ax.set_ylabel(f"z{i + 1}")
            else:
                ax.tick_params(labelleft=False)
    legend_ax = axes[0, d - 2] if d > 2 else axes[0, 0]
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=f"{name} ({k})")
               for c, name, k in ((HIGH_COLOUR, "high-α", n_high), (LOW_COLOUR, "low-α", n_all - n_high))]
    legend_ax.legend(handles=handles, loc="center" if d > 2 else "best", frameon=d == 2)
    return _save(fig, path, text, f"{label(sample)}: latent means by α class")


def _has_data(track: Track | None) -> bool:
    return track is not None and bool(np.isfinite(track.mean).any())


TRACK_COLUMNS = 4          # panels per row: six latents in one row would shrink the ticks below legibility


@_styled
def latent_tracks(sequences: Sequence[Track], fixed: Track | None, path: Path, *, sample: str) -> Path:
    """Latent means ± 1 s.e. along the high- and low-α sequences vs [M/H], then vs [α/M] at fixed [M/H] (left out
    when no [α/M] bin had enough stars); at most TRACK_COLUMNS latent dimensions per row."""
    d = sequences[0].mean.shape[1]
    show_fixed = _has_data(fixed)
    seq_data = any(_has_data(tr) for tr in sequences)
    per_block = -(-d // TRACK_COLUMNS)                           # rows of panels per track
    cols = -(-d // per_block)                                    # six latents: 2 rows of 3, not 4 + 2
    blocks = [("m_h", None)] + ([("alpha_m", fixed)] if show_fixed else [])
    fig, axes = plt.subplots(per_block * len(blocks), cols, figsize=(2.6 * cols, 2.5 * per_block * len(blocks) + 0.5),
                             squeeze=False)
    for bi, (var, track) in enumerate(blocks):
        for k in range(per_block * cols):
            ax = axes[bi * per_block + k // cols, k % cols]
            if k >= d:
                ax.set_axis_off()
                continue
            if var == "m_h" and not seq_data:
                _say(ax, "too few stars\nper [M/H] bin") if k == 0 else ax.set_axis_off()
                continue
            for tr in (sequences if var == "m_h" else [track]):
                c = {"high": HIGH_COLOUR, "low_": LOW_COLOUR}.get(tr.name[:4], "k")
                x = 0.5 * (tr.bin_lo + tr.bin_hi)
                ax.errorbar(x, tr.mean[:, k], yerr=tr.se[:, k], color=c, marker="o", ms=3, lw=1,
                            label=label(tr.name), zorder=3 if c == HIGH_COLOUR else 2)
            ax.set_xlabel("[M/H]" if var == "m_h" else "[α/M]")
            ax.set_ylabel(f"mean z{k + 1}")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            if k == 0:
                if var == "m_h":
                    ax.legend(frameon=False, loc="best")
                else:
                    ax.set_title(label(track.name), loc="left")
    text = (f"Mean of each latent dimension (± 1 standard error over stars) in bins of [M/H] along the high-α (red) "
            f"and low-α (blue) sequences of the sample '{label(sample)}'")
    if show_fixed:
        text += f"; last panels: the same against [α/M] for the {label(fixed.name)}"
    elif fixed is not None:
        text += "; no [α/M] bin at fixed [M/H] had enough stars, so those panels are left out"
    return _save(fig, path, text + ". Bins with too few stars are not drawn.",
                 f"{label(sample)}: mean latent position along the α sequences")


@_styled
def classifier_comparison(comparisons: dict[str, ClassifierComparison], path: Path, *,
                          metric: str = "balanced_accuracy") -> Path:
    """Per sample: the metric with 95 % bootstrap intervals for every feature set, and the paired differences
    (that panel left out when no pair was compared)."""
    labels, vals, los, his, colours = [], [], [], [], []
    dlabels, dvals, dlos, dhis = [], [], [], []
    palette = plt.get_cmap("tab10")
    for si, (sample, comp) in enumerate(comparisons.items()):
        for name, res in comp.results.items():
            v, lo, hi = res.metrics[metric]
            labels.append(f"{label(sample)}: {label(name)}")
            vals.append(v)
            los.append(v - lo)
            his.append(hi - v)
            colours.append(palette(si % 10))
        for key, m in comp.differences.items():
            v, lo, hi = m[metric]
            dlabels.append(f"{label(sample)}: {label(key)}")
            dvals.append(v)
            dlos.append(v - lo)
            dhis.append(hi - v)
    # stacked, not side by side: the long sample and feature-set labels need the width
    n_rows = [max(len(labels), 1)] + ([len(dlabels)] if dlabels else [])
    fig, axes = plt.subplots(len(n_rows), 1, figsize=(9, 1.3 * len(n_rows) + 0.3 * sum(n_rows)),
                             gridspec_kw={"height_ratios": n_rows}, squeeze=False)
    axes = axes[:, 0]
    y = np.arange(len(labels))[::-1]
    axes[0].barh(y, vals, xerr=[los, his], color=colours, alpha=0.8, capsize=2)
    axes[0].set_yticks(y, labels)
    axes[0].axvline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_xlabel(f"{label(metric)} (out of fold, 95 % bootstrap interval)")
    if dlabels:
        yd = np.arange(len(dlabels))[::-1]
        axes[1].errorbar(dvals, yd, xerr=[dlos, dhis], fmt="o", color="k", capsize=3)
        axes[1].axvline(0.0, color="grey", lw=0.8)
        axes[1].set_yticks(yd, dlabels)
        axes[1].set_ylim(-0.7, len(dlabels) - 0.3)
        axes[1].xaxis.set_major_locator(MaxNLocator(5))      # the narrow panel: five ticks stay legible
        axes[1].set_xlabel(f"paired difference in {label(metric)} (95 % bootstrap interval)")
    text = (f"{label(metric).capitalize()} of random forests predicting the α class from each feature set, per "
            f"sample, out of fold with 95 % bootstrap intervals (dotted line: chance, 0.5)")
    if dlabels:
        text += ("; below: paired differences between feature sets on the same stars, named by the letters above "
                 "(the report's tables say which difference the [α/M] verdict rests on)")
    return _save(fig, path, text + ".")


@_styled
def bimodality_per_bin(tests: Sequence[BinTest], path: Path, *, sample: str, min_stars: int | None = None) -> Path:
    """Dip-test p-value (log) and ΔBIC against [M/H] for each α coordinate."""
    if not tests:
        need = f" (≥ {min_stars} stars)" if min_stars else ""
        return _nothing_to_draw(path, f"{label(sample)}: bimodality of α at fixed [M/H]",
                                f"no [M/H] bin had enough stars{need} for a bimodality test",
                                f"No bimodality test for the sample '{label(sample)}': no [M/H] bin had enough "
                                f"stars{need}.")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    # markers and dashes differ so that coordinates with the same values stay visible on top of each other
    for i, name in enumerate(dict.fromkeys(t.coordinate for t in tests)):
        ts = [t for t in tests if t.coordinate == name]
        x = [0.5 * (t.bin_lo + t.bin_hi) for t in ts]
        look = dict(marker="osD^v"[i % 5], ls=("-", "--", ":")[i % 3], ms=7 - 1.5 * (i % 3), label=label(name))
        axes[0].plot(x, [max(t.dip_p, P_FLOOR) for t in ts], **look)
        axes[1].plot(x, [t.delta_bic for t in ts], **look)
    axes[0].set_yscale("log")
    axes[0].axhline(0.05, color="grey", ls=":", lw=0.8)
    axes[0].set_ylabel(f"dip-test p (floored at {P_FLOOR_TEXT})")
    axes[1].axhline(10, color="grey", ls=":", lw=0.8)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_ylabel("ΔBIC = BIC₁ − BIC₂")
    for ax in axes:
        ax.set_xlabel("[M/H] bin centre")
    axes[0].legend(frameon=False)
    return _save(fig, path, (
        f"Bimodality of each α coordinate within [M/H] bins of the sample '{label(sample)}': left, Hartigan dip-test "
        f"p-value (log scale; below the dotted 0.05 unimodality is rejected; p < {P_FLOOR_TEXT} drawn at "
        f"{P_FLOOR_TEXT}); "
        "right, ΔBIC of one against two Gaussians (above the dotted 10, two components are strongly favoured)."),
        f"{label(sample)}: bimodality of α at fixed [M/H]")


@_styled
def zscore_profiles(profiles: dict[str, dict[str, np.ndarray]], path: Path, *, sample: str) -> Path:
    """Per-coefficient z-score bias (points) and width (line) per model: without and with the learned scatter
    (the second panel left out when no model has a learned scatter).

    ``profiles[model]`` holds 'bias', 'width' and optionally 'bias_scatter', 'width_scatter' (110 each)."""
    with_scatter = any("bias_scatter" in p for p in profiles.values())
    panels = ("", "_scatter") if with_scatter else ("",)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.9 * len(panels) + 0.4), sharex=True, squeeze=False)
    axes = axes[:, 0]
    j = np.arange(110)
    for model, prof in profiles.items():
        for ax, suffix in zip(axes, panels):
            if f"bias{suffix}" not in prof:
                continue
            line, = ax.plot(j, prof[f"width{suffix}"], lw=1, label=f"{model}: width")
            ax.plot(j, prof[f"bias{suffix}"], ".", ms=4, color=line.get_color(), label=f"{model}: bias")
    for ax, t in zip(axes, ("z = δ/σ", "z = δ/√(σ² + ŝ²)")):
        ax.axhline(1, color="grey", lw=0.8, ls=":")
        ax.axhline(0, color="grey", lw=0.8)
        _coefficient_axis(ax, last=ax is axes[-1])
        ax.set_ylabel(t)
        ax.set_yscale("symlog", linthresh=1)
        _plain_symlog_ticks(ax)
    # one legend above the panels, where it cannot hide points
    axes[0].legend(frameon=False, ncol=min(4, 2 * len(profiles)), loc="lower left", bbox_to_anchor=(0, 1.0))
    text = (f"Per Gaia XP coefficient, over the {label(sample)}: mean (bias, points) and standard deviation (width, "
            "line) of the normalised residual z = δ/σ of each model (a calibrated model gives bias 0 and width 1, "
            "dotted); the vertical line separates BP from RP")
    text += ("; bottom, the same with each model's learned scatter ŝ added to the errors." if with_scatter
             else ". No model has a learned scatter, so the panel with it is left out.")
    return _save(fig, path, text, f"{label(sample)}: per-coefficient z-scores")


@_styled
def msz_ratio_plot(ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray, path: Path, *, a: str, b: str) -> Path:
    """Per-coefficient ratio of mean squared z of two models with paired 95 % intervals (log scale)."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    j = np.arange(len(ratio))
    ax.fill_between(j, lo, hi, color="#999", alpha=0.5, lw=0, label="95 % paired bootstrap interval")
    ax.plot(j, ratio, "k.-", lw=0.8, ms=4, label=f"msz({a}) / msz({b})")
    ax.axhline(1, color="r", lw=0.8)
    _coefficient_axis(ax)
    ax.set_yscale("log")
    ax.get_ylim()                                 # settles the autoscaled limits the ticks are chosen from
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel("ratio of mean squared z")
    ax.legend(frameon=False, loc="best")
    ax.set_title(f"msz({a}) / msz({b}) per coefficient, without scatter (below 1: {a} better)")
    return _save(fig, path, (
        f"Ratio of the mean squared normalised residual (msz, without learned scatter) of model '{a}' to that of "
        f"model '{b}' for each Gaia XP coefficient on the same stars, with 95 % paired bootstrap intervals (grey); "
        f"below the red line at 1, '{a}' reconstructs that coefficient better."))


@_styled
def cell_map(cells, path: Path, *, a: str, b: str, min_stars: int | None = None) -> Path:
    """msz ratio per (Teff, log g) cell, as a colour map (log scale centred on 1); cells with no data blank."""
    from matplotlib.colors import LogNorm
    if not cells:
        need = f" (≥ {min_stars} stars)" if min_stars else ""
        return _nothing_to_draw(path, f"msz({a}) / msz({b}) per (Teff, log g) cell",
                                f"no (Teff, log g) cell had enough stars{need} to compare the models",
                                f"No (Teff, log g) cell of the held-out stars had enough stars{need} to compare "
                                f"model '{a}' with model '{b}' cell by cell.")
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ratios = np.array([c.ratio for c in cells])
    span = float(np.nanmax(np.abs(np.log10(ratios[ratios > 0])))) if np.any(ratios > 0) else 1.0
    span = max(span, 0.05)
    norm = LogNorm(10 ** -span, 10 ** span)
    cmap = plt.get_cmap("RdBu_r")
    for c in cells:
        ax.add_patch(plt.Rectangle((c.teff_lo, c.logg_lo), c.teff_hi - c.teff_lo, c.logg_hi - c.logg_lo,
                                   fc=cmap(norm(max(c.ratio, 1e-9))), ec="k" if c.ci_lo > 1 else "#bbb",
                                   lw=1.5 if c.ci_lo > 1 else 0.5, zorder=2 if c.ci_lo > 1 else 1))
    ax.set_xlim(max(c.teff_hi for c in cells), min(c.teff_lo for c in cells))
    ax.set_ylim(max(c.logg_hi for c in cells), min(c.logg_lo for c in cells))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                       label=f"msz({a}) / msz({b}) (black edge: CI > 1)")
    _plain_log_ticks(bar.ax.yaxis)
    ax.set_xlabel("Teff [K]")
    ax.set_ylabel("log g")
    ax.set_title(f"msz({a}) / msz({b}) per (Teff, log g) cell")
    return _save(fig, path, (
        f"Ratio of the mean squared normalised residual of model '{a}' to that of model '{b}' over all coefficients, "
        f"per (Teff, log g) cell of the held-out stars (red: '{a}' worse, blue: '{a}' better; a black edge marks a "
        "cell whose 95 % interval lies above 1; cells with too few stars are blank)."))


@_styled
def calibration_curves(cal: Calibration, path: Path, *, what: str, threshold: float | None = None) -> Path:
    """Left: reliability diagram (observed fraction of high-α with 95 % Wilson intervals against the mean
    predicted P per bin, star counts beside the points). Right: purity and completeness of the stars selected by
    each threshold on P, with the purity target and the catalogue's threshold marked."""
    if not cal.n:
        return _nothing_to_draw(path, f"P(high-α) on {what}", f"no stars with a known class ({what})",
                                f"No calibration figure: no {what} with a known class.")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    left.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect calibration")
    pred = [b.predicted for b in cal.bins]
    obs = [b.observed for b in cal.bins]
    err = [[b.observed - b.ci_lo for b in cal.bins], [b.ci_hi - b.observed for b in cal.bins]]
    left.errorbar(pred, obs, yerr=err, fmt="o", color=HIGH_COLOUR, capsize=3, label="bins of P (95 % interval)")
    for b in cal.bins:
        left.annotate(f"{b.n:,}", (b.predicted, b.observed), xytext=(5, -11), textcoords="offset points",
                      fontsize=8, color="#555")
    left.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="mean predicted P(high-α) in the bin",
             ylabel="observed fraction of high-α stars", title=f"reliability (ECE {cal.ece:.3f})")
    left.legend(frameon=False, loc="upper left")
    grid, purity, completeness = cal.curves()
    right.plot(grid, purity, color=HIGH_COLOUR, label="purity")
    right.plot(grid, completeness, color=LOW_COLOUR, ls="--", label="completeness")
    right.axhline(PURITY_TARGET, color="grey", lw=0.8, ls=":")
    if threshold is not None:
        right.axvline(threshold, color="k", lw=0.8, label=f"catalogue threshold P ≥ {threshold:.2f}")
    right.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="threshold on P(high-α)", ylabel="fraction",
              title="stars with P ≥ threshold")
    right.legend(frameon=False, loc="lower left")
    text = (f"Calibration of P(high-α) on {cal.n:,} {what} ({cal.n_positive:,} high-α). Left: for each bin of "
            "predicted probability, the fraction of its stars that are high-α (95 % Wilson interval; the number of "
            "stars beside each point) against the mean prediction; on the dotted diagonal the probabilities are "
            f"calibrated; ECE is the star-weighted mean distance from it. Right: purity (share of high-α among the "
            f"stars selected) and completeness (share of all high-α stars selected) for each threshold on P; dotted: "
            f"purity {PURITY_TARGET:g}")
    text += f"; the vertical line is the catalogue's threshold, {threshold:.2f}." if threshold is not None else "."
    return _save(fig, path, text, f"P(high-α) on {what}")
