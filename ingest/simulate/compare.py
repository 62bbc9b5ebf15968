"""Simulated vs real XP sources: the documented comparison figure (docs/figures/sim_vs_real.png).

    python -m ingest.simulate.compare [OUT_PNG]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from shared.xp import N_COEFF

DEFAULT_FIGURE = Path(__file__).resolve().parents[2] / "docs" / "figures" / "sim_vs_real.png"
G_BIN = (14.0, 16.5)


def comparison_stats(real_path: Path, n_stars: int = 8000, seed: int = 1) -> dict[str, np.ndarray]:
    """Per-coefficient medians of log10|c/F_G| and log10(e/F_G) for real and simulated sources in G_BIN, plus
    (G, e0/F_G) pairs for both — the numbers behind the figure and the realism test."""
    from .noise import read_flat_real_sources
    from .survey import generate
    from .xp_basis import g_flux_from_mag, xp_basis

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
    print(plot_sim_vs_real(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FIGURE))
