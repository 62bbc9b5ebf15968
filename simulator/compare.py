"""Simulated vs real XP sources: the documented comparison figures.

    python -m simulator.compare [OUT_PNG]            # docs/figures/sim_vs_real.png
    python -m simulator.compare --shapes [OUT_PNG]   # docs/figures/coefficient_shape_gaps.png (ridge vs forward)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from shared.xp import N_COEFF

DEFAULT_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "sim_vs_real.png"
SHAPES_FIGURE = DEFAULT_FIGURE.with_name("coefficient_shape_gaps.png")
G_BIN = (14.0, 16.5)
#: Shape comparison: stars with 12 < G < 17 (signal-dominated low and mid orders), binned in colour.
SHAPE_G_RANGE = (12.0, 17.0)
SHAPE_BINS = 8
SHAPE_MIN_PER_BIN = 30


def colour_index(c110: np.ndarray) -> np.ndarray:
    """log10(RP c₀ / BP c₀): the colour at which coefficient shapes are compared."""
    return np.log10(c110[:, N_COEFF] / c110[:, 0])


def coefficient_shapes(c110: np.ndarray) -> np.ndarray:
    """(N, 2, 54) log10(|c_k| / c₀) for k = 1…54 of BP and RP."""
    c = np.asarray(c110, float).reshape(-1, 2, N_COEFF)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.abs(c[:, :, 1:]) / c[:, :, :1])


def shape_gaps(real_c: np.ndarray, real_g: np.ndarray, sim_c: np.ndarray, sim_g: np.ndarray) -> dict[str, np.ndarray]:
    """Median coefficient shapes of simulated minus real sources at matched colour.

    Both sets are cut to SHAPE_G_RANGE and binned in colour_index at the real sources' octiles; bins with fewer
    than SHAPE_MIN_PER_BIN stars on either side are dropped. Returns ``signed`` (n_bins, 2, 54) median
    differences, ``per_order`` (2, 54) their mean absolute value weighted by the real stars per bin, ``worst``
    (2, 54) the largest absolute one, and ``n_real``/``n_sim`` per bin."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q_r, q_s = colour_index(real_c), colour_index(sim_c)
    # Sources without a band (NaN) or with a non-positive c₀ have no colour: left out.
    sel_r = (real_g > SHAPE_G_RANGE[0]) & (real_g < SHAPE_G_RANGE[1]) & np.isfinite(q_r)
    sel_s = (sim_g > SHAPE_G_RANGE[0]) & (sim_g < SHAPE_G_RANGE[1]) & np.isfinite(q_s)
    s_r, s_s = coefficient_shapes(real_c), coefficient_shapes(sim_c)
    edges = np.quantile(q_r[sel_r], np.linspace(0.0, 1.0, SHAPE_BINS + 1))
    signed, n_real, n_sim = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_r = sel_r & (q_r >= lo) & (q_r <= hi)
        in_s = sel_s & (q_s >= lo) & (q_s <= hi)
        if in_r.sum() < SHAPE_MIN_PER_BIN or in_s.sum() < SHAPE_MIN_PER_BIN:
            continue
        signed.append(np.nanmedian(s_s[in_s], axis=0) - np.nanmedian(s_r[in_r], axis=0))
        n_real.append(int(in_r.sum()))
        n_sim.append(int(in_s.sum()))
    if not signed:
        raise ValueError("no colour bin holds enough real and simulated stars to compare")
    signed_a, w = np.array(signed), np.array(n_real, float)
    return {"signed": signed_a, "per_order": np.tensordot(w, np.abs(signed_a), 1) / w.sum(),
            "worst": np.abs(signed_a).max(axis=0), "n_real": np.array(n_real), "n_sim": np.array(n_sim)}


def forward_of_calibrated(c110: np.ndarray, corrected: bool = True) -> np.ndarray:
    """Real coefficients → GaiaXPy-sampled SED → the instrument model's coefficients: what the forward model
    makes of the stars themselves (its own floor in the shape comparison)."""
    from .instrument import extend_sampled_sed, forward_operator
    from .xp_basis import xp_basis
    basis = xp_basis()
    return extend_sampled_sed(basis.wavelength, basis.sample(c110)) @ forward_operator(corrected=corrected)


def shape_comparison(real_path: Path, n_stars: int = 20000, seed: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """shape_gaps of simulated (noisy, no correlations) surveys made with each coefficient model, and of the real
    sources passed through the forward model ("forward_of_real"; "forward_of_real_tables" without the edge
    correction)."""
    from .noise import read_flat_real_sources
    from .spectra import COEFFICIENT_MODELS
    from .survey import generate
    from .xp_basis import xp_basis

    c_real, _ = read_flat_real_sources(real_path)
    g_real = xp_basis().synthetic_mags(c_real)[:, 0]
    out = {}
    for model in COEFFICIENT_MODELS:
        batch, truth, _, _ = generate(n_stars, seed, with_correlations=False, coefficients=model)
        ok = ~(batch["bp_missing"] | batch["rp_missing"])
        out[model] = shape_gaps(c_real, g_real, batch.coefficients110()[ok], truth["g_mag"][ok])
    out["forward_of_real"] = shape_gaps(c_real, g_real, forward_of_calibrated(c_real), g_real)
    out["forward_of_real_tables"] = shape_gaps(c_real, g_real, forward_of_calibrated(c_real, False), g_real)
    return out


def plot_shape_gaps(out_path: Path = SHAPES_FIGURE, real_path: Path | None = None, n_stars: int = 20000) -> Path:
    """Per-order realism gap (simulated − real median log10|c_k|/c₀ at matched colour), ridge vs forward."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .calibrate import default_real_sources
    gaps = shape_comparison(real_path or default_real_sources(), n_stars)
    k = np.arange(1, N_COEFF)
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
        for b, band in enumerate(("BP", "RP")):
            a = ax[b]
            for name, style, label in (("ridge", "C0-o", "simulated, ridge fit (default)"),
                                       ("forward", "C3-s", "simulated, forward model"),
                                       ("forward_of_real", "k--", "real stars: GaiaXPy calibrate → forward model"),
                                       ("forward_of_real_tables", "k:",
                                        "real stars → forward model, tables without edge correction")):
                a.plot(k, gaps[name]["per_order"][b], style, ms=3, lw=1, label=label)
            a.axhline(0.2, color="grey", lw=0.8, ls=":")
            a.set(ylabel="mean |Δ median log10(|c_k|/c_0)| [dex]", yscale="log", ylim=(0.01, 3),
                  title=f"{band}: simulated − real coefficient shape at matched colour (log10 RP c0/BP c0 bins), "
                        f"{SHAPE_G_RANGE[0]:g} < G < {SHAPE_G_RANGE[1]:g}")
            a.legend(fontsize=8, loc="upper left")
        ax[1].set_xlabel("coefficient order k")
        fig.tight_layout()
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=90)
        plt.close(fig)
    return out_path


def comparison_stats(real_path: Path, n_stars: int = 8000, seed: int = 1) -> dict[str, np.ndarray]:
    """Per-coefficient medians of log10|c/F_G| and log10(e/F_G) for real and simulated sources in G_BIN, plus
    (G, e0/F_G) pairs for both — the numbers behind the figure and the realism test."""
    from shared.xp import g_flux_from_mag

    from .noise import read_flat_real_sources
    from .survey import generate
    from .xp_basis import xp_basis

    c_real, e_real = read_flat_real_sources(real_path)
    g_real = xp_basis().synthetic_mags(c_real)[:, 0]
    batch, truth, _, _ = generate(n_stars, seed, with_correlations=False)
    ok = ~(batch["bp_missing"] | batch["rp_missing"])
    c_sim, e_sim, g_sim = batch.coefficients110()[ok], batch.errors110()[ok], truth["g_mag"][ok]
    out: dict[str, np.ndarray] = {}
    for name, c, e, g in (("real", c_real, e_real, g_real), ("sim", c_sim, e_sim, g_sim)):
        sel = (g > G_BIN[0]) & (g < G_BIN[1])
        f = g_flux_from_mag(g)[:, None]
        out[f"{name}_coeff"] = np.nanmedian(np.log10(np.abs(c[sel]) / f[sel]), axis=0)
        out[f"{name}_err"] = np.nanmedian(np.log10(e[sel] / f[sel]), axis=0)
        out[f"{name}_g"] = g
        out[f"{name}_e0"] = e[:, 0] / f[:, 0]
        out[f"{name}_n_bin"] = np.array(int(sel.sum()))
    out["example_coefficients"] = c_sim[:4]
    return out


def plot_sim_vs_real(out_path: Path = DEFAULT_FIGURE, real_path: Path | None = None, n_stars: int = 8000) -> Path:
    """Write the four-panel comparison figure and return its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .calibrate import default_real_sources
    from .xp_basis import xp_basis

    stats = comparison_stats(real_path or default_real_sources(), n_stars)
    k = np.arange(N_COEFF)
    # GaiaXPy switches matplotlib to LaTeX text on import; no LaTeX here, so draw with plain text.
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(2, 2, figsize=(12, 8.5))
        for b, band in enumerate(("BP", "RP")):
            sl = slice(b * N_COEFF, (b + 1) * N_COEFF)
            a = ax[0, b]
            a.plot(k, stats["real_coeff"][sl], "k-", label="real |c|/F_G")
            a.plot(k, stats["sim_coeff"][sl], "C0-", label="simulated |c|/F_G")
            a.plot(k, stats["real_err"][sl], "k--", label="real error/F_G")
            a.plot(k, stats["sim_err"][sl], "C1--", label="simulated error/F_G")
            a.set(title=f"{band}: medians, {G_BIN[0]} < G < {G_BIN[1]} (real n={int(stats['real_n_bin'])}, "
                        f"sim n={int(stats['sim_n_bin'])})", xlabel="coefficient index", ylabel="log10")
            a.legend(fontsize=8)
        a = ax[1, 0]
        a.scatter(stats["sim_g"][:3000], np.log10(stats["sim_e0"][:3000]), s=2, c="C0", alpha=0.4, label="simulated")
        a.scatter(stats["real_g"], np.log10(stats["real_e0"]), s=2, c="k", alpha=0.5, label="real")
        a.set(xlabel="G (real: GaiaXPy synthetic G)", ylabel="log10(e_bp0 / F_G)", title="error of BP c0 vs G")
        a.legend()
        a = ax[1, 1]
        basis = xp_basis()
        flux = basis.sample(stats["example_coefficients"])
        for f in flux:
            a.plot(basis.wavelength, f / np.median(f), lw=1)
        a.set(xlabel="wavelength [nm]", ylabel="flux / median", title="simulated stars, calibrated like GaiaXPy")
        fig.tight_layout()
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=90)
        plt.close(fig)
    return out_path


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--shapes"]:
        print(plot_shape_gaps(Path(args[1]) if len(args) > 1 else SHAPES_FIGURE))
    else:
        print(plot_sim_vs_real(Path(args[0]) if args else DEFAULT_FIGURE))
