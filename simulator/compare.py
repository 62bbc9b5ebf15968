"""Simulated vs real XP sources: the documented comparison figures.

    python -m simulator.compare [OUT_PNG]            # docs/figures/sim_vs_real.png
    python -m simulator.compare --shapes [OUT_PNG]   # docs/figures/coefficient_shape_gaps.png (the three models)
    python -m simulator.compare --spectra [OUT_PNG]  # docs/figures/sim_vs_real_spectra.png (sampled spectra)
    python -m simulator.compare --correction [OUT_PNG]  # docs/figures/sed_correction.png (the SED correction)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from shared.xp import N_COEFF

DEFAULT_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "sim_vs_real.png"
SHAPES_FIGURE = DEFAULT_FIGURE.with_name("coefficient_shape_gaps.png")
SPECTRA_FIGURE = DEFAULT_FIGURE.with_name("sim_vs_real_spectra.png")
CORRECTION_FIGURE = DEFAULT_FIGURE.with_name("sed_correction.png")
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


def colour_bins(real_c: np.ndarray, real_g: np.ndarray, sim_c: np.ndarray, sim_g: np.ndarray):
    """Matched-colour bins of real and simulated sources: both cut to SHAPE_G_RANGE and binned in colour_index at
    the real sources' octiles; yields (lo, hi, real mask, simulated mask) for each bin with at least
    SHAPE_MIN_PER_BIN stars on both sides. Sources without a band (NaN) or with a non-positive c₀ have no
    colour and are left out."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q_r, q_s = colour_index(real_c), colour_index(sim_c)
    sel_r = (real_g > SHAPE_G_RANGE[0]) & (real_g < SHAPE_G_RANGE[1]) & np.isfinite(q_r)
    sel_s = (sim_g > SHAPE_G_RANGE[0]) & (sim_g < SHAPE_G_RANGE[1]) & np.isfinite(q_s)
    edges = np.quantile(q_r[sel_r], np.linspace(0.0, 1.0, SHAPE_BINS + 1))
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_r = sel_r & (q_r >= lo) & (q_r <= hi)
        in_s = sel_s & (q_s >= lo) & (q_s <= hi)
        if in_r.sum() >= SHAPE_MIN_PER_BIN and in_s.sum() >= SHAPE_MIN_PER_BIN:
            yield float(lo), float(hi), in_r, in_s


def shape_gaps(real_c: np.ndarray, real_g: np.ndarray, sim_c: np.ndarray, sim_g: np.ndarray) -> dict[str, np.ndarray]:
    """Median coefficient shapes of simulated minus real sources at matched colour (colour_bins).

    Returns ``signed`` (n_bins, 2, 54) median differences, ``per_order`` (2, 54) their mean absolute value
    weighted by the real stars per bin, ``worst`` (2, 54) the largest absolute one, and ``n_real``/``n_sim`` per
    bin."""
    s_r, s_s = coefficient_shapes(real_c), coefficient_shapes(sim_c)
    bins = list(colour_bins(real_c, real_g, sim_c, sim_g))
    if not bins:
        raise ValueError("no colour bin holds enough real and simulated stars to compare")
    signed = np.array([np.nanmedian(s_s[in_s], axis=0) - np.nanmedian(s_r[in_r], axis=0)
                       for _, _, in_r, in_s in bins])
    n_real = np.array([int(in_r.sum()) for _, _, in_r, _ in bins])
    n_sim = np.array([int(in_s.sum()) for _, _, _, in_s in bins])
    w = n_real.astype(float)
    return {"signed": signed, "per_order": np.tensordot(w, np.abs(signed), 1) / w.sum(),
            "worst": np.abs(signed).max(axis=0), "n_real": n_real, "n_sim": n_sim}


def spectrum_ratios(real_c: np.ndarray, real_g: np.ndarray, sim_c: np.ndarray,
                    sim_g: np.ndarray) -> dict[str, np.ndarray]:
    """Median sampled spectra (GaiaXPy's 336–1020 nm grid, each spectrum divided by its median over 500–900 nm)
    of real and simulated sources per matched-colour bin: where in wavelength the simulated SEDs differ from
    real stars of the same colour. Returns ``wavelength``, ``real`` and ``sim`` (n_bins, 343), ``edges``
    (n_bins, 2) and the counts."""
    from .xp_basis import xp_basis
    basis = xp_basis()
    wl = basis.wavelength
    window = (wl > 500.0) & (wl < 900.0)

    def median_spectrum(c: np.ndarray) -> np.ndarray:
        flux = basis.sample(c)
        return np.median(flux / np.median(flux[:, window], axis=1, keepdims=True), axis=0)

    bins = list(colour_bins(real_c, real_g, sim_c, sim_g))
    return {"wavelength": wl, "real": np.array([median_spectrum(real_c[m]) for _, _, m, _ in bins]),
            "sim": np.array([median_spectrum(sim_c[m]) for _, _, _, m in bins]),
            "edges": np.array([(lo, hi) for lo, hi, _, _ in bins]),
            "n_real": np.array([int(m.sum()) for _, _, m, _ in bins]),
            "n_sim": np.array([int(m.sum()) for _, _, _, m in bins])}


def forward_of_calibrated(c110: np.ndarray, corrected: bool = True) -> np.ndarray:
    """Real coefficients → GaiaXPy-sampled SED → the instrument model's coefficients: what the forward model
    makes of the stars themselves (its own floor in the shape comparison)."""
    from .instrument import extend_sampled_sed, forward_operator
    from .xp_basis import xp_basis
    basis = xp_basis()
    return extend_sampled_sed(basis.wavelength, basis.sample(c110)) @ forward_operator(corrected=corrected)


def simulated_sets(n_stars: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(coefficients, G) of noisy simulated surveys (no correlations), one per coefficient model, both bands
    present."""
    from .spectra import COEFFICIENT_MODELS
    from .survey import generate
    out = {}
    for model in COEFFICIENT_MODELS:
        batch, truth, _, _ = generate(n_stars, seed, with_correlations=False, coefficients=model)
        ok = ~(batch["bp_missing"] | batch["rp_missing"])
        out[model] = (batch.coefficients110()[ok], np.asarray(truth["g_mag"])[ok])
    return out


def real_sources(real_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real sources' coefficients and GaiaXPy synthetic G."""
    from .noise import read_flat_real_sources
    from .xp_basis import xp_basis
    c_real, _ = read_flat_real_sources(real_path)
    return c_real, xp_basis().synthetic_mags(c_real)[:, 0]


def shape_comparison(real_path: Path, n_stars: int = 20000, seed: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """shape_gaps of simulated (noisy, no correlations) surveys made with each coefficient model, and of the real
    sources passed through the forward model ("forward_of_real"; "forward_of_real_tables" without the edge
    correction)."""
    c_real, g_real = real_sources(real_path)
    sets = simulated_sets(n_stars, seed)
    sets["forward_of_real"] = (forward_of_calibrated(c_real), g_real)
    sets["forward_of_real_tables"] = (forward_of_calibrated(c_real, False), g_real)
    return {name: shape_gaps(c_real, g_real, c, g) for name, (c, g) in sets.items()}


def _pyplot():
    """pyplot on the Agg backend. GaiaXPy switches matplotlib to LaTeX text on import and there is no LaTeX
    here, so every figure is drawn inside rc_context({"text.usetex": False})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    _pyplot().close(fig)
    return out_path


SHAPE_CURVES = (("ridge", "C0-o", "simulated, ridge fit"),
                ("forward", "C3-s", "simulated, forward model with the empirical SED correction (default)"),
                ("forward-uncorrected", "C2-^", "simulated, forward model, schematic SED (no correction)"),
                ("forward_of_real", "k--", "real stars: GaiaXPy calibrate → forward model"),
                ("forward_of_real_tables", "k:", "real stars → forward model, tables without edge correction"))


def plot_shape_gaps(out_path: Path = SHAPES_FIGURE, real_path: Path | None = None, n_stars: int = 20000) -> Path:
    """Per-order realism gap (simulated − real median log10|c_k|/c₀ at matched colour), per coefficient model."""
    from .calibrate import default_real_sources
    plt = _pyplot()
    gaps = shape_comparison(real_path or default_real_sources(), n_stars)
    k = np.arange(1, N_COEFF)
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
        for b, band in enumerate(("BP", "RP")):
            for name, style, label in SHAPE_CURVES:
                ax[b].plot(k, gaps[name]["per_order"][b], style, ms=3, lw=1, label=label)
            ax[b].axhline(0.2, color="grey", lw=0.8, ls=":")
            ax[b].set(ylabel="mean |Δ median log10(|c_k|/c_0)| [dex]", yscale="log", ylim=(0.01, 3),
                      title=f"{band}: simulated − real coefficient shape at matched colour (log10 RP c0/BP c0 "
                            f"bins), {SHAPE_G_RANGE[0]:g} < G < {SHAPE_G_RANGE[1]:g}")
            ax[b].legend(fontsize=8, loc="upper left")
        ax[1].set_xlabel("coefficient order k")
        return _save(fig, out_path)


def plot_spectra(out_path: Path = SPECTRA_FIGURE, real_path: Path | None = None, n_stars: int = 20000,
                 seed: int = 3) -> Path:
    """Median sampled spectra of real and simulated (each coefficient model) sources per matched-colour bin, and the
    ratio simulated / real: where in wavelength the simulated SEDs differ from real stars of the same colour."""
    from .calibrate import default_real_sources
    plt = _pyplot()
    c_real, g_real = real_sources(real_path or default_real_sources())
    ratios = {name: spectrum_ratios(c_real, g_real, c, g) for name, (c, g) in simulated_sets(n_stars, seed).items()}
    first = ratios["forward"]
    wl = first["wavelength"]
    n_bins = len(first["edges"])
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(n_bins, 2, figsize=(13, 2.2 * n_bins), sharex=True, squeeze=False)
        for i, (lo, hi) in enumerate(first["edges"]):
            ax[i, 0].plot(wl, first["real"][i], "k-", lw=1.2, label=f"real (n={first['n_real'][i]})")
            for (name, r), colour in zip(ratios.items(), ("C3", "C0", "C2")):
                ax[i, 0].plot(wl, r["sim"][i], colour, lw=0.9, label=f"simulated, {name} (n={r['n_sim'][i]})")
                ax[i, 1].plot(wl, r["sim"][i] / r["real"][i], colour, lw=0.9, label=name)
            ax[i, 0].set(ylabel="flux / median 500–900 nm")
            ax[i, 0].set_title(f"log10 RP c0/BP c0 in [{lo:.2f}, {hi:.2f}]: median sampled spectra", fontsize=9)
            ax[i, 1].axhline(1.0, color="grey", lw=0.8, ls=":")
            ax[i, 1].set(ylim=(0.6, 1.6), ylabel="simulated / real")
            ax[i, 1].set_title("ratio (below 400 nm both are dominated by the bases' wiggles)", fontsize=9)
            ax[i, 0].legend(fontsize=7)
        for a in ax[-1]:
            a.set_xlabel("wavelength [nm] (GaiaXPy sampling of each source's coefficients)")
        return _save(fig, out_path)


def comparison_stats(real_path: Path, n_stars: int = 8000, seed: int = 1) -> dict[str, np.ndarray]:
    """Per-coefficient medians of log10|c/F_G| and log10(e/F_G) for real and simulated sources in G_BIN, plus
    (G, e0/F_G) pairs for both — the numbers behind the figure and the realism test."""
    from shared.xp import g_flux_from_mag

    from .noise import read_flat_real_sources
    from .survey import generate

    c_real, g_real = real_sources(real_path)
    _, e_real = read_flat_real_sources(real_path)
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
    from .calibrate import default_real_sources
    from .xp_basis import xp_basis

    plt = _pyplot()
    stats = comparison_stats(real_path or default_real_sources(), n_stars)
    k = np.arange(N_COEFF)
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
        return _save(fig, out_path)


def plot_sed_correction(out_path: Path = CORRECTION_FIGURE) -> Path:
    """The stored empirical SED correction f(λ; q) at each continuum-colour node, relative to its value at 550 nm
    (the overall level is irrelevant: every star is scaled to its G)."""
    from .instrument import FORWARD_GRID, forward_operator
    from .sed_correction import stored_sed_correction
    plt = _pyplot()
    corr = stored_sed_correction(FORWARD_GRID, forward_operator(FORWARD_GRID))
    log_f = corr.amplitudes @ corr.basis
    at_550 = log_f[:, [int(np.argmin(np.abs(FORWARD_GRID - 550.0)))]]
    with plt.rc_context({"text.usetex": False}):
        fig, ax = plt.subplots(figsize=(10, 4.5))
        colours = plt.cm.coolwarm(np.linspace(0.0, 1.0, corr.nodes.size))
        for q, row, colour in zip(corr.nodes, np.exp(log_f - at_550), colours):
            ax.plot(FORWARD_GRID, row, color=colour, lw=1.3, label=f"continuum log10 RP c0/BP c0 = {q:+.3f}")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="wavelength [nm]", ylabel="f(λ) / f(550 nm)",
               title=f"Empirical SED correction of the forward model ({corr.n_parameters} free parameters), "
                     "per continuum-colour node")
        ax.legend(fontsize=7, ncol=2)
        return _save(fig, out_path)


FIGURES = {"--shapes": (plot_shape_gaps, SHAPES_FIGURE), "--spectra": (plot_spectra, SPECTRA_FIGURE),
           "--correction": (plot_sed_correction, CORRECTION_FIGURE)}


if __name__ == "__main__":
    args = sys.argv[1:]
    plot, default = FIGURES.get(args[0], (None, None)) if args else (None, None)
    if plot is None:
        print(plot_sim_vs_real(Path(args[0]) if args else DEFAULT_FIGURE))
    else:
        print(plot(Path(args[1]) if len(args) > 1 else default))
