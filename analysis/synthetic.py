"""Small synthetic [α/M] samples with a known truth, for tests and benchmarks of this package (not the survey
simulator: no spectra, just labels and latents built to carry — or not carry — α information)."""
from __future__ import annotations

import numpy as np

from analysis.samples import patil_boundary


def alpha_sample(n: int, *, alpha_in_latents: bool, seed: int = 0, high_fraction: float = 0.3,
                 separation: float = 0.07, alpha_noise: float = 0.025, latent_noise: float = 0.3,
                 d: int = 6) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(latents (n, d), labels, photometry) of a two-sequence disc.

    High-α stars sit ``separation`` dex above the Patil boundary, low-α ones below, with Gaussian scatter
    ``alpha_noise``; the high-α sequence is more metal-poor, so [M/H] alone predicts the class partly.
    alpha_in_latents=True: z1 is the distance from the boundary in units of the spread plus noise, z2–z4 encode
    Teff, log g, [M/H]. False: z1–z4 are non-linear functions of Teff, log g, [M/H] plus noise and nothing else.
    The remaining dimensions are pure noise. Every star passes the pristine cuts."""
    rng = np.random.default_rng(seed)
    high = rng.random(n) < high_fraction
    m_h = np.where(high, rng.normal(-0.45, 0.2, n), rng.normal(-0.1, 0.25, n)).clip(-0.95, 0.45)
    teff = rng.uniform(3900, 6000, n)
    giant = rng.random(n) < 0.7
    logg = np.where(giant, 5.9 - 4 * teff / 1e4 - rng.uniform(0.4, 2.5, n), rng.normal(4.4, 0.1, n))
    offset = np.where(high, separation, -separation) + rng.normal(0, alpha_noise, n)
    alpha_m = patil_boundary(m_h) + offset
    labels = {
        "teff": teff, "teff_err": np.full(n, 30.0), "logg": logg, "logg_err": np.full(n, 0.05),
        "m_h": m_h, "m_h_err": np.full(n, 0.02), "alpha_m": alpha_m, "fe_h": m_h.copy(), "mg_fe": alpha_m.copy(),
        "aspcapflag": np.zeros(n, np.int64), "starflag": np.zeros(n, np.int64),
        "j": 10 + rng.normal(0, 0.5, n),
    }
    labels["h"] = labels["j"] - (5000 / teff) * 0.5 + rng.normal(0, 0.02, n)
    labels["k"] = labels["h"] - (5000 / teff) * 0.1 + rng.normal(0, 0.02, n)
    phot = {"phot_g_mean_mag": rng.uniform(9, 16, n), "bp_rp": 1.2 * 5000 / teff + rng.normal(0, 0.05, n)}
    t, g, m = (teff - 5000) / 500, logg - 2.8, m_h / 0.3
    if alpha_in_latents:
        core = [offset / alpha_noise / 3, t, g, m]
    else:
        core = [np.tanh(t) + 0.3 * g * m, np.sin(g) + 0.2 * t, m ** 2 - 0.5 * t, m + 0.1 * t * g]
    z = np.column_stack(core + [np.zeros(n)] * (d - len(core)))[:, :d]
    z = z + rng.normal(0, latent_noise, z.shape)
    return z, labels, phot


def reconstruction_sample(n: int, *, seed: int = 0, rho: float = 0.6, worse_factor: float = 2.0,
                          region: tuple[float, float] = (4500.0, 2.0)) -> tuple[dict, dict, dict]:
    """Two models' outputs on the same n stars with a known truth: (models, labels, truth).

    Per band the residuals δ are drawn from N(0, Σ + diag(ŝ²)) with Σ = diag(σ)·R·diag(σ), R an AR(1)
    correlation (ρ^|i−j|), σ and ŝ fixed per coefficient. Model 'svae' is exactly calibrated. Model 'label' has
    the same residuals times ``worse_factor`` for stars with Teff < region[0] and log g < region[1] (its
    "label-poor" corner), so there its mean squared z is worse_factor² times larger, elsewhere identical.
    truth: sigma, scatter (110,), the region, the correlation matrix."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.05, 0.5, 110)
    scatter = rng.uniform(0.0, 0.4, 110)
    idx = np.arange(55)
    corr = rho ** np.abs(idx[:, None] - idx[None, :])
    tril = np.tril_indices(55, k=-1)
    flat = np.tile(corr[tril].astype(np.float32), (n, 1))
    delta = np.empty((n, 110))
    for sl in (slice(0, 55), slice(55, 110)):
        cov = sigma[sl, None] * corr * sigma[None, sl] + np.diag(scatter[sl] ** 2)
        delta[:, sl] = rng.normal(size=(n, 55)) @ np.linalg.cholesky(cov).T
    teff = rng.uniform(4000, 5500, n)
    logg = rng.uniform(1.0, 3.5, n)
    m_h = rng.normal(-0.2, 0.3, n)
    poor = (teff < region[0]) & (logg < region[1])
    x = rng.normal(size=(n, 110))
    common = {"x": x, "sigma": np.tile(sigma, (n, 1)), "scatter": np.tile(scatter, (n, 1)),
              "bp_correlations": flat, "rp_correlations": flat}
    models = {"svae": dict(common, x_hat=x + delta),
              "label": dict(common, x_hat=x + delta * np.where(poor, worse_factor, 1.0)[:, None])}
    labels = {"teff": teff, "logg": logg, "m_h": m_h}
    truth = {"sigma": sigma, "scatter": scatter, "region": region, "poor": poor, "corr": corr}
    return models, labels, truth


def label_noise_sample(n: int, *, alpha: str, seed: int = 0, m_h_noise: float = 0.12,
                       fe_h_noise: float = 0.12, latent_noise: float = 0.05,
                       d: int = 6) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(latents (n, d), labels with their errors, high-α class) where the latents measure the TRUE Teff, log g,
    [M/H] better than the labels do — the situation spectra create — and the class is taken, as Patil et al. do,
    from noisy [Fe/H] and [Mg/Fe] labels of a thin (low-α) and a thick (high-α, metal-poorer) disc.

    alpha="none": the latents are non-linear functions of the true Teff, log g, [M/H] plus noise and know nothing
    of [α/M], yet they predict the class better than the labels alone, because their [M/H] is closer to the
    truth that decides the population. A test of "[α/M] information beyond the labels" must not call that a
    gain. "separate": z1 is also the true [α/M] offset from the boundary. "metal_lines": the latents see the
    metallicity only as [M/H] + [α/M] (α lines that are also metal lines, as in the survey simulator), so
    every latent estimate of [M/H] carries [α/M] too."""
    if alpha not in ("none", "separate", "metal_lines"):
        raise ValueError(f"alpha must be 'none', 'separate' or 'metal_lines', not {alpha!r}")
    rng = np.random.default_rng(seed)
    thick = rng.random(n) < 0.3
    m_true = np.where(thick, rng.normal(-0.45, 0.22, n), rng.normal(-0.05, 0.22, n)).clip(-1.2, 0.5)
    alpha_m = np.where(thick, 0.27 - 0.12 * (m_true + 0.5), 0.02 - 0.08 * m_true) + rng.normal(0, 0.03, n)
    teff = rng.uniform(3900, 5500, n)
    logg = 5.9 - 4 * teff / 1e4 - rng.uniform(0.4, 2.5, n)
    fe_h = m_true + rng.normal(0, fe_h_noise, n)
    mg_fe = alpha_m + rng.normal(0, 0.02, n)
    high = mg_fe > patil_boundary(fe_h)
    labels = {"teff": teff + rng.normal(0, 60, n), "logg": logg + rng.normal(0, 0.1, n),
              "m_h": m_true + rng.normal(0, m_h_noise, n), "fe_h": fe_h, "mg_fe": mg_fe,
              "teff_err": np.full(n, 60.0), "logg_err": np.full(n, 0.1), "m_h_err": np.full(n, m_h_noise)}
    seen = m_true + alpha_m if alpha == "metal_lines" else m_true
    t, g, m = (teff - 4700) / 500, logg - 2.5, seen / 0.3
    core = [np.tanh(t) + 0.3 * g * m, np.sin(g) + 0.2 * t, m + 0.2 * m ** 2 - 0.3 * t, m + 0.1 * t * g]
    if alpha == "separate":
        core[0] = (alpha_m - patil_boundary(m_true)) / 0.05
    z = np.column_stack(core + [np.zeros(n)] * (d - len(core)))[:, :d]
    return z + rng.normal(0, latent_noise, z.shape), labels, high
