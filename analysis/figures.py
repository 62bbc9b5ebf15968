"""Figures of the analyses (matplotlib, Agg backend, PNG). Each function draws one figure, writes it to
``path`` and returns the path."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.bimodality import BinTest  # noqa: E402
from analysis.classify import DESCRIPTIONS, ClassifierComparison  # noqa: E402
from analysis.tracks import Track  # noqa: E402

HIGH_COLOUR, LOW_COLOUR = "#c0392b", "#2c6fbb"


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def latent_pairs(latents: np.ndarray, high: np.ndarray, path: Path, *, title: str = "",
                 max_points: int = 20000, seed: int = 0) -> Path:
    """Lower-triangle grid of every pair of latent dimensions, stars coloured by α class (low drawn first)."""
    latents = np.asarray(latents)
    high = np.asarray(high, bool)
    if len(latents) > max_points:
        keep = np.random.default_rng(seed).choice(len(latents), max_points, replace=False)
        latents, high = latents[keep], high[keep]
    d = latents.shape[1]
    fig, axes = plt.subplots(d - 1, d - 1, figsize=(2.2 * (d - 1), 2.2 * (d - 1)), squeeze=False)
    size = max(0.5, min(6.0, 3000 / max(len(latents), 1)))
    for i in range(1, d):
        for j in range(d - 1):
            ax = axes[i - 1, j]
            if j >= i:
                ax.axis("off")
                continue
            ax.scatter(latents[~high, j], latents[~high, i], s=size, c=LOW_COLOUR, alpha=0.4, lw=0, rasterized=True)
            ax.scatter(latents[high, j], latents[high, i], s=size, c=HIGH_COLOUR, alpha=0.4, lw=0, rasterized=True)
            if i == d - 1:
                ax.set_xlabel(f"z{j + 1}")
            if j == 0:
                ax.set_ylabel(f"z{i + 1}")
            ax.tick_params(labelsize=6)
    axes[0, d - 2].scatter([], [], c=HIGH_COLOUR, label="high-α")
    axes[0, d - 2].scatter([], [], c=LOW_COLOUR, label="low-α")
    axes[0, d - 2].legend(loc="center", frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def latent_tracks(sequences: Sequence[Track], fixed: Track | None, path: Path, *, title: str = "") -> Path:
    """Top row: latent means ± 1 s.e. along the high- and low-α sequences vs [M/H]; bottom: vs [α/M] at fixed [M/H]."""
    d = sequences[0].mean.shape[1]
    rows = 2 if fixed is not None else 1
    fig, axes = plt.subplots(rows, d, figsize=(2.4 * d, 2.4 * rows), squeeze=False)
    for k in range(d):
        ax = axes[0, k]
        for tr in sequences:
            c = HIGH_COLOUR if tr.name.startswith("high") else LOW_COLOUR
            x = 0.5 * (tr.bin_lo + tr.bin_hi)
            ax.errorbar(x, tr.mean[:, k], yerr=tr.se[:, k], color=c, marker="o", ms=3, lw=1, label=tr.name)
        ax.set_xlabel("[M/H]")
        ax.set_ylabel(f"mean z{k + 1}")
        if fixed is not None:
            x = 0.5 * (fixed.bin_lo + fixed.bin_hi)
            axes[1, k].errorbar(x, fixed.mean[:, k], yerr=fixed.se[:, k], color="k", marker="o", ms=3, lw=1)
            axes[1, k].set_xlabel("[α/M]")
            axes[1, k].set_ylabel(f"mean z{k + 1}")
    axes[0, 0].legend(fontsize=7, frameon=False)
    if fixed is not None:
        axes[1, 0].set_title(f"{fixed.name}", fontsize=8, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def classifier_comparison(comparisons: dict[str, ClassifierComparison], path: Path, *,
                          metric: str = "balanced_accuracy") -> Path:
    """Per sample: the metric with 95 % bootstrap intervals for every feature set, and the paired differences."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 + 0.45 * sum(len(c.results) for c in comparisons.values())))
    labels, vals, los, his, colours = [], [], [], [], []
    dlabels, dvals, dlos, dhis = [], [], [], []
    palette = plt.get_cmap("tab10")
    for si, (sample, comp) in enumerate(comparisons.items()):
        for name, res in comp.results.items():
            v, lo, hi = res.metrics[metric]
            labels.append(f"{sample}: {DESCRIPTIONS.get(name, name)}")
            vals.append(v); los.append(v - lo); his.append(hi - v); colours.append(palette(si % 10))
        for key, m in comp.differences.items():
            v, lo, hi = m[metric]
            dlabels.append(f"{sample}: {key}")
            dvals.append(v); dlos.append(v - lo); dhis.append(hi - v)
    y = np.arange(len(labels))[::-1]
    axes[0].barh(y, vals, xerr=[los, his], color=colours, alpha=0.8, capsize=2)
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[0].axvline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_xlabel(f"{metric} (out of fold, 95 % bootstrap)")
    yd = np.arange(len(dlabels))[::-1]
    axes[1].errorbar(dvals, yd, xerr=[dlos, dhis], fmt="o", color="k", capsize=3)
    axes[1].axvline(0.0, color="grey", lw=0.8)
    axes[1].set_yticks(yd, dlabels, fontsize=7)
    axes[1].set_xlabel(f"paired difference in {metric}")
    fig.tight_layout()
    return _save(fig, path)


def bimodality_per_bin(tests: Sequence[BinTest], path: Path, *, title: str = "") -> Path:
    """Dip-test p-value (log) and ΔBIC against [M/H] for each α coordinate."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name in dict.fromkeys(t.coordinate for t in tests):
        ts = [t for t in tests if t.coordinate == name]
        x = [0.5 * (t.bin_lo + t.bin_hi) for t in ts]
        axes[0].plot(x, [max(t.dip_p, 1e-4) for t in ts], "o-", label=name)
        axes[1].plot(x, [t.delta_bic for t in ts], "o-", label=name)
    axes[0].set_yscale("log")
    axes[0].axhline(0.05, color="grey", ls=":", lw=0.8)
    axes[0].set_ylabel("dip-test p (floored at 1e-4)")
    axes[1].axhline(10, color="grey", ls=":", lw=0.8)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_ylabel("ΔBIC = BIC₁ − BIC₂")
    for ax in axes:
        ax.set_xlabel("[M/H] bin centre")
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def zscore_profiles(profiles: dict[str, dict[str, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """Per-coefficient z-score bias (points) and width (line) per model: without and with the learned scatter.

    ``profiles[model]`` holds 'bias', 'width' and optionally 'bias_scatter', 'width_scatter' (110 each)."""
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    j = np.arange(110)
    for model, prof in profiles.items():
        for ax, suffix in zip(axes, ("", "_scatter")):
            if f"bias{suffix}" not in prof:
                continue
            line, = ax.plot(j, prof[f"width{suffix}"], lw=1, label=f"{model} width")
            ax.plot(j, prof[f"bias{suffix}"], ".", ms=3, color=line.get_color(), label=f"{model} bias")
    for ax, t in zip(axes, ("δ/σ", "δ/√(σ²+ŝ²)")):
        ax.axhline(1, color="grey", lw=0.8, ls=":")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(54.5, color="k", lw=0.6)
        ax.set_ylabel(t)
        ax.set_yscale("symlog", linthresh=1)
        ax.legend(fontsize=7, frameon=False, ncol=2)
    axes[1].set_xlabel("coefficient (BP 0–54 | RP 0–54)")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def msz_ratio_plot(ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray, path: Path, *, title: str = "") -> Path:
    """Per-coefficient ratio of mean squared z of two models with paired 95 % intervals (log scale)."""
    fig, ax = plt.subplots(figsize=(11, 3.2))
    j = np.arange(len(ratio))
    ax.fill_between(j, lo, hi, color="#999", alpha=0.5, lw=0)
    ax.plot(j, ratio, "k.-", lw=0.8, ms=3)
    ax.axhline(1, color="r", lw=0.8)
    ax.axvline(54.5, color="k", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("coefficient (BP 0–54 | RP 0–54)")
    ax.set_ylabel("msz ratio")
    ax.set_title(title)
    return _save(fig, path)


def cell_map(cells, path: Path, *, title: str = "") -> Path:
    """msz ratio per (Teff, log g) cell, as a colour map (log scale centred on 1); cells with no data blank."""
    from matplotlib.colors import LogNorm
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if cells:
        ratios = np.array([c.ratio for c in cells])
        span = float(np.nanmax(np.abs(np.log10(ratios[ratios > 0])))) if np.any(ratios > 0) else 1.0
        span = max(span, 0.05)
        norm = LogNorm(10 ** -span, 10 ** span)
        cmap = plt.get_cmap("RdBu_r")
        for c in cells:
            ax.add_patch(plt.Rectangle((c.teff_lo, c.logg_lo), c.teff_hi - c.teff_lo, c.logg_hi - c.logg_lo,
                                       color=cmap(norm(max(c.ratio, 1e-9))), ec="k" if c.ci_lo > 1 else "none"))
        ax.set_xlim(max(c.teff_hi for c in cells), min(c.teff_lo for c in cells))
        ax.set_ylim(max(c.logg_hi for c in cells), min(c.logg_lo for c in cells))
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="msz ratio (black edge: CI > 1)")
    ax.set_xlabel("Teff [K]")
    ax.set_ylabel("log g")
    ax.set_title(title)
    return _save(fig, path)
